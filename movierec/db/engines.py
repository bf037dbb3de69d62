"""Engines and sessions: the one way into the database.

Writes go to the primary. Reads that may be a moment stale (search, movie pages) may go to a
replica when one is configured; :meth:`Database.session` with ``readonly=True`` picks it and
falls back to the primary when the replica does not answer.

Connections are pooled per process by SQLAlchemy's QueuePool (psycopg connections), so no
separate psycopg_pool is needed. A connection that sat idle in the pool for more than
``PING_AFTER_IDLE`` seconds is pinged before use (a server restarted or failed over meanwhile
closed it); one in steady use is not: under load a ping per checkout was a round trip per
request. A connection that dies while in steady use fails its statement once, which
invalidates the whole pool, so the next checkout connects afresh. Every connection runs with
``statement_timeout`` (``settings.statement_timeout_ms``): a statement past it is cancelled
by the server and raises :class:`~movierec.db.errors.QueryTimeout`. Long jobs (bulk loads,
partition moves, rollbacks) lift it for their own transaction with ``SET LOCAL``.

Failures of the database, whichever statement meets them, raise the
:class:`~movierec.errors.DatabaseUnavailable` that :mod:`movierec.db.errors` names (an
engine's ``handle_error`` hook), never a driver error.
"""

from __future__ import annotations

import select
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import Any

from psycopg.conninfo import make_conninfo
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from movierec.config import Settings
from movierec.db.errors import translate
from movierec.db.primary_wait import PrimaryWait
from movierec.errors import DatabaseUnavailable

POOL_SIZE = 10  # connections per engine and process (make_engine)
PING_AFTER_IDLE = 1.0  # seconds in the pool after which a connection is pinged before use
# psycopg prepares a statement once a connection has run it five times. For such a statement
# PostgreSQL's default (plan_cache_mode=auto) keeps planning anew with each call's values
# whenever the one generic plan looks costlier, and over hash-partitioned tables it always
# does: its cost counts every partition, though only the user's is read at run time. The
# "for you" page's statement over the user's ratings, preferences, dismissals and searches
# then cost PostgreSQL 0.38 ms of CPU a call against 0.10 ms with its generic plan, and a
# title search 25 ms against 3.8 (bench/bench_serving.py's data); over cold pages, 0.85-0.90
# ms of PostgreSQL CPU per page against 0.57-0.60. Statements run once are planned as before.
GENERIC_PLANS = "plan_cache_mode=force_generic_plan"
_clock = time.monotonic  # the pool's idle times (tests move it)


def sqlalchemy_url(url: str) -> str:
    """Normalise ``postgresql://`` / ``postgres://`` URLs to the psycopg 3 driver."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def libpq_conninfo(
    url: str,
    application_name: str,
    connect_timeout: int = 5,
    host: str | None = None,
    port: int | None = None,
) -> str:
    """A libpq connection string (for ``psycopg.connect`` and the PostgreSQL tools) with the
    credentials and database of the SQLAlchemy ``url``; ``host`` and ``port`` replace the
    URL's (another server of the same topology). ``application_name`` shows who is connected
    in ``pg_stat_activity``. The URL's query parameters (``sslmode=...``) are kept."""
    parsed = make_url(url)
    params = {
        **{name: value for name, value in parsed.query.items() if isinstance(value, str)},
        "host": host or parsed.host or "127.0.0.1",
        "port": port or parsed.port or 5432,
        "user": parsed.username or "postgres",
        "dbname": parsed.database or "postgres",
        "connect_timeout": connect_timeout,
        "application_name": application_name,
    }
    if parsed.password:
        params["password"] = parsed.password
    return make_conninfo(**params)


def make_engine(
    url: str,
    statement_timeout_ms: int = 5000,
    pool_size: int = POOL_SIZE,
    primary_wait: float | None = None,
) -> Engine:
    """An engine whose connections time out statements after ``statement_timeout_ms``; at
    most ``pool_size`` of them, all kept open. With ``primary_wait`` (seconds), an engine for
    writes: it connects only to a server that takes writes (``target_session_attrs=
    read-write``: libpq checks the ``in_hot_standby`` the server reports as it connects, no
    query), and waits out a switch of the primary (:mod:`movierec.db.primary_wait`).

    No overflow: a recommender's requests are greenlets (see :mod:`movierec.serving`), as
    many at once as it has connections, and with an overflow above the pool's size a burst
    opens and closes connections, each a PostgreSQL process forked and ended (70 a second,
    measured with the site's pages served the same way and a pool of 5 + 5). A request
    beyond the pool waits for a connection instead.
    """
    connect_args: dict[str, Any] = {
        "options": f"-c statement_timeout={statement_timeout_ms} -c {GENERIC_PLANS}",
        "connect_timeout": 5,
    }
    if primary_wait is not None:
        connect_args["target_session_attrs"] = "read-write"
    engine = create_engine(
        sqlalchemy_url(url), pool_size=pool_size, max_overflow=0, connect_args=connect_args
    )
    if primary_wait:
        _wait_for_primary(engine, PrimaryWait(primary_wait))
    _ping_when_idle(engine, PING_AFTER_IDLE)
    role = make_url(sqlalchemy_url(url)).username or "postgres"
    _translate_errors(engine, role, statement_timeout_ms)
    return engine


