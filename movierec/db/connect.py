"""The one way admin code reaches PostgreSQL through the driver, and leaves with
:class:`~movierec.errors.MovierecError`\\ s only.

The site's requests use the pooled engines of :mod:`movierec.db.engines`. Admin work needs
the driver's own connection: to a server of the topology or a shard that is not in the
settings, for DDL in autocommit, for COPY. Before, each of them opened it and caught the
driver's errors its own way (six copies, whose messages and error kinds had drifted apart);
now :func:`connect` opens one for a role's connection string, and :func:`session_connection`
hands out the one under a :meth:`~movierec.db.engines.Database.session` for COPY in its
transaction. Both turn a failure of the database into the kind :mod:`movierec.db.errors`
names for its SQLSTATE, and a connection that cannot be made or is lost into
:class:`DatabaseUnavailable` naming the server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy.engine import make_url

from movierec.db.engines import Database
from movierec.db.errors import translate
from movierec.errors import DatabaseUnavailable, MovierecError, first_line

# What a failed statement becomes, from its first line (None: the driver's error, for the
# caller to handle or a bug).
Failed = Callable[[str], MovierecError] | None


@contextmanager
def connect(
    conninfo: str, what: str, *, autocommit: bool = True, failed: Failed = None
) -> Iterator[psycopg.Connection]:
    """A connection with the role, server and database of ``conninfo`` (a libpq string),
    closed when the block ends; without ``autocommit`` one transaction, committed when the
    block ends well and rolled back when it raises. ``what`` names the server in messages
    ("shard server shard1 (127.0.0.1:5433)").

    Raises :class:`DatabaseUnavailable` when the server cannot be reached or the connection
    is lost, the kind :func:`movierec.db.errors.translate` gives for a failure of the
    database (a lock wait, a timeout, a shard behind it, a missing privilege), and
    ``failed(reason)`` for a failed statement when given.
    """
    try:
        conn = psycopg.connect(conninfo, autocommit=autocommit)
    except psycopg.Error as exc:
        raise DatabaseUnavailable(f"{what} is unreachable: {first_line(exc)}") from exc
    # The driver's errors are caught outside the connection's own block: its commit, at the
    # end, can fail too.
    with _driver_errors(what, conninfo_to_dict(conninfo).get("user", ""), failed), conn:
        yield conn


@contextmanager
def session_connection(database: Database, readonly: bool = False) -> Iterator[psycopg.Connection]:
    """The driver's connection under a :meth:`Database.session` (a replica's for
    ``readonly`` when one answers), in the session's transaction: committed when the block
    ends well. For what SQLAlchemy cannot say, COPY. Raises as :func:`connect` does (a
    failed statement: the driver's error)."""
    # A replica is a copy of the primary: the same roles.
    role = make_url(database.settings.database_url).username or ""
    with _driver_errors("the database", role, None), database.session(readonly) as session:
        yield session.connection().connection.driver_connection


@contextmanager
def _driver_errors(what: str, role: str, failed: Failed) -> Iterator[None]:
    try:
        yield
    except psycopg.Error as exc:
        if isinstance(exc, psycopg.OperationalError) and not exc.sqlstate:
            # libpq's own failure (no SQLSTATE): the connection itself went.
            raise DatabaseUnavailable(f"lost {what}: {first_line(exc)}") from exc
        found = translate(exc, role)
        if found is None and failed is not None:
            found = failed(first_line(exc))
        if found is None:
            raise
        raise found from exc
