"""The README's library example runs as written against a real database and model."""

import re
from pathlib import Path

import pytest
from sqlalchemy import select

from movierec.ai import train_model
from movierec.data import generate_catalogue
from movierec.db import Movie, Rating

README = Path(__file__).resolve().parents[1] / "README.md"
EXAMPLE = re.compile(r"<!-- readme-example -->\s*```python\n(.*?)```", re.S)


def test_readme_starts_with_the_two_commands():
    lines = [line for line in README.read_text().splitlines() if line.startswith("make ")]
    assert [line.split()[1] for line in lines[:2]] == ["demo", "test"]


def test_library_example_answers_right(database, settings, monkeypatch, capsys):
    """It runs as written, and what it prints is right: the user's top 5 by the model's
    score, none they rated, each with its own title from the database."""
    generate_catalogue(database, movies=200, users=100, ratings=5000, seed=1)
    train_model(database, settings.model_dir)
    monkeypatch.setenv("MOVIEREC_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("MOVIEREC_MODEL_DIR", str(settings.model_dir))
    code = EXAMPLE.search(README.read_text()).group(1)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    printed = capsys.readouterr().out.strip().splitlines()

    top = namespace["top"]
    with database.session(readonly=True) as session:
        rated = set(session.scalars(select(Rating.movie_id).where(Rating.user_id == 1)))
        titles = dict(session.execute(select(Movie.id, Movie.title)).all())
    assert rated, "user 1 has ratings: the model knows them"
    assert not top.fallback
    ids = [movie_id for movie_id, _ in top.items]
    scores = [score for _, score in top.items]
    assert len(ids) == len(set(ids)) == 5
    assert not set(ids) & rated  # rated movies excluded
    assert scores == sorted(scores, reverse=True)
    # The best of the movies the user has not rated, by the model's own star rating for
    # each pair (predict, a separate path from recommend's vectorised scoring).
    model = namespace["model"]
    assert [model.predict(1, m) for m in ids] == pytest.approx(scores, abs=1e-4)
    others = [model.predict(1, m) for m in titles if m not in rated and m not in ids]
    assert max(others) <= scores[-1] + 1e-4
    # Each line is the movie's score and its own title, in the model's order.
    assert printed == [f"{score:4.2f}  {titles[m]}" for m, score in top.items]
