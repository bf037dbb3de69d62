"""The README's library example runs as written against a real database and model."""

import re
from pathlib import Path

from movierec.ai import train_model
from movierec.data import generate_catalogue

README = Path(__file__).resolve().parents[1] / "README.md"
EXAMPLE = re.compile(r"<!-- readme-example -->\s*```python\n(.*?)```", re.S)


def test_readme_starts_with_the_two_commands():
    lines = [line for line in README.read_text().splitlines() if line.startswith("make ")]
    assert [line.split()[1] for line in lines[:2]] == ["demo", "test"]


def test_library_example_runs(database, settings, monkeypatch, capsys):
    generate_catalogue(database, movies=200, users=100, ratings=5000, seed=1)
    train_model(database, settings.model_dir)
    monkeypatch.setenv("MOVIEREC_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("MOVIEREC_MODEL_DIR", str(settings.model_dir))
    code = EXAMPLE.search(README.read_text()).group(1)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 5
    assert all(title in "\n".join(printed) for title in namespace["titles"].values())
