"""Pooled connections: pinged only after sitting idle or when the server sent them something,
and a dead one costs at most one error (of a request that was using it).

Each test kills the pooled connection's server process (``pg_terminate_backend``), as a
restarted or failed-over server would.
"""

from __future__ import annotations

import time

import psycopg
import pytest
from sqlalchemy import text
from support.clock import Clock

from movierec.ai.user_context import UserContextReader
from movierec.db import Database, engines
from movierec.errors import DatabaseUnavailable

BACKEND = text("SELECT pg_backend_pid()")


def _pooled_backend(db: Database) -> int:
    with db.autocommit() as conn:
        return conn.execute(BACKEND).scalar_one()


def _terminate(db_url: str, pid: int) -> None:
    conninfo = engines.libpq_conninfo(db_url, "test")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        assert conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)


@pytest.fixture
def db(settings):
    with Database(settings) as database:
        yield database


def test_a_connection_idle_past_the_limit_is_pinged_and_replaced(db, db_url, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(engines, "_clock", clock)
    dead = _pooled_backend(db)
    _terminate(db_url, dead)
    clock.now += engines.PING_AFTER_IDLE + 0.1
    # No error: the ping found it closed and the pool connected afresh.
    assert _pooled_backend(db) != dead


def test_a_live_connection_in_steady_use_is_not_pinged(db, monkeypatch):
    monkeypatch.setattr(engines, "_clock", Clock())
    pings = []
    real_ping = db.primary.dialect.do_ping
    monkeypatch.setattr(db.primary.dialect, "do_ping", lambda c: pings.append(c) or real_ping(c))
    first = _pooled_backend(db)
    assert _pooled_backend(db) == first
    assert pings == []


def test_a_connection_the_server_ended_in_steady_use_is_replaced_without_an_error(
    db, db_url, monkeypatch
):
    """The server tells a connection it ends (as a switchover's shutdown does, or the database
    switch cutting a demoted member's sessions): its socket has something to read, so it is
    pinged and replaced though it was returned a moment ago, and the request that checks it
    out next does not fail."""
    monkeypatch.setattr(engines, "_clock", Clock())
    dead = _pooled_backend(db)
    _terminate(db_url, dead)
    time.sleep(0.2)  # the FATAL message and the close reach the client's socket
    assert _pooled_backend(db) not in (dead, 0)


def test_a_connection_that_dies_while_in_use_fails_once(db, db_url, monkeypatch):
    monkeypatch.setattr(engines, "_clock", Clock())
    with db.autocommit() as conn:
        pid = conn.execute(BACKEND).scalar_one()
        _terminate(db_url, pid)
        # Its death shows once, as the db layer's error: what ran on it may or may not have
        # been done. The pool is then dropped and the next checkout connects afresh.
        with pytest.raises(DatabaseUnavailable):
            conn.execute(BACKEND)
    assert _pooled_backend(db) > 0


def test_the_recommenders_context_read_survives_a_dropped_connection(db, db_url, monkeypatch):
    monkeypatch.setattr(engines, "_clock", Clock())
    reader = UserContextReader(db)
    assert reader.read(1, want_genres=True).from_database
    _terminate(db_url, _pooled_backend(db))
    # Read again on a fresh connection: not "answering from the model alone" for a while.
    assert reader.read(1, want_genres=True).from_database
