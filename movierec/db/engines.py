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
by the server and :meth:`Database.session` raises :class:`QueryTimeout`. Long jobs (bulk
loads, partition moves, rollbacks) lift it for their own transaction with ``SET LOCAL``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import Any

from psycopg.conninfo import make_conninfo
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from movierec.config import Settings
from movierec.errors import ConfigError, DatabaseUnavailable, MovierecError

QUERY_CANCELED = "57014"  # SQLSTATE of a statement cancelled by statement_timeout
# SQLSTATE class 08 sent by the server itself (a client-side failure has no SQLSTATE): its
# postgres_fdw could not reach, or lost, a shard server.
CONNECTION_EXCEPTION = "08"
NO_PRIVILEGE = "42501"  # SQLSTATE insufficient_privilege
# SQLSTATE read_only_sql_transaction: a write reached a server in recovery (a replica).
READ_ONLY_TRANSACTION = "25006"
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


class MissingPrivilege(ConfigError):
    """The role the app connects as lacks a privilege the statement needs (SQLSTATE 42501):
    a setup problem (a migration not run, a URL with the wrong role), not the user's."""


class ShardUnavailable(DatabaseUnavailable):
    """The database answered, but a server holding some of the rows the statement needs
    (a postgres_fdw shard) did not. What lives elsewhere can still be read and written."""


class QueryTimeout(DatabaseUnavailable):
    """A statement ran longer than the statement timeout and was cancelled (the server is
    overloaded, or the query needs an index). Its transaction was rolled back."""


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


def make_engine(url: str, statement_timeout_ms: int = 5000, pool_size: int = POOL_SIZE) -> Engine:
    """An engine whose connections time out statements after ``statement_timeout_ms``; at
    most ``pool_size`` of them, all kept open.

    No overflow: a recommender's requests are greenlets (see :mod:`movierec.serving`), as
    many at once as it has connections, and with an overflow above the pool's size a burst
    opens and closes connections, each a PostgreSQL process forked and ended (70 a second,
    measured with the site's pages served the same way and a pool of 5 + 5). A request
    beyond the pool waits for a connection instead.
    """
    engine = create_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=0,
        connect_args={
            "options": f"-c statement_timeout={statement_timeout_ms} -c {GENERIC_PLANS}",
            "connect_timeout": 5,
        },
    )
    _ping_when_idle(engine, PING_AFTER_IDLE)
    return engine


def _ping_when_idle(engine: Engine, idle_seconds: float) -> None:
    """SQLAlchemy's ``pool_pre_ping``, only for connections idle over ``idle_seconds``."""
    returned = "movierec_returned_at"

    @event.listens_for(engine, "connect")
    @event.listens_for(engine, "checkin")
    def _fresh(_dbapi_conn: Any, record: Any) -> None:
        record.info[returned] = _clock()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        at = record.info.get(returned)
        if at is not None and _clock() - at < idle_seconds:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error:
            alive = False
        if not alive:
            # The pool drops this connection and checks out another (a fresh one if need be).
            raise DisconnectionError("connection closed while idle in the pool")


class Database:
    """The configured primary (and optional replica), with session factories for each."""

    def __init__(self, settings: Settings):
        settings.require("database_url")
        self.settings = settings

    @cached_property
    def primary(self) -> Engine:
        return make_engine(self.settings.database_url, self.settings.statement_timeout_ms)

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

        Raises :class:`DatabaseUnavailable` when no server answers and :class:`QueryTimeout`
        (a kind of it) when a statement outlasts the statement timeout.
        """
        engine = self.engine_for(readonly)
        maker = self._primary_sessions if engine is self.primary else sessionmaker(engine)
        with self._translated_errors(), maker() as session, session.begin():
            yield session

    @contextmanager
    def autocommit(self, readonly: bool = False) -> Iterator[Connection]:
        """A Core connection without a transaction: each statement commits (or, for a read,
        sees its own snapshot) on its own. For hot paths that read in one statement: it
        saves the BEGIN and COMMIT round trips of :meth:`session`. Raises as it does."""
        engine = self.engine_for(readonly)
        with self._translated_errors(), engine.connect() as conn:
            yield conn.execution_options(isolation_level="AUTOCOMMIT")

    @contextmanager
    def _translated_errors(self) -> Iterator[None]:
        try:
            yield
        except DBAPIError as exc:
            translated = self.translate(exc)
            if translated is None:
                raise
            raise translated from exc

    def translate(self, exc: DBAPIError) -> MovierecError | None:
        """What a driver error means for movierec: :class:`QueryTimeout`,
        :class:`ShardUnavailable`, :class:`DatabaseUnavailable` (the server is gone, or is a
        replica now: a write reached a member a switchover just demoted, SQLSTATE 25006),
        :class:`MissingPrivilege`; None for an error that is a bug. The one rule for
        statements in :meth:`session` and for those a caller runs later on its connection
        (the site's request session)."""
        sqlstate = getattr(exc.orig, "sqlstate", None) or ""
        if isinstance(exc, OperationalError):
            if sqlstate == QUERY_CANCELED:
                return QueryTimeout(
                    f"query cancelled after {self.settings.statement_timeout_ms} ms "
                    f"(statement_timeout): {_first_line(exc)}"
                )
            if sqlstate.startswith(CONNECTION_EXCEPTION):
                return ShardUnavailable(f"a shard is unavailable: {_first_line(exc)}")
            return DatabaseUnavailable(f"database unavailable: {_first_line(exc)}")
        if sqlstate == READ_ONLY_TRANSACTION:
            return DatabaseUnavailable(f"the primary is changing: {_first_line(exc)}")
        if isinstance(exc, ProgrammingError) and sqlstate == NO_PRIVILEGE:
            return MissingPrivilege(
                f"the database role {self.role} may not do this: {_first_line(exc)}"
            )
        return None

    @cached_property
    def role(self) -> str:
        """The role the primary's connections log in as (in messages)."""
        return make_url(self.settings.database_url).username or "postgres"

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
        except OperationalError:
            return self.primary

    def check(self) -> None:
        """Raise :class:`DatabaseUnavailable` unless the primary answers a query."""
        try:
            with self.primary.connect() as conn:
                conn.execute(text("SELECT 1"))
        except OperationalError as exc:
            raise DatabaseUnavailable(f"database unavailable: {_first_line(exc)}") from exc

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.dispose()

    def dispose(self) -> None:
        """Close every pooled connection (a script's last step; tests between databases)."""
        for engine in (self.__dict__.get("primary"), self.__dict__.get("replica")):
            if engine is not None:
                engine.dispose()


def _first_line(exc: Exception) -> str:
    return str(getattr(exc, "orig", exc)).strip().splitlines()[0]