def _translate_errors(engine: Engine, role: str, statement_timeout_ms: int) -> None:
    """Raise :mod:`movierec.db.errors`' error for a failure of the database, from any
    statement or connection attempt of ``engine`` (the pool still invalidates a broken
    connection first)."""

    @event.listens_for(engine, "handle_error")
    def _translated(context: ExceptionContext) -> None:
        if context.is_pre_ping:
            return  # the pool's own question: it handles the answer
        found = translate(context.original_exception, role, statement_timeout_ms)
        if found is not None:
            if isinstance(found, DatabaseUnavailable):
                found.disconnected = context.is_disconnect
            raise found


def _wait_for_primary(engine: Engine, wait: PrimaryWait) -> None:
    """Make ``engine``'s connection attempts through ``wait`` (the driver's errors of the
    last one still go to the ``handle_error`` hook)."""

    @event.listens_for(engine, "do_connect")
    def _connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        return wait.connect(lambda: dialect.connect(*cargs, **cparams))


def _ping_when_idle(engine: Engine, idle_seconds: float) -> None:
    """SQLAlchemy's ``pool_pre_ping``, only for connections idle over ``idle_seconds`` or
    with something to read.

    An idle connection has nothing to read unless the server sent it something on its own:
    most often that it is going away (a switchover's shutdown sends FATAL 57P01 and closes;
    the database switch cuts a demoted member's sessions, an EOF). A poll of the socket, a
    system call and no round trip, finds such a connection in steady use too, so a request
    that arrives after a switchover gets a fresh connection instead of a 503 from a dead one.
    """
    returned = "movierec_returned_at"

    @event.listens_for(engine, "connect")
    @event.listens_for(engine, "checkin")
    def _fresh(_dbapi_conn: Any, record: Any) -> None:
        record.info[returned] = _clock()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        at = record.info.get(returned)
        if at is not None and _clock() - at < idle_seconds and not _has_input(dbapi_conn):
            return
        try:
            alive = engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error:
            alive = False
        if not alive:
            # The pool drops this connection and checks out another (a fresh one if need be).
            raise DisconnectionError("connection closed while idle in the pool")


def _has_input(dbapi_conn: Any) -> bool:
    """Whether the server sent this idle connection something (or closed it)."""
    try:
        fd = dbapi_conn.pgconn.socket
    except Exception:  # noqa: BLE001 - closed: no socket, and the ping will say so
        return True
    return bool(select.select([fd], [], [], 0)[0])


class Database:
    """The configured primary (and optional replica), with session factories for each."""

    def __init__(self, settings: Settings):
        settings.require("database_url")
        self.settings = settings

    @cached_property
    def primary(self) -> Engine:
        settings = self.settings
        return make_engine(
            settings.database_url,
            settings.statement_timeout_ms,
            primary_wait=settings.database_connect_wait,
        )

    @cached_property
    def replica(self) -> Engine | None:
        url = self.settings.replica_url
        return make_engine(url, self.settings.statement_timeout_ms) if url else None

    @cached_property
    def _primary_sessions(self) -> sessionmaker[Session]:
        return sessionmaker(self.primary, expire_on_commit=False)

    @contextmanager
    def session(self, readonly: bool = False) -> Iterator[Session]:
        """A session that commits on success and rolls back on error.

        Raises :class:`DatabaseUnavailable` (of the kind :mod:`movierec.db.errors` names)
        when no server answers, a statement outlasts its timeout, a lock wait its own.
        """
        engine = self.engine_for(readonly)
        maker = self._primary_sessions if engine is self.primary else sessionmaker(engine)
        with maker() as session, session.begin():
            yield session

    @contextmanager
    def autocommit(self, readonly: bool = False) -> Iterator[Connection]:
        """A Core connection without a transaction: each statement commits (or, for a read,
        sees its own snapshot) on its own. For hot paths that read in one statement: it
        saves the BEGIN and COMMIT round trips of :meth:`session`. Raises as it does."""
        engine = self.engine_for(readonly)
        with engine.connect() as conn:
            yield conn.execution_options(isolation_level="AUTOCOMMIT")

    def engine_for(self, readonly: bool) -> Engine:
        """The engine :meth:`session` uses: the primary, or for ``readonly`` the replica when
        one is configured and answers (checked now), else the primary."""
        return self._read_engine() if readonly else self.primary

    def _read_engine(self) -> Engine:
        if self.replica is None:
            return self.primary
        try:
            with self.replica.connect() as conn:
                conn.execute(text("SELECT 1"))
            return self.replica
        except DatabaseUnavailable:
            return self.primary

    def check(self) -> None:
        """Raise :class:`DatabaseUnavailable` unless the primary answers a query."""
        with self.primary.connect() as conn:
            conn.execute(text("SELECT 1"))

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.dispose()

    def dispose(self) -> None:
        """Close every pooled connection (a script's last step; tests between databases)."""
        for engine in (self.__dict__.get("primary"), self.__dict__.get("replica")):
            if engine is not None:
                engine.dispose()
