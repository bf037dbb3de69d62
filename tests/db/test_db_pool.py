"""Pooled connections: pinged only after sitting idle, and a dead one costs at most one error.

Each test kills the pooled connection's server process (``pg_terminate_backend``), as a
restarted or failed-over server would.
"""

from __future__ import annotations

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


def test_a_connection_in_steady_use_is_not_pinged(db, db_url, monkeypatch):
    monkeypatch.setattr(engines, "_clock", Clock())
    _terminate(db_url, _pooled_backend(db))
    # Returned a moment ago: used without a ping, so its death shows once, as the db layer's
    # error; the pool is then dropped and the next checkout connects afresh.
    with pytest.raises(DatabaseUnavailable):
        _pooled_backend(db)
    assert _pooled_backend(db) > 0


def test_the_recommenders_context_read_survives_a_dropped_connection(db, db_url, monkeypatch):
    monkeypatch.setattr(engines, "_clock", Clock())
    reader = UserContextReader(db)
    assert reader.read(1, want_genres=True).from_database
    _terminate(db_url, _pooled_backend(db))
    # Read again on a fresh connection: not "answering from the model alone" for a while.
    assert reader.read(1, want_genres=True).from_database
