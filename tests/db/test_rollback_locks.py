"""What a rollback locks, and which partitions it reaches (issue 24, item 2): only the rows it
changes, nothing for a dry run, and only the partitions that hold rows it reverts (a shard
that holds none of them may be down)."""

from __future__ import annotations

import pytest
from psycopg.errors import LockNotAvailable
from sqlalchemy import text
from sqlalchemy.engine import make_url

from movierec.db.history import rollback
from movierec.db.partitions import add_server, place

USERS = 40


def run(database, *statements: str) -> None:
    for statement in statements:
        with database.session() as s:
            s.execute(text(statement))


def last_change(database) -> int:
    with database.session() as s:
        return s.execute(text("SELECT coalesce(max(id), 0) FROM change_history")).scalar()


@pytest.fixture
def seeded(database):
    with database.session() as s:
        for statement in (
            "INSERT INTO users (id, username) SELECT i, 'u' || i FROM generate_series(1, :n) i",
            "INSERT INTO movies (id, title) SELECT i, 'm' || i FROM generate_series(1, 5) i",
            "INSERT INTO ratings (user_id, movie_id, rating) SELECT u, m, 3 "
            "FROM generate_series(1, :n) u, generate_series(1, 5) m",
        ):
            s.execute(text(statement), {"n": USERS})
    return database


def partition_of(database, user_id: int) -> str:
    with database.session() as s:
        return s.execute(
            text("SELECT DISTINCT tableoid::regclass::text FROM ratings WHERE user_id = :u"),
            {"u": user_id},
        ).scalar_one()


def writer(connect, db_url):
    conn = connect(db_url)
    conn.execute("SET lock_timeout = '500ms'")
    return conn


def test_a_dry_run_locks_nothing(seeded, connect, db_url):
    point = last_change(seeded)
    run(seeded, "UPDATE ratings SET rating = 1 WHERE user_id = 1", "DELETE FROM users WHERE id = 2")
    with seeded.session() as session, writer(connect, db_url) as other:
        report = rollback(session, to_id=point, dry_run=True)
        assert report.changes == 11  # 5 updates; a user and (by cascade) its 5 ratings deleted
        other.execute("UPDATE ratings SET rating = 2 WHERE user_id = 1 AND movie_id = 1")
        other.execute("INSERT INTO users (id, username) VALUES (2, 'again')")


def test_a_rollback_locks_only_the_rows_it_changes(seeded, connect, db_url):
    point = last_change(seeded)
    run(seeded, "UPDATE ratings SET rating = 1 WHERE user_id = 1")
    with seeded.session() as session, writer(connect, db_url) as other:
        report = rollback(session, to_id=point)  # not committed yet: its locks are held
        assert report.rows == 5
        # Other rows of the same tables, same partitions even: written at once.
        other.execute("UPDATE ratings SET rating = 2 WHERE user_id = 3")
        other.execute("DELETE FROM ratings WHERE user_id = 4 AND movie_id = 1")
        other.execute("UPDATE users SET email = 'x@example.org' WHERE id = 1")
        with pytest.raises(LockNotAvailable):  # a row the rollback changed waits for it
            other.execute("UPDATE ratings SET rating = 5 WHERE user_id = 1 AND movie_id = 2")


@pytest.fixture
def shard(pg_server, database, db_url):
    """``ratings_p1`` on a postgres_fdw shard (a database of the test server); yields a
    function that takes the shard down (its server entry points at a dead port)."""
    name = f"{make_url(db_url).database}_shard"
    url = pg_server.create_database(name).replace("postgresql+psycopg://", "postgresql://")
    add_server(database.settings, "shard1", url)
    place(database.settings, "ratings_p1", server="shard1")

    def down() -> None:
        run(database, "ALTER SERVER shard1 OPTIONS (SET port '1')")

    yield down
    database.dispose()  # its sessions hold connections to the shard
    pg_server.drop_database(name)


def test_rollback_across_a_foreign_partition_and_past_a_dead_shard(seeded, shard):
    remote = next(u for u in range(1, USERS) if partition_of(seeded, u) == "ratings_p1")
    local = next(u for u in range(1, USERS) if partition_of(seeded, u) != "ratings_p1")
    point = last_change(seeded)
    with seeded.session() as s:
        users = {"remote": remote, "local": local}
        s.execute(text("UPDATE ratings SET rating = 1 WHERE user_id IN (:remote, :local)"), users)
    with seeded.session() as s:
        s.execute(text("DELETE FROM ratings WHERE user_id = :remote AND movie_id = 5"), users)
    with seeded.session() as session:
        report = rollback(session, to_id=point)
    assert report.rows == 10  # 9 updates (one of the 10 rows was deleted), a re-insert
    with seeded.session() as s:
        stars = s.execute(text("SELECT DISTINCT rating FROM ratings WHERE rating <> 3")).all()
        assert stars == [] and s.execute(text("SELECT count(*) FROM ratings")).scalar() == 200

    shard()  # from now on any statement that reaches ratings_p1 fails
    point = last_change(seeded)
    with seeded.session() as s:  # a plan for this user's partition alone (see issue 24, 1)
        s.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
        s.execute(text("UPDATE ratings SET rating = 2 WHERE user_id = :u"), {"u": local})
    with seeded.session() as session:
        assert rollback(session, to_id=point, dry_run=True).changes == 5
    with seeded.session() as session:
        assert rollback(session, to_id=point).rows == 5  # pruned: the shard is never asked
    assert partition_of(seeded, local) != "ratings_p1"
