"""``movierec model report``: online figures per model version, the live one against the one
before it, on a real PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from movierec.cli.main import app


@pytest.fixture
def env(monkeypatch, db_url, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setenv("MOVIEREC_DATABASE_URL", db_url)
    monkeypatch.setenv("MOVIEREC_MODEL_DIR", str(models))
    monkeypatch.setenv("MOVIEREC_STATE_DIR", str(tmp_path / "state"))
    return models


def test_the_report_compares_the_live_version_with_the_one_before(env, database):
    now = datetime.now(UTC)
    with database.session() as s:
        s.execute(text("INSERT INTO movies (id, title) VALUES (1, 'Heat'), (2, 'Alien')"))
        ann = s.execute(text("INSERT INTO users (username) VALUES ('ann') RETURNING id")).scalar()
        s.execute(
            text(
                "INSERT INTO impressions (user_id, model_version, movie_ids, shown_at) VALUES "
                "(:u, 'old-1', '{1,2}', :t0), (:u, 'new-2', '{2,1}', :t1)"
            ),
            {"u": ann, "t0": now - timedelta(days=2), "t1": now - timedelta(days=1)},
        )
        s.execute(
            text("INSERT INTO ratings (user_id, movie_id, rating, rated_at) VALUES (:u, 2, 5, :t)"),
            {"u": ann, "t": now - timedelta(hours=1)},
        )
    (env / "LIVE-ranking").write_text(json.dumps({"version": "new-2", "previous": ["old-1"]}))
    result = CliRunner().invoke(app, ["model", "report", "--days", "7"])
    assert result.exit_code == 0, result.output
    assert "old-1" in result.output and "new-2" in result.output
    # Both lists showed Alien, rated 5 after both: each a hit, at rank 2 then rank 1.
    assert "live new-2 vs old-1: hit rate 1.000 vs 1.000 (+0.000), NDCG 1.0000 vs 0.6309" in (
        " ".join(result.output.split())
    )


def test_no_impressions_says_so_and_bad_options_are_one_line(env, database):
    result = CliRunner().invoke(app, ["model", "report"])
    assert result.exit_code == 0 and "no impressions in the last 30 days" in result.output
    bad = CliRunner().invoke(app, ["model", "report", "--k", "0"])
    assert bad.exit_code == 1 and bad.stderr.startswith("error: --days must be positive")
