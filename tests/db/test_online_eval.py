"""Online evaluation (migration 0012, movierec.db.online_eval) on a real PostgreSQL: the
figures from impressions and what users did after them, the sampling, the site's rights."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from psycopg.errors import InsufficientPrivilege

from movierec.config import load_settings
from movierec.db import Database
from movierec.db.online_eval import compare, online_metrics, record_many, sampled
from movierec.db.roles import WEB_ROLE

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def shown(db_url, connect):
    """Movies 1..6; ann (shown v1's [1, 2, 3] then liked 2 and 5, disliked 3) and bob (shown
    v1's [4, 5, 6], liked nothing, dismissed 6); carol shown v2's [1, 2], liked 1 too late."""
    with connect(db_url) as conn:
        conn.execute(
            "INSERT INTO movies (id, title) SELECT g, 'movie ' || g FROM generate_series(1, 6) g"
        )
        ids = {}
        for name in ("ann", "bob", "carol"):
            ids[name] = conn.execute(
                "INSERT INTO users (username) VALUES (%s) RETURNING id", (name,)
            ).fetchone()[0]

        def impression(user, version, movies, at):
            conn.execute(
                "INSERT INTO impressions (user_id, model_version, movie_ids, shown_at) "
                "VALUES (%s, %s, %s, %s)",
                (ids[user], version, movies, at),
            )

        def rate(user, movie, stars, at):
            conn.execute(
                "INSERT INTO ratings (user_id, movie_id, rating, rated_at) VALUES (%s, %s, %s, %s)",
                (ids[user], movie, stars, at),
            )

        impression("ann", "v1", [1, 2, 3], T0)
        rate("ann", 2, 5.0, T0 + timedelta(hours=1))  # a hit at rank 2
        rate("ann", 5, 4.0, T0 + timedelta(hours=2))  # liked, not shown: counts for the ideal
        rate("ann", 3, 2.0, T0 + timedelta(hours=3))  # shown, rated low: no hit
        rate("ann", 1, 5.0, T0 - timedelta(hours=1))  # before the impression: not a hit
        impression("bob", "v1", [4, 5, 6], T0)
        conn.execute(
            "INSERT INTO not_interested (user_id, movie_id, created_at) VALUES (%s, 6, %s)",
            (ids["bob"], T0 + timedelta(minutes=5)),
        )
        impression("carol", "v2", [1, 2], T0 + timedelta(days=1))
        rate("carol", 1, 5.0, T0 + timedelta(days=9))  # after the 7-day window
    return ids


def test_hit_rate_ndcg_and_dismissals_per_version(db_url, database, shown):
    with database.autocommit() as conn:
        v1, v2 = online_metrics(conn, T0 - timedelta(days=1))
    assert (v1.model_version, v1.impressions, v1.users, v1.hits) == ("v1", 2, 2, 1)
    assert v1.hit_rate == 0.5
    # ann: a hit at rank 2 of 2 liked movies -> (1/log2 3) / (1 + 1/log2 3); bob: nothing.
    ann = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert v1.ndcg == pytest.approx(ann / 2)
    assert v1.dismiss_rate == pytest.approx(1 / 6)
    assert (v2.model_version, v2.hits, v2.hit_rate, v2.ndcg) == ("v2", 0, 0.0, 0.0)


def test_only_impressions_since_and_of_one_version(database, shown):
    with database.autocommit() as conn:
        assert [m.model_version for m in online_metrics(conn, T0 + timedelta(hours=1))] == ["v2"]
        assert [m.model_version for m in online_metrics(conn, T0, version="v1")] == ["v1"]


def test_the_live_version_is_compared_with_the_one_before(database, shown):
    with database.autocommit() as conn:
        metrics = online_metrics(conn, T0 - timedelta(days=1))
    c = compare(metrics, ["v2", "v1"])
    assert (c.live.model_version, c.previous.model_version) == ("v2", "v1")
    assert compare(metrics, ["v3", "v2"]).live is None


def test_sampling_is_by_user_and_close_to_the_fraction():
    assert [sampled(u, 0.25) for u in range(50)] == [sampled(u, 0.25) for u in range(50)]
    share = sum(sampled(u, 0.25) for u in range(1, 20_001)) / 20_000
    assert 0.23 < share < 0.27
    assert not any(sampled(u, 0.0) for u in range(1000))
    assert all(sampled(u, 1.0) for u in range(1000))


def test_the_site_records_impressions_and_audits_but_cannot_rewrite_them(
    db_url, connect, as_role, shown
):
    web = Database(load_settings(environ={}, toml_path=None, overrides={
        "database_url": as_role(db_url, WEB_ROLE)}))  # fmt: skip
    try:
        with web.autocommit() as conn:
            now = datetime.now(UTC)
            row = {"user_id": shown["ann"], "model_version": "v3", "movie_ids": [4, 5]}
            record_many(conn, [{**row, "shown_at": now}])
    finally:
        web.dispose()
    with connect(db_url, WEB_ROLE) as conn:
        assert conn.execute(
            "SELECT movie_ids FROM impressions WHERE model_version = 'v3'"
        ).fetchone() == ([4, 5],)
        conn.execute(
            "INSERT INTO admin_audit (username, action, target, outcome) "
            "VALUES ('ann', 'model-rollback', 'ranking', 'done')"
        )
        for statement in ("UPDATE admin_audit SET outcome = 'x'", "DELETE FROM admin_audit",
                          "DELETE FROM impressions"):  # fmt: skip
            with pytest.raises(InsufficientPrivilege):
                conn.execute(statement)


def test_a_deleted_account_takes_its_impressions_with_it(db_url, connect, shown):
    with connect(db_url) as conn:
        conn.execute("DELETE FROM users WHERE id = %s", (shown["ann"],))
        assert conn.execute("SELECT count(*) FROM impressions").fetchone() == (2,)
