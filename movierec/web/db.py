"""The app's database: one :class:`Database` per app, one primary session per request.

The request's session is a transaction opened through :meth:`Database.session`, so the db
layer keeps owning driver errors (it turns an unreachable server into
:class:`DatabaseUnavailable`). Views that write call :func:`commit` before answering: a commit
that fails must become an error page, not a lost write behind a success page. Whatever is still
open at teardown is rolled back.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from typing import cast

from flask import Flask, current_app, g
from sqlalchemy.orm import Session

from movierec.db import Database
from movierec.errors import MovierecError

EXTENSION = "movierec.db"
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


def commit() -> None:
    """Commit the request's transaction now. Raises :class:`DatabaseUnavailable`."""
    scope = _pop_scope()
    if scope is not None:
        scope.__exit__(None, None, None)


def read_session() -> AbstractContextManager[Session]:
    """A separate read-only session (a replica when configured) for pages that only read.

    Raises :class:`DatabaseUnavailable` when no server answers.
    """
    return database().session(readonly=True)


def _pop_scope() -> AbstractContextManager[Session] | None:
    g.pop("db_session", None)
    return cast("AbstractContextManager[Session] | None", g.pop("db_scope", None))


class _RequestEnded(Exception):
    """Thrown into a scope still open at teardown: the db layer then rolls back, not commits."""


def _end_session(_exc: BaseException | None) -> None:
    scope = _pop_scope()
    if scope is None:
        return
    try:
        scope.__exit__(_RequestEnded, _RequestEnded(), None)
    except MovierecError as exc:
        log.warning("rolling back the request's database session: %s", exc)
