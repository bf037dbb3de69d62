"""Writing one row of a partitioned table: insert-or-update without ``ON CONFLICT``.

``INSERT ... ON CONFLICT`` needs a unique index on the table named in the statement, and a
partitioned parent with foreign partitions has none (postgres_fdw does not do ``ON CONFLICT
DO UPDATE`` either). :func:`upsert` updates first and inserts when nothing matched; a
concurrent insert of the same key loses on the partition's primary key (or the shard
table's) and becomes an update.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import and_, insert, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

UNIQUE_VIOLATION = "23505"


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
