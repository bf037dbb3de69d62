"""Writing rows of a partitioned table: insert-or-update without ``ON CONFLICT``, and delete.

``INSERT ... ON CONFLICT`` needs a unique index on the table named in the statement, and a
partitioned parent with foreign partitions has none (postgres_fdw does not do ``ON CONFLICT
DO UPDATE`` either). :func:`upsert` updates first and inserts when nothing matched; a
concurrent insert of the same key loses on the partition's primary key (or the shard
table's) and becomes an update.

Plans for the values (:func:`plan_for_values`)
    The app's connections run prepared statements with one generic plan each
    (:data:`movierec.db.engines.GENERIC_PLANS`: a third of the CPU of a read). A generic
    plan of ``UPDATE``/``DELETE ... WHERE user_id = $1`` prunes partitions only when it
    runs, and PostgreSQL 15 still opens every foreign partition it may write when the
    statement starts: postgres_fdw connects to every shard server. With one shard down,
    every user's rating failed (issue 24's drill). A statement planned for its values
    prunes while it is planned and touches the user's partition alone, so a shard down
    stops the writes of its own users only. Writes are few next to reads; planning one
    costs some 0.3 ms more.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import and_, delete, insert, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

UNIQUE_VIOLATION = "23505"
_PLAN_FOR_VALUES = text("SET LOCAL plan_cache_mode = force_custom_plan")


def plan_for_values(session: Session) -> None:
    """Plan the rest of the session's transaction for each statement's values (see the module
    docstring): call it before an ``UPDATE`` or ``DELETE`` of a partitioned table, or of a
    row whose deletion cascades into one (a user)."""
    session.execute(_PLAN_FOR_VALUES)


def delete_rows(session: Session, model: type, key: Mapping[str, Any]) -> int:
    """Delete the rows of ``model`` whose key columns equal ``key``; how many."""
    table = model.__table__
    plan_for_values(session)
    match = and_(*(table.c[name] == value for name, value in key.items()))
    return session.execute(delete(table).where(match)).rowcount


def upsert(
    session: Session, model: type, key: Mapping[str, Any], values: Mapping[str, Any]
) -> bool:
    """Set ``values`` on the row of ``model`` whose key columns equal ``key``, inserting it
    (``key`` and ``values``) when there is none. Returns whether it inserted.

    Runs in the session's transaction (the caller commits). Raises
    :class:`sqlalchemy.exc.IntegrityError` for a violated constraint other than the key
    (a check, a reference to a missing user or movie).
    """
    table = model.__table__
    plan_for_values(session)
    match = and_(*(table.c[name] == value for name, value in key.items()))
    if session.execute(update(table).where(match).values(**values)).rowcount:
        return False
    try:
        with session.begin_nested():
            session.execute(insert(table).values(**key, **values))
        return True
    except IntegrityError as exc:
        if getattr(exc.orig, "sqlstate", None) != UNIQUE_VIOLATION:
            raise
    # Someone inserted the same key since our update: theirs is the row to update now.
    session.execute(update(table).where(match).values(**values))
    return False
