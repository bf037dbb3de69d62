"""The driver's errors as :class:`MovierecError`s: one table from SQLSTATE to what a caller
can act on.

A failure *of the database* (it cannot be reached, a shard behind it cannot, a lock or a
statement outlasted its timeout, the server is shutting down or is a standby) is the kind of
:class:`DatabaseUnavailable` its SQLSTATE says, with ``retry_after``: how long a client should
wait before asking again (the site answers it as a 503 with a ``Retry-After`` header). A
failure *of the statement* (a constraint, a syntax error) is not translated: its caller
handles it, or it is a bug.

Every engine :mod:`movierec.db.engines` makes raises these from any statement (its
``handle_error`` hook), so code that runs statements outside :meth:`Database.session`, such
as a web request's session, cannot leak a driver error as a 500.
"""

from __future__ import annotations

import psycopg

from movierec.errors import ConfigError, DatabaseUnavailable, MovierecError, first_line

NO_PRIVILEGE = "42501"  # SQLSTATE insufficient_privilege
DISK_FULL = "53100"
CANNOT_CONNECT_NOW = "57P03"  # the server is starting up or shutting down
# What a failed connection attempt says (psycopg gives no SQLSTATE for a failure to connect)
# when it reached something that turned it away for now: a server starting up or shutting
# down (57P03: "the database system is shutting down", "... is starting up", "... is not yet
# accepting connections"); the database switch with no primary behind it, which accepts the
# TCP connection and closes it at once; with target_session_attrs=read-write, a member that
# is a standby (or has just been demoted), refused by libpq itself. The messages are English
# unless the server or the client runs in another language; then they are not recognised and
# not waited out (a 503 at once, as before).
_TURNED_AWAY = (
    "the database system is ",
    "server closed the connection unexpectedly",
    "is in hot standby mode",
    "session is read-only",
)


class QueryTimeout(DatabaseUnavailable):
    """A statement ran longer than the statement timeout and was cancelled (the server is
    overloaded, or the query needs an index). Its transaction was rolled back."""


class LockTimeout(DatabaseUnavailable):
    """A row or table was locked by another transaction for longer than ``lock_timeout``
    (a long job such as a rollback or a partition move holds it); asking again shortly
    usually works."""

    retry_after = 2


class Conflict(DatabaseUnavailable):
    """The transaction lost a deadlock or a serialization conflict and was rolled back;
    running it again usually works."""

    retry_after = 1


class ShardUnavailable(DatabaseUnavailable):
    """A foreign server (a postgres_fdw shard) holding rows the statement needs does not
    answer; rows on the other servers are unaffected."""

    retry_after = 10


class StorageFull(DatabaseUnavailable):
    """A disk the database writes to is full (SQLSTATE 53100): the statement's transaction
    was rolled back and nothing stored was harmed; writes there fail until space is freed."""

    retry_after = 60


class MissingPrivilege(ConfigError):
    """The role the app connects as lacks a privilege the statement needs (SQLSTATE 42501):
    a setup problem (a migration not run, a URL with the wrong role), not the user's."""


def translate(
    exc: BaseException, role: str = "", statement_timeout_ms: int | None = None
) -> MovierecError | None:
    """The :class:`MovierecError` for a driver error (psycopg's, or SQLAlchemy's wrapping
    one), or None when it is a failure of the statement rather than of the database.
    ``role`` (the login role) and ``statement_timeout_ms`` (the connection's) go into the
    messages."""
    orig = getattr(exc, "orig", None) or exc
    state = str(getattr(orig, "sqlstate", None) or "")
    line = first_line(orig)
    if state == NO_PRIVILEGE:
        return MissingPrivilege(f"the database role {role or '?'} may not do this: {line}")
    if state == "57014":
        after = f" after {statement_timeout_ms} ms" if statement_timeout_ms else ""
        return QueryTimeout(f"query cancelled{after} (statement_timeout): {line}")
    if state == "55P03":
        return LockTimeout(f"waited too long for a lock: {line}")
    if state in ("40001", "40P01"):
        return Conflict(f"transaction conflict, rolled back: {line}")
    # A connection error reported *by the server* over a working connection is its own
    # connection to a foreign server failing (libpq's own failures carry no SQLSTATE).
    if state.startswith("08") or state == "HV00N":
        return ShardUnavailable(f"a shard is unavailable: {line}")
    if state == DISK_FULL:
        return StorageFull(f"the database server's disk is full: {line}")
    if state == "25006":
        return DatabaseUnavailable(f"database unavailable (a standby, not the primary): {line}")
    if state[:2] in ("53", "57", "58") or (
        not state and isinstance(orig, psycopg.OperationalError)
    ):
        return DatabaseUnavailable(f"database unavailable: {line}")
    return None


def turned_away(exc: BaseException) -> bool:
    """Whether a failed *connection attempt* met a primary being switched (see the messages
    above, and a server starting or shutting down: 57P03), so that asking again in a moment
    can reach the new one. Not a refused connection, a timeout or an unknown host (nothing
    answers there: waiting would only delay the 503), nor a wrong password or database.

    Only meaningful for an attempt to connect: the same message from a statement means a
    connection lost while in use, whose work may or may not have been done.
    """
    orig = getattr(exc, "orig", None) or exc
    if not isinstance(orig, psycopg.OperationalError):
        return False
    state = str(getattr(orig, "sqlstate", None) or "")
    if state:
        return state == CANNOT_CONNECT_NOW
    message = str(orig)
    return any(sign in message for sign in _TURNED_AWAY)
