"""The one way admin code reaches PostgreSQL through the driver (movierec.db.connect): every
failure leaves as a MovierecError naming the server, with the kind the SQLSTATE table gives."""

from __future__ import annotations

import psycopg
import pytest

from movierec.db import bulk
from movierec.db.connect import connect, session_connection
from movierec.db.engines import libpq_conninfo
from movierec.db.errors import LockTimeout, MissingPrivilege
from movierec.db.local_server import free_port
from movierec.errors import BadInput, DatabaseUnavailable


@pytest.fixture
def owner(db_url):
    return libpq_conninfo(db_url, "movierec_tests")


def test_a_server_that_does_not_answer_is_named():
    dead = libpq_conninfo("postgresql://u@127.0.0.1/x", "t", port=free_port(), connect_timeout=2)
    with pytest.raises(DatabaseUnavailable, match=r"^shard server s1 is unreachable: \S"):
        with connect(dead, "shard server s1"):
            pass


def test_a_lost_connection_is_database_unavailable(owner, pg_server):
    with pytest.raises(DatabaseUnavailable) as raised, connect(owner, "the primary") as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        with pg_server.connect() as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        conn.execute("SELECT 1")
    assert isinstance(raised.value.__cause__, psycopg.Error)


def test_a_lock_wait_is_the_kind_the_sqlstate_table_names(owner):
    with connect(owner, "the primary", autocommit=False) as holder:
        holder.execute("LOCK TABLE movies IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(LockTimeout), connect(owner, "the primary") as waiter:
            waiter.execute("SET lock_timeout = '50ms'")
            waiter.execute("SELECT count(*) FROM movies")


def test_a_missing_privilege_names_the_role_of_the_connection(db_url, as_role):
    web = libpq_conninfo(as_role(db_url, "movierec_web"), "t")
    with pytest.raises(MissingPrivilege, match="movierec_web"), connect(web, "the primary") as c:
        c.execute("TRUNCATE ratings")


def test_a_failed_statement_is_the_callers_error_or_the_drivers(owner):
    with pytest.raises(BadInput, match=r"^no: relation \"nowhere\" does not exist$"):
        with connect(owner, "x", failed=lambda reason: BadInput(f"no: {reason}")) as conn:
            conn.execute("SELECT * FROM nowhere")
    with pytest.raises(psycopg.errors.UndefinedTable), connect(owner, "x") as conn:
        conn.execute("SELECT * FROM nowhere")


def test_a_transaction_commits_when_the_block_ends_well_and_only_then(owner):
    with pytest.raises(BadInput), connect(owner, "x", autocommit=False) as conn:
        conn.execute("INSERT INTO movies (id, title) VALUES (1, 'Gone')")
        raise BadInput("changed my mind")
    with connect(owner, "x", autocommit=False) as conn:
        conn.execute("INSERT INTO movies (id, title) VALUES (2, 'Kept')")
    with connect(owner, "x") as conn:
        titles = conn.execute("SELECT title FROM movies ORDER BY id").fetchall()
    assert titles == [("Kept",)]


def test_a_session_connection_is_the_sessions_transaction(database, pg_server):
    with session_connection(database) as conn:
        conn.execute("INSERT INTO movies (id, title) VALUES (3, 'Copied')")
        with database.session() as other:  # another connection: sees nothing uncommitted yet
            assert other.connection().exec_driver_sql("SELECT count(*) FROM movies").scalar() == 0
    with database.session() as other:
        assert other.connection().exec_driver_sql("SELECT count(*) FROM movies").scalar() == 1
    with pytest.raises(DatabaseUnavailable), session_connection(database) as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        with pg_server.connect() as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        conn.execute("SELECT 1")


def test_copy_out_streams_a_copy_and_maps_its_failures(database):
    with session_connection(database) as conn:
        conn.execute("INSERT INTO movies (id, title) VALUES (4, 'Out')")
    blocks = b"".join(bulk.copy_out(database, "COPY (SELECT id, title FROM movies) TO STDOUT"))
    assert blocks == b"4\tOut\n"
    with pytest.raises(psycopg.errors.UndefinedTable):
        list(bulk.copy_out(database, "COPY (SELECT * FROM nowhere) TO STDOUT"))
