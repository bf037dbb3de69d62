"""Partitions on a real primary, a tablespace and two shard servers (postgres_fdw).

The shard servers are two more private PostgreSQL servers, started once for this module;
each test gets its own database on each of them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from movierec.cli import main
from movierec.db import LocalPostgres, Rating
from movierec.db.engines import libpq_conninfo
from movierec.db.history import rollback
from movierec.db.local_server import free_port
from movierec.db.partitions import (
    PartitionError,
    Placement,
    check_references,
    list_partitions,
    place,
    repartition,
    upsert,
)
from movierec.db.partitions import placement as placement_module
from movierec.db.roles import WEB_ROLE
from movierec.db.tools import give_to_server_user
from movierec.errors import NotFound

USERS, MOVIES = 400, 60
FINGERPRINT = {
    "movies": "SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM movies t",
    "ratings": "SELECT md5(string_agg(t::text, '|' ORDER BY user_id, movie_id)) FROM ratings t",
    "searches": "SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM searches t",
    "preferences": "SELECT md5(string_agg(t::text, '|' ORDER BY user_id)) FROM preferences t",
    "counts": "SELECT (SELECT count(*) FROM ratings) || '/' || (SELECT count(*) FROM movies)",
}


@pytest.fixture(scope="module")
def shard_servers():
    root = Path(tempfile.mkdtemp(prefix="movierec-test-shards-"))
    os.chmod(root, 0o755)  # the postgres OS user must enter it when we are root
    servers = [LocalPostgres(root / name).start() for name in ("shard1", "shard2")]
    yield servers
    for server in servers:
        server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def shards(shard_servers, db_url):
    """``{name: libpq URL}`` of a fresh database on each shard server."""
    dbname = make_url(db_url).database
    urls = {}
    for number, server in enumerate(shard_servers, start=1):
        url = server.create_database(f"{dbname}_s{number}")
        urls[f"shard{number}"] = url.replace("postgresql+psycopg://", "postgresql://")
    return urls


@pytest.fixture
def tablespace(pg_server, db_url):
    """``(name, directory)`` for a tablespace: unique (tablespaces belong to the whole
    server) and dropped afterwards, after the test's database that used it."""
    root = Path(tempfile.mkdtemp(prefix="movierec-test-ts-"))
    os.chmod(root, 0o755)
    directory = root / "fast"
    directory.mkdir()
    give_to_server_user(directory)
    name = f"fast_{uuid.uuid4().hex[:8]}"
    yield name, directory
    pg_server.drop_database(make_url(db_url).database)
    with psycopg.connect(pg_server.admin_conninfo(), autocommit=True) as conn:
        conn.execute(f'DROP TABLESPACE IF EXISTS "{name}"')
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def cli(db_url, tmp_path):
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(
            main.app,
            ["db", "partitions", *args],
            env={
                "MOVIEREC_DATABASE_URL": db_url,
                "MOVIEREC_STATE_DIR": str(tmp_path / "state"),
                "COLUMNS": "200",
            },
        )

    return invoke


def run(database, *statements: str, **params) -> None:
    with database.session() as s:
        for statement in statements:
            s.execute(text(statement), params)


def scalar(database, statement: str, **params):
    with database.session() as s:
        return s.execute(text(statement), params).scalar()


SEED = (
    "INSERT INTO users (id, username) SELECT i, 'u' || i FROM generate_series(1, :users) i",
    "INSERT INTO movies (id, title, year, source, source_id) "
    "SELECT i, 'Film ' || i, 1950 + i, 'test', i FROM generate_series(1, :movies) i",
    "INSERT INTO ratings (user_id, movie_id, rating, rated_at) "
    "SELECT u, m, 0.5 + (u * m) % 10 / 2.0, timestamptz '2020-01-01' + u * interval '1 h' "
    "FROM generate_series(1, :users) u, generate_series(1, :movies, 6) m",
    "INSERT INTO preferences (user_id, genres) SELECT i, '{Drama}' "
    "FROM generate_series(1, :users, 3) i",
    "INSERT INTO searches (user_id, query) SELECT i, 'heat' FROM generate_series(1, :users, 5) i",
    "SELECT setval('movies_id_seq', :movies)",
)
BY_USER = {
    "ratings": "SELECT * FROM ratings WHERE user_id = :u",
    "searches": "SELECT * FROM searches WHERE user_id = :u",
    "preferences": "SELECT * FROM preferences WHERE user_id = :u",
}


