"""``movierec db check``: replicas against the primary at one moment, and acknowledged writes."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from contextlib import suppress
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from movierec.cli.main import app
from movierec.config import load_settings
from movierec.db import LocalPostgres, upgrade
from movierec.db.consistency import compare, data_tables, digests
from movierec.db.engines import libpq_conninfo
from movierec.db.replicas import create_replica
from movierec.db.topology import load_topology
from movierec.errors import OpsCommandFailed

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def replicated():
    """A migrated primary with movies and users, and one streaming replica r1."""
    root = Path(tempfile.mkdtemp(prefix="movierec-check-"))
    os.chmod(root, 0o755)  # the postgres OS user must enter it when we are root
    state = root / "state"
    primary = LocalPostgres(state / "postgres").start()
    url = primary.create_database("movierec")
    upgrade(url)
    settings = load_settings(
        environ={}, toml_path=None, overrides={"database_url": url, "state_dir": state}
    )
    with psycopg.connect(libpq_conninfo(url, "test"), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO users (id, username) SELECT i, 'u' || i FROM generate_series(1, 50) i"
        )
        conn.execute(
            "INSERT INTO movies (id, title) SELECT i, 'Film ' || i FROM generate_series(1, 50) i"
        )
    create_replica(settings, "r1")
    yield settings
    for server in load_topology(settings).servers:
        if server.local is not None:
            with suppress(OpsCommandFailed):
                server.local.stop()
    shutil.rmtree(root, ignore_errors=True)


def run_check(settings, *args: str):
    env = {
        "MOVIEREC_DATABASE_URL": settings.database_url,
        "MOVIEREC_STATE_DIR": str(settings.state_dir),
        "COLUMNS": "200",
    }
    return CliRunner().invoke(app, ["db", "check", *args], env=env)


def test_a_replica_under_a_steady_writer_matches_the_primary_at_one_moment(replicated):
    stop = threading.Event()
    written = []

    def writer():
        with psycopg.connect(
            libpq_conninfo(replicated.database_url, "writer"), autocommit=True
        ) as conn:
            movie = 0
            while not stop.is_set():
                movie = movie % 50 + 1
                user = 1 + len(written) % 50
                conn.execute(
                    "INSERT INTO ratings (user_id, movie_id, rating) VALUES (%s, %s, 3) "
                    "ON CONFLICT DO NOTHING",
                    (user, movie),
                )
                written.append((user, movie))

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        while len(written) < 50:  # the writer is going
            threading.Event().wait(0.01)
        result = run_check(replicated)
    finally:
        stop.set()
        thread.join(10)
    assert result.exit_code == 0, result.output
    assert "same" in result.output and "differs" not in result.output
    assert len(written) > 50


def test_acknowledged_writes_that_are_not_there_fail_the_check(replicated, tmp_path):
    with psycopg.connect(libpq_conninfo(replicated.database_url, "t"), autocommit=True) as conn:
        conn.execute("DELETE FROM ratings WHERE user_id = 7 AND movie_id IN (7, 8)")
        conn.execute("INSERT INTO ratings (user_id, movie_id, rating) VALUES (7, 7, 4.5)")
    record = tmp_path / "acknowledged.jsonl"
    rows = [
        {"user_id": 7, "movie_id": 7, "rating": 4.5},  # there
        {"user_id": 7, "movie_id": 8, "rating": 2.0},  # acknowledged, never stored: lost
        {"user_id": 7, "movie_id": 7, "rating": 4.5},
    ]
    record.write_text("".join(json.dumps(r) + "\n" for r in rows))
    lost = run_check(replicated, "--acknowledged", str(record))
    assert lost.exit_code == 1
    assert "2 checked, 1 missing" in lost.output and "LOST WRITES" in lost.output

    record.write_text(json.dumps(rows[0]) + "\n")
    found = run_check(replicated, "--acknowledged", str(record))
    assert found.exit_code == 0, found.output

    record.write_text('{"user_id": 7}\n')
    bad = run_check(replicated, "--acknowledged", str(record))
    assert bad.exit_code == 1 and "acknowledged.jsonl:1: not a rating record" in bad.output


def test_a_commit_seen_before_its_wal_is_written_is_waited_for_on_the_replica(replicated):
    """With synchronous_commit = off (LocalPostgres' setting; any session may choose it) a
    commit is visible before the WAL writer writes it, and a replica is sent only written
    WAL. The check once waited for the primary's write position, so the replica's snapshot
    could miss a row the primary's showed: "differs" for a copy that was not behind (the
    flaky acknowledged-writes test). A slow WAL writer (10 s) keeps the commit unwritten."""
    conninfo = libpq_conninfo(replicated.database_url, "t")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET wal_writer_delay = '10s'")
        conn.execute("SELECT pg_reload_conf()")
    try:
        time.sleep(0.5)  # the WAL writer reads the setting when its 200 ms sleep ends
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("SET synchronous_commit = off")
            conn.execute("DELETE FROM ratings WHERE user_id = 9 AND movie_id = 9")
            conn.execute("INSERT INTO ratings (user_id, movie_id, rating) VALUES (9, 9, 3.5)")
            written, inserted = conn.execute(
                "SELECT pg_current_wal_lsn(), pg_current_wal_insert_lsn()"
            ).fetchone()
        result = run_check(replicated)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM RESET wal_writer_delay")
            conn.execute("SELECT pg_reload_conf()")
    assert written < inserted  # the commit was still unwritten: the case at hand
    assert result.exit_code == 0, result.output
    assert "same" in result.output and "differs" not in result.output


def test_one_changed_row_makes_two_copies_differ(pg_server, db_url):
    """The digest: two databases from one template agree until one row changes."""
    other = f"{make_url(db_url).database}_copy"
    pg_server.create_database(other, template="movierec_template")
    try:
        with pg_server.connect(make_url(db_url).database) as a, pg_server.connect(other) as b:
            for conn in (a, b):
                conn.execute("INSERT INTO movies (id, title) VALUES (1, 'Heat')")
            every = data_tables(a)
            assert "movies_p0" in every and "ratings" not in every  # leaves, not parents
            # (their histories differ: another transaction id and time each)
            tables = [t for t in every if t.startswith("movies_")]
            assert compare("a", digests(a, tables), "b", digests(b, tables)).ok
            b.execute("UPDATE movies SET year = 1995 WHERE id = 1")
            diff = compare("a", digests(a, tables), "b", digests(b, tables))
    finally:
        pg_server.drop_database(other)
    assert not diff.ok
    assert len(diff.differences) == 1
