"""Failures of the database are MovierecErrors from any statement of an engine: a lock wait, a
statement timeout, a shard (postgres_fdw server) that does not answer, the server itself. Not
only inside Database.session: a web request's session is entered by hand."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from movierec.db import Database
from movierec.db.errors import LockTimeout, QueryTimeout, ShardUnavailable
from movierec.db.local_server import free_port
from movierec.errors import DatabaseUnavailable


def test_a_lock_wait_past_lock_timeout_is_a_lock_timeout(database):
    with database.session() as holder:
        holder.execute(text("LOCK TABLE movies IN ACCESS EXCLUSIVE MODE"))
        with database.primary.connect() as conn:
            conn.execute(text("SET lock_timeout = '100ms'"))
            with pytest.raises(LockTimeout, match="lock") as raised:
                conn.execute(text("SELECT count(*) FROM movies"))
    assert raised.value.retry_after > 0


def test_a_statement_timeout_outside_a_session_is_a_query_timeout(settings):
    db = Database(settings.replace(statement_timeout_ms=100))
    try:
        with db.primary.connect() as conn, pytest.raises(QueryTimeout, match="after 100 ms"):
            conn.execute(text("SELECT pg_sleep(2)"))
    finally:
        db.dispose()


def test_a_shard_that_does_not_answer_is_shard_unavailable(database):
    with database.session() as s:
        s.execute(text("CREATE EXTENSION IF NOT EXISTS postgres_fdw"))
        s.execute(
            text(
                "CREATE SERVER gone FOREIGN DATA WRAPPER postgres_fdw "
                f"OPTIONS (host '127.0.0.1', port '{free_port()}', dbname 'x')"
            )
        )
        s.execute(text("CREATE USER MAPPING FOR CURRENT_USER SERVER gone OPTIONS (user 'x')"))
        s.execute(text("CREATE FOREIGN TABLE far (a int) SERVER gone"))
    with pytest.raises(ShardUnavailable, match='"gone"') as raised:
        with database.session() as s:
            s.execute(text("SELECT * FROM far"))
    assert isinstance(raised.value, DatabaseUnavailable)


def test_a_server_that_is_down_is_database_unavailable(settings):
    db = Database(settings.replace(database_url=f"postgresql://u@127.0.0.1:{free_port()}/x"))
    try:
        with pytest.raises(DatabaseUnavailable, match="database unavailable"):
            db.check()
        with pytest.raises(DatabaseUnavailable), db.primary.connect():
            pass
    finally:
        db.dispose()
