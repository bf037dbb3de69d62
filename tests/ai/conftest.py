"""A small synthetic data set with structure a factor model can learn, loaded by COPY.

Ratings come from ``mean + user bias + movie bias + <user taste, movie profile> + noise``: the
global mean alone misses the biases and tastes, so a trained SVD must beat it on a hold-out.
Database ids are sparse on purpose (users 1000, 1003, ...; movies 500, 507, ...) so that a mix-up
between database ids and dense indices shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import psycopg
import pytest
from flask import Flask
from support.keys import KEYED

from movierec.ai import TrainParams, load_model, train_model
from movierec.ai.server import create_app

GENRE_POOL = ("Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi")
NEW_USER = 9001  # in the database with preferences, never rated anything
NEW_USER_GENRES = ("Horror",)
STRANGER = 9002  # in the database, no preferences, no ratings
FAST = TrainParams(factors=8, epochs=40, lr=0.01, reg=0.05, test_size=0.2, seed=0)


@pytest.fixture(scope="module", autouse=True)
def _test_clients_present_the_key():
    """Every Flask test client of these tests sends the recommender's key, as the web's AI
    client does: these tests are about what the server answers its callers.
    test_ai_keys.py checks what it answers everyone else. (Module scope: module-scoped
    fixtures make clients too.)"""
    test_client = Flask.test_client

    def keyed(app, *args, **kwargs):
        client = test_client(app, *args, **kwargs)
        client.environ_base["HTTP_AUTHORIZATION"] = KEYED["Authorization"]
        return client

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Flask, "test_client", keyed)
        yield


@dataclass(frozen=True)
class Synthetic:
    user_ids: list[int]
    movie_ids: list[int]
    genres: dict[int, list[str]]
    ratings: list[tuple[int, int, float]] = field(repr=False)

    def rated_by(self, user_id: int) -> set[int]:
        return {m for u, m, _ in self.ratings if u == user_id}

    def count(self, movie_id: int) -> int:
        return sum(1 for _, m, _ in self.ratings if m == movie_id)


def make_synthetic(n_users: int = 150, n_movies: int = 100, seed: int = 7) -> Synthetic:
    rng = np.random.default_rng(seed)
    user_ids = [1000 + 3 * u for u in range(n_users)]
    movie_ids = [500 + 7 * m for m in range(n_movies)]
    genres = {
        m: sorted(set(rng.choice(GENRE_POOL, size=rng.integers(1, 3), replace=False).tolist()))
        for m in movie_ids
    }
    taste = rng.normal(0, 0.7, size=(n_users, 3))
    profile = rng.normal(0, 0.7, size=(n_movies, 3))
    user_bias = rng.normal(0, 0.3, size=n_users)
    movie_bias = rng.normal(0, 0.6, size=n_movies)
    # Skewed popularity: some movies are rated by most users, some by a few.
    seen_prob = np.linspace(0.7, 0.1, n_movies)
    ratings = []
    for u, user_id in enumerate(user_ids):
        for m, movie_id in enumerate(movie_ids):
            if rng.random() < seen_prob[m]:
                value = 3.3 + user_bias[u] + movie_bias[m] + taste[u] @ profile[m]
                value += rng.normal(0, 0.3)
                ratings.append((user_id, movie_id, float(np.clip(np.round(value * 2) / 2, 0.5, 5))))
    return Synthetic(user_ids, movie_ids, genres, ratings)


@pytest.fixture(scope="session")
def synthetic() -> Synthetic:
    return make_synthetic()


def psycopg_url(db_url: str) -> str:
    return db_url.replace("postgresql+psycopg://", "postgresql://", 1)


def load_synthetic(db_url: str, data: Synthetic) -> None:
    """COPY users, movies, ratings and two rating-less users into the database."""
    with psycopg.connect(psycopg_url(db_url)) as conn, conn.cursor() as cur:
        with cur.copy("COPY users (id, username) FROM STDIN") as copy:
            for user_id in [*data.user_ids, NEW_USER, STRANGER]:
                copy.write_row((user_id, f"user{user_id}"))
        with cur.copy("COPY movies (id, title, year, genres) FROM STDIN") as copy:
            for movie_id in data.movie_ids:
                copy.write_row((movie_id, f"Movie {movie_id}", 2000, data.genres[movie_id]))
        with cur.copy("COPY ratings (user_id, movie_id, rating) FROM STDIN") as copy:
            for row in data.ratings:
                copy.write_row(row)
        cur.execute(
            "INSERT INTO preferences (user_id, genres) VALUES (%s, %s)",
            (NEW_USER, list(NEW_USER_GENRES)),
        )


@pytest.fixture
def loaded(db_url, synthetic) -> Synthetic:
    """The synthetic data set, in this test's database."""
    load_synthetic(db_url, synthetic)
    return synthetic


@pytest.fixture
def trained(loaded, database, settings):
    """A model trained (fast parameters) on the synthetic data; returns the train report."""
    return train_model(database, settings.model_dir, FAST)


@pytest.fixture
def model(trained, settings):
    return load_model(settings.model_dir)


@pytest.fixture
def fast_params() -> TrainParams:
    return FAST


@pytest.fixture
def execute(db_url):
    """Run one SQL statement (with bound parameters) in this test's database and commit."""

    def run(statement: str, params: tuple = ()) -> None:
        with psycopg.connect(psycopg_url(db_url)) as conn:
            conn.execute(statement, params)

    return run


@pytest.fixture
def make_app():
    """create_app, with every app's connection pool closed before its database is dropped."""
    apps = []

    def make(*args, **kwargs):
        apps.append(create_app(*args, **kwargs))
        return apps[-1]

    yield make
    for app in apps:
        if app.extensions["movierec.ai"]["database"] is not None:
            app.extensions["movierec.ai"]["database"].dispose()