def seed(database) -> None:
    run(database, *SEED, users=USERS, movies=MOVIES)


def fingerprint(database) -> dict[str, str]:
    with database.session() as s:
        s.execute(text("SET LOCAL TimeZone = 'UTC'"))
        return {name: s.execute(text(q)).scalar() for name, q in FINGERPRINT.items()}


def user_in(database, table: str, remainder: int, modulus: int = 4) -> int:
    """The first user id whose rows go to partition ``remainder`` of ``table``."""
    return scalar(
        database,
        "SELECT min(i) FROM generate_series(1, 1000) i "
        "WHERE satisfies_hash_partition(CAST(:t AS regclass), :m, :r, i::bigint)",
        t=table,
        m=modulus,
        r=remainder,
    )


def plan(database, statement: str, **params) -> str:
    with database.session() as s:
        return "\n".join(s.execute(text("EXPLAIN " + statement), params).scalars())


def scanned(database, table: str, statement: str, **params) -> set[str]:
    """The partitions of ``table`` an EXPLAIN of ``statement`` mentions."""
    shown = plan(database, statement, **params)
    return {p.name for p in list_partitions_quick(database, table) if f" {p.name} " in shown}


def list_partitions_quick(database, table: str):
    return list_partitions(database.settings, table)


def remote(url: str, statement: str, params=()):
    with psycopg.connect(url) as conn:
        return conn.execute(statement, params).fetchall()


