"""The app's database: one :class:`Database` per app, one primary session per request.

The request's session is a transaction opened through :meth:`Database.session`, so the db
layer keeps owning driver errors (it turns an unreachable server into
:class:`DatabaseUnavailable`). Views that write call :func:`commit` before answering: a commit
that fails must become an error page, not a lost write behind a success page. Whatever is still
open at teardown is rolled back.

The hottest reads (who the user is, their taste version) are single statements that need no
transaction: :func:`connection` gives them an autocommit connection to the primary, which
spares a page that only reads the BEGIN and ROLLBACK round trips of a session. Under READ
COMMITTED each statement sees its own snapshot either way.

Read-your-writes: pages that only read use :func:`read_session`, which goes to a replica when
one is configured. A replica replays the primary's changes a little later, so a user who just
rated a movie could see the page without their rating. After a write, views call
:func:`wrote`, and for the next ``READ_YOUR_WRITES_SECONDS`` (Flask config, default 10) that
user's read-only sessions use the primary. The deadline is kept in the Flask session (the
signed cookie), so it holds whichever worker or instance serves the next request; it is wall
clock time because it crosses processes. A time window rather than waiting for the replica to
replay the write's LSN: it needs no extra query per read (``pg_last_wal_replay_lsn()`` on the
replica) and no LSN bookkeeping per write; it is wrong only when a replica lags more than the
window, which the replica health checks report as a failure anyway.
"""

from __future__ import annotations

import logging
import time
from contextlib import AbstractContextManager
from typing import cast

from flask import Flask, current_app, g, has_request_context, session
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session

from movierec.db import Database
from movierec.errors import MovierecError

EXTENSION = "movierec.db"
READ_YOUR_WRITES_SECONDS = 10.0
# The Flask session key: until when (Unix time) this user's reads go to the primary.
PRIMARY_UNTIL = "primary_until"
log = logging.getLogger(__name__)


def init_app(app: Flask, database: Database) -> None:
    app.extensions[EXTENSION] = database
    app.teardown_appcontext(_end_session)


def database() -> Database:
    return cast(Database, current_app.extensions[EXTENSION])


def get_session() -> Session:
    """The request's primary session, opened on first use.

    Raises :class:`DatabaseUnavailable` when the server cannot be reached.
    """
    if "db_session" not in g:
        scope = database().session()
        session = scope.__enter__()
        try:
            # Connect now, inside the db layer's scope, so that a dead server is reported as
            # DatabaseUnavailable here rather than as a driver error from some later query.
            session.connection()
        except BaseException as exc:
            scope.__exit__(type(exc), exc, exc.__traceback__)
            raise
        g.db_scope, g.db_session = scope, session
    return cast(Session, g.db_session)


def connection() -> Connection:
    """The request's autocommit Core connection to the primary, opened on first use, for
    reads of one statement each that must see the latest writes. It does not see what the
    request's session has written and not yet committed.

    Raises :class:`DatabaseUnavailable` when the server cannot be reached.
    """
    if "db_connection" not in g:
        scope = database().autocommit()
        g.db_connection = scope.__enter__()
        g.db_connection_scope = scope
    return cast(Connection, g.db_connection)


def commit() -> None:
    """Commit the request's transaction now. Raises :class:`DatabaseUnavailable`."""
    scope = _pop_scope()
    if scope is not None:
        scope.__exit__(None, None, None)


def read_session() -> AbstractContextManager[Session]:
    """A separate read-only session (a replica when configured) for pages that only read;
    the primary for a user who wrote in the last few seconds (see the module docstring).

    Raises :class:`DatabaseUnavailable` when no server answers.
    """
    return database().session(readonly=not reads_own_writes())


def read_engine() -> Engine:
    """The engine :func:`read_session` would use now (the routing decision, for tests and
    diagnostics)."""
    return database().engine_for(readonly=not reads_own_writes())


def wrote() -> None:
    """The current user just committed a write: send their reads to the primary for the next
    ``READ_YOUR_WRITES_SECONDS``. Nothing to do (no cookie change) without a replica."""
    if not database().settings.replica_url:
        return
    window = float(current_app.config.get("READ_YOUR_WRITES_SECONDS", READ_YOUR_WRITES_SECONDS))
    session[PRIMARY_UNTIL] = time.time() + window


def reads_own_writes() -> bool:
    """Whether this request's reads must see the user's recent writes (go to the primary)."""
    if not has_request_context():
        return False
    until = session.get(PRIMARY_UNTIL)
    if until is None:
        return False
    if isinstance(until, int | float) and time.time() < until:
        return True
    session.pop(PRIMARY_UNTIL, None)  # past: the cookie need not carry it any more
    return False


def _pop_scope() -> AbstractContextManager[Session] | None:
    g.pop("db_session", None)
    return cast("AbstractContextManager[Session] | None", g.pop("db_scope", None))


class _RequestEnded(Exception):
    """Thrown into a scope still open at teardown: the db layer then rolls back, not commits."""


def _end_session(_exc: BaseException | None) -> None:
    g.pop("db_connection", None)
    reader = g.pop("db_connection_scope", None)
    if reader is not None:
        try:
            reader.__exit__(None, None, None)
        except MovierecError as exc:
            log.warning("closing the request's database connection: %s", exc)
    scope = _pop_scope()
    if scope is None:
        return
    try:
        scope.__exit__(_RequestEnded, _RequestEnded(), None)
    except MovierecError as exc:
        log.warning("rolling back the request's database session: %s", exc)