def one_line_error(result, expected: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.output


# -- the migrated layout --------------------------------------------------------------------


def test_each_table_is_hash_partitioned_and_one_user_touches_one_partition(database):
    seed(database)
    partitions = list_partitions(database.settings)
    layout = {(p.table, p.name, p.modulus, p.remainder, p.placement) for p in partitions}
    assert layout == {
        (table, f"{table}_p{r}", 4, r, Placement.LOCAL)
        for table in ("movies", "ratings", "searches", "preferences")
        for r in range(4)
    }
    for table in ("ratings", "searches", "preferences"):
        for remainder in range(4):
            user = user_in(database, table, remainder)
            touched = scanned(database, table, BY_USER[table], u=user)
            assert touched == {f"{table}_p{remainder}"}
    movie = user_in(database, "movies", 2)
    assert scanned(database, "movies", "SELECT * FROM movies WHERE id = :m", m=movie) == {
        "movies_p2"
    }
    # The key lives on each partition; the parent has none (it may get foreign partitions).
    with pytest.raises(Exception, match="ratings_p\\d_pkey"):
        run(database, "INSERT INTO ratings (user_id, movie_id, rating) VALUES (1, 1, 3)")
    assert scalar(database, "SELECT count(*) FROM movie_sources WHERE source = 'test'") == MOVIES


def test_references_are_enforced_and_cascade_like_foreign_keys(database):
    seed(database)
    with pytest.raises(Exception, match="Key \\(user_id\\)=\\(9999\\) is not present"):
        run(database, "INSERT INTO ratings (user_id, movie_id, rating) VALUES (9999, 1, 3)")
    with pytest.raises(Exception, match="Key \\(movie_id\\)=\\(9999\\) is not present"):
        run(database, "INSERT INTO ratings (user_id, movie_id, rating) VALUES (1, 9999, 3)")
    with pytest.raises(Exception, match="movie_sources_pkey"):
        run(database, "INSERT INTO movies (title, source, source_id) VALUES ('Twin', 'test', 1)")
    run(database, "DELETE FROM users WHERE id = 3", "DELETE FROM movies WHERE id = 7")
    assert scalar(database, "SELECT count(*) FROM ratings WHERE user_id = 3 OR movie_id = 7") == 0
    assert scalar(database, "SELECT count(*) FROM preferences WHERE user_id = 3") == 0
    assert scalar(database, "SELECT count(*) FROM movie_sources WHERE movie_id = 7") == 0
    assert {o.rows for o in check_references(database.settings)} == {0}
    run(  # behind the triggers' back, as a direct edit on a shard would be
        database,
        "SET LOCAL session_replication_role = replica",
        "INSERT INTO ratings (user_id, movie_id, rating) VALUES (8888, 1, 3)",
    )
    found = {(o.child, o.column): o.rows for o in check_references(database.settings)}
    assert found[("ratings", "user_id")] == 1 and found[("ratings", "movie_id")] == 0


# -- tablespace and shards ------------------------------------------------------------------


def test_partitions_across_a_tablespace_and_two_shards(database, cli, shards, tablespace):
    fast, directory = tablespace
    seed(database)
    before = fingerprint(database)
    assert cli("add-tablespace", fast, str(directory)).exit_code == 0
    for name, url in shards.items():
        added = cli("add-server", name, url)
        assert added.exit_code == 0, added.output
    moves = [
        ("ratings_p0", "--tablespace", fast),
        ("ratings_p1", "--server", "shard1"),
        ("ratings_p2", "--server", "shard2"),
        ("movies_p3", "--server", "shard2"),
        ("preferences_p1", "--server", "shard1"),
    ]
    for partition, option, target in moves:
        moved = cli("place", partition, option, target)
        assert moved.exit_code == 0, moved.output
        assert f"{partition}: " in moved.output and "verified" in moved.output
    assert fingerprint(database) == before  # every row, byte for byte, nothing twice

    listed = {p.name: p for p in list_partitions(database.settings, exact=True)}
    assert listed["ratings_p0"].location == f"tablespace {fast}"
    assert listed["ratings_p1"].location == "server shard1"
    assert listed["ratings_p2"].location == "server shard2"
    assert listed["movies_p3"].remote_table == "public.movies_p3"
    assert listed["ratings_p3"].location == "local"
    assert sum(listed[f"ratings_p{r}"].rows for r in range(4)) == USERS * 10
    # The primary's planner knows how big a moved partition is: a foreign table is never
    # analyzed by autovacuum, and one never analyzed counts as -1 rows (at 20M ratings the
    # admin page's estimate missed the half of the ratings that lived on the shards).
    for partition in ("ratings_p1", "ratings_p2", "preferences_p1"):
        estimate = scalar(
            database, "SELECT reltuples FROM pg_class WHERE relname = :p", p=partition
        )
        assert estimate == listed[partition].rows, partition
    shown = cli("list", "ratings", "--exact")
    assert shown.exit_code == 0 and "server shard1 (public.ratings_p1)" in shown.output

    # Rows live where their hash sends them: on the shard, and only those.
    for name, remainder, query in (
        ("shard1", 1, "SELECT user_id FROM ratings_p1"),
        ("shard2", 2, "SELECT user_id FROM ratings_p2"),
    ):
        users = [u for (u,) in remote(shards[name], query)]
        assert len(users) == listed[f"ratings_p{remainder}"].rows > 0
        assert scalar(
            database,
            "SELECT bool_and(satisfies_hash_partition('ratings'::regclass, 4, :r, u)) "
            "FROM unnest(CAST(:users AS bigint[])) u",
            r=remainder,
            users=users,
        )
    assert scalar(
        database,
        "SELECT count(*) FROM pg_class c JOIN pg_tablespace t ON t.oid = c.reltablespace "
        "WHERE t.spcname = :fast AND c.relname IN ('ratings_p0', 'ratings_p0_pkey')",
        fast=fast,
    ) == 2  # fmt: skip
    assert (
        remote(shards["shard2"], "SELECT count(*) FROM movies_p3")[0][0] == listed["movies_p3"].rows
    )

    # One user's query goes to that user's partition only, local or foreign.
    on_shard, in_tablespace = user_in(database, "ratings", 1), user_in(database, "ratings", 0)
    query = "SELECT * FROM ratings WHERE user_id = :u"
    assert scanned(database, "ratings", query, u=on_shard) == {"ratings_p1"}
    assert "Foreign Scan on ratings_p1" in plan(database, query, u=on_shard)
    assert "ratings_p0_pkey" in plan(database, query, u=in_tablespace)

    # Writes through the parent reach the shard, and the history records them.
    point = scalar(database, "SELECT max(id) FROM change_history")
    shard_before = remote(shards["shard1"], "SELECT * FROM ratings_p1 ORDER BY 1, 2")
    run(database, "INSERT INTO ratings (user_id, movie_id, rating) VALUES (:u, 2, 4.5)", u=on_shard)
    run(database, "UPDATE ratings SET rating = 1 WHERE user_id = :u AND movie_id = 1", u=on_shard)
    with database.session() as s:  # the web's upsert: update, else insert
        assert upsert(s, Rating, {"user_id": on_shard, "movie_id": 3}, {"rating": 2.0})
        assert not upsert(s, Rating, {"user_id": on_shard, "movie_id": 3}, {"rating": 2.5})
    got = remote(
        shards["shard1"],
        "SELECT movie_id, rating FROM ratings_p1 WHERE user_id = %s AND movie_id IN (1, 2, 3) "
        "ORDER BY 1",
        (on_shard,),
    )
    assert [(m, float(r)) for m, r in got] == [(1, 1.0), (2, 4.5), (3, 2.5)]
    with database.session() as s:
        recorded = s.execute(
            text(
                "SELECT op, row_key ->> 'movie_id' FROM change_history "
                "WHERE id > :p AND table_name = 'ratings' ORDER BY id"
            ),
            {"p": point},
        ).all()
    assert recorded == [("INSERT", "2"), ("UPDATE", "1"), ("INSERT", "3"), ("UPDATE", "3")]
    with database.session() as s:  # and a rollback puts the shard's rows back
        rollback(s, to_id=point)
    assert remote(shards["shard1"], "SELECT * FROM ratings_p1 ORDER BY 1, 2") == shard_before
    assert fingerprint(database) == before

    # A user's deletion reaches their ratings on the shard.
    run(database, "DELETE FROM users WHERE id = :u", u=on_shard)
    assert remote(
        shards["shard1"], "SELECT count(*) FROM ratings_p1 WHERE user_id = %s", (on_shard,)
    ) == [(0,)]  # fmt: skip

    # Re-partitioning refuses while a partition is on a shard; placing back works.
    one_line_error(cli("create", "ratings", "--count", "8", "--yes"), "live on shard servers")
    state = fingerprint(database)
    back = cli("place", "ratings_p1", "--tablespace", "pg_default")
    assert back.exit_code == 0, back.output
    assert fingerprint(database) == state
    assert remote(shards["shard1"], "SELECT to_regclass('ratings_p1')") == [(None,)]
    again = {p.name: p for p in list_partitions(database.settings)}
    assert again["ratings_p1"].location == "local"


def test_bad_input_is_one_line_and_changes_nothing(database, cli, shards, tmp_path):
    seed(database)
    before = fingerprint(database)
    layout = [(p.name, p.location) for p in list_partitions(database.settings)]
    assert cli("add-server", "shard1", shards["shard1"]).exit_code == 0
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    run(  # a shard that went away after it was added
        database,
        f"CREATE SERVER gone FOREIGN DATA WRAPPER postgres_fdw OPTIONS "
        f"(host '127.0.0.1', port '{make_url(dead).port}', dbname 'nowhere')",
        "CREATE USER MAPPING FOR PUBLIC SERVER gone OPTIONS (user 'postgres')",
    )
    not_postgres = tmp_path / "mine"
    not_postgres.mkdir()
    cases = [
        (("place", "ratings_p9", "--server", "shard1"), "no partition named 'ratings_p9'"),
        (("place", "ratings_p1", "--server", "shard9"), "no shard server named 'shard9'"),
        (("place", "ratings_p1", "--server", "gone"), "shard server gone (127.0.0.1:"),
        (("place", "ratings_p1"), "on a --server or in a --tablespace"),
        (("place", "ratings_p1", "--tablespace", "nope"), "no tablespace named 'nope'"),
        (("place", "ratings_p1", "--tablespace", "pg_default"), "already on the default"),
        (("add-server", "shard9", dead), "is unreachable"),
        (("add-server", "Bad-Name", dead), "bad server name 'Bad-Name'"),
        (("add-server", "shard1", shards["shard1"]), "exists already"),
        (("add-tablespace", "slow", str(not_postgres)), "must belong to the database server"),
        (("create", "ratings", "--count", "1", "--yes"), "from 2 to 256"),
        (("create", "nope", "--count", "4", "--yes"), "'nope' is not a partitioned table"),
        (("list", "nope"), "'nope' is not a partitioned table"),
    ]
    for args, expected in cases:
        one_line_error(cli(*args), expected)
    assert fingerprint(database) == before
    assert [(p.name, p.location) for p in list_partitions(database.settings)] == layout
    servers = scalar(
        database, "SELECT string_agg(srvname, ',' ORDER BY srvname) FROM pg_foreign_server"
    )
    assert servers == "gone,shard1"
    assert remote(shards["shard1"], "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")[
        0
    ] == (0,)  # fmt: skip


def test_a_copy_that_does_not_verify_changes_nothing(database, shards, monkeypatch):
    seed(database)
    before = fingerprint(database)
    from movierec.db.partitions import add_server

    add_server(database.settings, "shard1", shards["shard1"])
    real = placement_module.checksum
    calls = []

    def tampered(conn, relation, shape):
        result = real(conn, relation, shape)
        calls.append(relation)
        return result if len(calls) == 1 else type(result)(result.rows, result.sum + 1)

    monkeypatch.setattr(placement_module, "checksum", tampered)
    with pytest.raises(PartitionError, match="does not match it.*nothing was changed"):
        place(database.settings, "ratings_p1", server="shard1", online=False)
    assert calls == ["ratings_p1", "ratings_p1_new"]
    assert fingerprint(database) == before
    assert {p.name: p.location for p in list_partitions(database.settings)}["ratings_p1"] == "local"
    assert remote(shards["shard1"], "SELECT to_regclass('ratings_p1')") == [(None,)]


def leftovers(database) -> list[str]:
    """What an online move leaves if it does not clean up: copy, log, trigger function."""
    return scalar(
        database,
        "SELECT coalesce(string_agg(relname, ','), '') FROM pg_class "
        "WHERE relname LIKE 'movierec_move%' OR relname LIKE '%_new'",
    ).split(",") + scalar(
        database,
        "SELECT coalesce(string_agg(proname, ','), '') FROM pg_proc "
        "WHERE proname LIKE 'movierec_move%'",
    ).split(",")


def test_an_online_copy_that_does_not_verify_changes_nothing(database, shards, monkeypatch):
    seed(database)
    before = fingerprint(database)
    from movierec.db.partitions import add_server

    add_server(database.settings, "shard1", shards["shard1"])
    real = placement_module.copy_rows

    def tampering(conn, source, target, *args, **kwargs):
        done = real(conn, source, target, *args, **kwargs)
        with conn.transaction():  # a copy that lost a change: the row-by-row check must see it
            conn.execute(
                sql.SQL("UPDATE {} SET rating = 0.5 WHERE rating <> 0.5 AND movie_id = 1").format(
                    sql.Identifier(target)
                )
            )
        return done

    monkeypatch.setattr(placement_module, "copy_rows", tampering)
    with pytest.raises(PartitionError, match="does not match it in \\d+ rows.*nothing was changed"):
        place(database.settings, "ratings_p1", server="shard1")
    assert fingerprint(database) == before
    assert {p.name: p.location for p in list_partitions(database.settings)}["ratings_p1"] == "local"
    assert remote(shards["shard1"], "SELECT to_regclass('ratings_p1')") == [(None,)]
    assert leftovers(database) == ["", ""]


def test_what_cannot_be_done_online_is_refused_and_changes_nothing(database, tablespace):
    from movierec.db.partitions import add_tablespace

    seed(database)
    fast, directory = tablespace
    add_tablespace(database.settings, fast, directory)
    before = fingerprint(database)

    def busy(done, total):  # 500 changes during the copy, and no time to catch up
        if done == 0:
            run(database, "UPDATE ratings SET rating = 5 WHERE user_id IN "
                "(SELECT id FROM users WHERE satisfies_hash_partition('ratings'::regclass, "
                "4, 1, id) LIMIT 50)")  # fmt: skip

    with pytest.raises(PartitionError, match="writes to ratings_p1 come faster than the move"):
        place(database.settings, "ratings_p1", tablespace=fast, progress=busy, catch_up_s=0)
    assert fingerprint(database) != before  # the writes went in,
    assert leftovers(database) == ["", ""]  # and the move left nothing behind
    layout = {p.name: p.location for p in list_partitions(database.settings)}
    assert layout["ratings_p1"] == "local"

    run(database, "CREATE TABLE movierec_move_ratings_p2 (x int)")  # a move that died
    with pytest.raises(PartitionError, match="a move of ratings_p2 is under way.*DROP TABLE"):
        place(database.settings, "ratings_p2", tablespace=fast)
    run(database, "CREATE TABLE ratings_p3_new (x int)")  # another move's copy: left alone
    with pytest.raises(PartitionError, match="ratings_p3_new exists"):
        place(database.settings, "ratings_p3", tablespace=fast)
    assert scalar(database, "SELECT to_regclass('ratings_p3_new') IS NOT NULL")

    refused = []

    def truncating(done, total):  # searches have no history guard: the move's trigger refuses
        if done == 0:
            try:
                run(database, "TRUNCATE searches_p1")
            except Exception as exc:  # noqa: BLE001 - the refusal is what we look for
                refused.append(str(exc))

    place(database.settings, "searches_p1", tablespace=fast, progress=truncating)
    assert refused and "being moved: TRUNCATE it afterwards" in refused[0]
    assert fingerprint(database)["searches"] == before["searches"]


class Writer(threading.Thread):
    """Writes ratings of one partition's users as the site's role, one transaction each,
    remembering what each acknowledged (committed) write left and how long it took."""

    def __init__(self, url: str, users: list[int]):
        super().__init__(daemon=True)
        self.url, self.users = url, users
        self.expected: dict[tuple[int, int], float | None] = {}
        self.took: list[float] = []
        self.changed = 0  # acknowledged writes that changed a row: one history entry each
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            step = 0
            while not self.stop.is_set():
                user = self.users[step % len(self.users)]
                kind = step % 3
                started = time.perf_counter()
                try:
                    with conn.transaction():
                        if kind == 0:  # a new rating (movies 2, 8, ... are not seeded)
                            movie, value = 2 + 6 * (step // 3 % 10), 4.5
                            done = conn.execute(
                                "INSERT INTO ratings (user_id, movie_id, rating) "
                                "VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                                (user, movie, value),
                            ).rowcount
                        elif kind == 1:  # a changed rating
                            movie, value = 1 + 6 * (step // 3 % 10), (step % 9 + 1) / 2
                            old = conn.execute(
                                "SELECT rating FROM ratings WHERE user_id = %s "
                                "AND movie_id = %s FOR UPDATE",
                                (user, movie),
                            ).fetchone()
                            conn.execute(
                                "UPDATE ratings SET rating = %s WHERE user_id = %s "
                                "AND movie_id = %s",
                                (value, user, movie),
                            )
                            # (the history keeps no entry for an update that changed nothing)
                            done = int(old is not None and float(old[0]) != value)
                            value = value if old is not None else None  # (deleted before)
                        else:  # a deleted rating
                            movie, value = 7 + 6 * (step // 3 % 8), None
                            done = conn.execute(
                                "DELETE FROM ratings WHERE user_id = %s AND movie_id = %s",
                                (user, movie),
                            ).rowcount
                except psycopg.Error as exc:
                    self.errors.append(str(exc))
                else:
                    if kind != 0 or done:
                        self.expected[(user, movie)] = value
                    self.changed += done
                    self.took.append(time.perf_counter() - started)
                step += 1
                time.sleep(0.002)


@pytest.mark.parametrize(
    "target",  # the drill moves one into a tablespace under the site's load
    ["server", pytest.param("tablespace", marks=pytest.mark.drill_slow)],
)
def test_a_partition_moves_online_while_a_writer_writes(
    database, db_url, as_role, shards, tablespace, target
):
    """No acknowledged write is lost, none waits long, the history records each write once:
    a slowed copy (2 s of chunks) would hold writes that long if the move were offline."""
    from movierec.db.partitions import add_server, add_tablespace, copying

    seed(database)
    before = fingerprint(database)
    fast, directory = tablespace
    add_server(database.settings, "shard1", shards["shard1"])
    add_tablespace(database.settings, fast, directory)
    with database.session() as s:
        users = list(
            s.execute(
                text(
                    "SELECT id FROM users WHERE "
                    "satisfies_hash_partition('ratings'::regclass, 4, 1, id) ORDER BY id"
                )
            ).scalars()
        )
    point = scalar(database, "SELECT max(id) FROM change_history")
    writer = Writer(libpq_conninfo(as_role(db_url, WEB_ROLE), "movierec_tests"), users)
    chunks = []

    def slow_progress(done, total):
        chunks.append(done)
        time.sleep(0.1)  # a big partition's copy, in small: writes go on meanwhile

    options = {"server": "shard1"} if target == "server" else {"tablespace": fast}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(copying, "CHUNK_ROWS", 50)
        writer.start()
        time.sleep(0.2)
        report = place(database.settings, "ratings_p1", progress=slow_progress, **options)
        time.sleep(0.2)
        writer.stop.set()
        writer.join(10)
    print(
        f"{len(writer.took)} writes, longest {max(writer.took) * 1000:.0f} ms; "
        f"held {report.held_s * 1000:.0f} ms; {report.caught_up} replayed"
    )
    assert len(chunks) > 15 and report.online and report.caught_up > 0
    assert not writer.errors, writer.errors[:3]
    assert len(writer.took) > 100
    assert max(writer.took) < 1.0, f"a write waited {max(writer.took):.2f} s"
    assert report.held_s < 1.0

    with database.session() as s:  # every acknowledged write, as it was acknowledged
        for (user, movie), value in writer.expected.items():
            got = s.execute(
                text("SELECT rating FROM ratings WHERE user_id = :u AND movie_id = :m"),
                {"u": user, "m": movie},
            ).scalar()
            assert (None if got is None else float(got)) == value, (user, movie)
    where = {"server": "server shard1", "tablespace": f"tablespace {fast}"}[target]
    assert {p.name: p.location for p in list_partitions(database.settings)}["ratings_p1"] == where
    assert leftovers(database) == ["", ""]
    # The history has each write that changed a row once and nothing for the rows that only
    # moved: a rollback to before the move puts every row back as it was.
    with database.session() as s:
        recorded = s.execute(
            text("SELECT count(*) FROM change_history WHERE id > :p AND table_name = 'ratings'"),
            {"p": point},
        ).scalar()
    assert recorded == writer.changed > 0
    with database.session() as s:
        rollback(s, to_id=point)
    assert fingerprint(database) == before


def test_create_repartitions_a_table_keeping_every_row(database, cli, tablespace):
    fast, directory = tablespace
    seed(database)
    before = fingerprint(database)
    history = scalar(database, "SELECT count(*) FROM change_history")
    assert cli("add-tablespace", fast, str(directory)).exit_code == 0
    done = cli("create", "ratings", "--count", "8", "--tablespace", fast, "--yes")
    assert done.exit_code == 0, done.output
    assert "4 -> 8 partitions" in done.output
    assert fingerprint(database) == before
    assert scalar(database, "SELECT count(*) FROM change_history") == history  # no row events
    partitions = list_partitions(database.settings, "ratings", exact=True)
    assert [(p.name, p.modulus, p.location) for p in partitions] == [
        (f"ratings_p{r}", 8, f"tablespace {fast}") for r in range(8)
    ]
    assert sum(p.rows for p in partitions) == USERS * 10
    indexes = scalar(
        database,
        "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes "
        "WHERE tablename = 'ratings_p5'",
    )
    assert indexes == "ratings_movie_id_idx_p5,ratings_p5_pkey"
    user = user_in(database, "ratings", 5, modulus=8)
    query = "SELECT * FROM ratings WHERE user_id = :u"
    assert scanned(database, "ratings", query, u=user) == {"ratings_p5"}
    with pytest.raises(Exception, match="TRUNCATE ratings_p5 refused"):
        run(database, "TRUNCATE ratings_p5")
    with pytest.raises(NotFound, match="no tablespace named .nope."):
        repartition(database.settings, "ratings", 4, tablespace="nope")


def test_concurrent_upserts_of_one_key_end_as_one_row(database):
    """The second writer waits on the first's new key, then updates instead of inserting."""
    seed(database)
    key = {"user_id": 5, "movie_id": 2}  # seed() rates movies 1, 7, 13, ...: not this one
    result = {}

    def second() -> None:
        with database.session() as s:
            result["inserted"] = upsert(s, Rating, key, {"rating": 4.0})

    with database.session() as first:
        assert upsert(first, Rating, key, {"rating": 1.0})
        thread = threading.Thread(target=second)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive()  # blocked on the partition's primary key
    thread.join(10)
    assert result == {"inserted": False}
    assert scalar(
        database, "SELECT array_agg(rating) FROM ratings WHERE user_id = 5 AND movie_id = 2"
    ) == [4.0]  # fmt: skip


def test_a_bulk_load_reaches_a_shard_in_batches_and_stays_idempotent(database, shards, monkeypatch):
    from movierec.data import generate_catalogue
    from movierec.db import bulk
    from movierec.db.partitions import add_server

    routed = []
    real = bulk._insert_routed
    monkeypatch.setattr(
        bulk, "_insert_routed", lambda *a: routed.append([r.relation for r in a[3]]) or real(*a)
    )
    add_server(database.settings, "shard1", shards["shard1"])
    place(database.settings, "ratings_p1", server="shard1")
    generate_catalogue(database, movies=50, users=300, ratings=3000, seed=1)
    first = fingerprint(database)
    on_shard = remote(shards["shard1"], "SELECT count(*) FROM ratings_p1")[0][0]
    assert on_shard > 0
    assert on_shard == scalar(
        database,
        # OFFSET 0: evaluated here (postgres_fdw would ship the function, and the OID, away)
        "SELECT count(*) FROM (SELECT user_id FROM ratings OFFSET 0) r "
        "WHERE satisfies_hash_partition('ratings'::regclass, 4, 1, user_id)",
    )
    assert first["counts"] == "3000/50"
    assert len(routed) == 1 and routed[0][0].startswith("ratings_p1_load_")
    # The loader's own foreign tables are gone; nothing was recorded row by row.
    assert scalar(database, "SELECT count(*) FROM pg_class WHERE relname LIKE '%\\_load\\_%'") == 0
    assert scalar(database, "SELECT count(*) FROM change_history WHERE op <> 'BULK'") == 0
    generate_catalogue(database, movies=50, users=300, ratings=3000, seed=1)
    assert fingerprint(database) == first


def test_with_one_shard_down_users_elsewhere_still_write_and_its_users_get_unavailable(
    database, shards, shard_servers, as_role, settings
):
    """Issue 24, drill 1: a generic plan of ``UPDATE ratings ... WHERE user_id = $1`` opened
    a connection to every foreign partition, so one shard down stopped every user's writes.
    The site's own connections (prepared statements, generic plans) as its own role; each
    write runs often enough on one connection to be prepared."""
    from movierec.db import Database
    from movierec.db.partitions import add_server
    from movierec.db.roles import WEB_ROLE
    from movierec.errors import DatabaseUnavailable
    from movierec.web.auth.linking import delete_account
    from movierec.web.users import rate, save_preferred_genres, unrate

    seed(database)
    for name, url in shards.items():
        add_server(database.settings, name, url)
    for table in ("ratings", "preferences", "searches"):
        place(database.settings, f"{table}_p2", server="shard1")
        place(database.settings, f"{table}_p3", server="shard2")
    users = {r: user_in(database, "ratings", r) for r in range(4)}
    site = Database(settings.replace(database_url=as_role(settings.database_url, WEB_ROLE)))
    shard_servers[1].stop()
    try:
        for remainder in (0, 1, 2):
            user = users[remainder]
            for round_ in range(8):  # psycopg prepares a statement at its 5th run
                with site.session() as s:
                    rate(s, user, 1 + round_, 4.5)
                    rate(s, user, 1 + round_, 3.0)  # an update of the row just inserted
                    save_preferred_genres(s, user, ["Drama", "Comedy"][: 1 + round_ % 2])
                    assert unrate(s, user, 1 + round_)
        for remainder in (0, 2):  # a cascade into the partitioned tables
            with site.session() as s:
                delete_account(s, users[remainder])
        with pytest.raises(DatabaseUnavailable), site.session() as s:
            rate(s, users[3], 1, 4.5)  # its partition is on the stopped shard
    finally:
        site.dispose()
        shard_servers[1].start()
    assert scalar(database, "SELECT count(*) FROM ratings WHERE user_id = :u", u=users[3]) > 0
