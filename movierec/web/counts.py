"""How many rows a table holds, as a page shows it: exact while that is cheap, the planner's
estimate above ``EXACT_BELOW`` rows.

``count(*)`` reads every row: over 20M ratings (half of them on shard servers) one admin page
view cost seconds, and the site's statement timeout is 5 s. The estimate is the sum of
``pg_class.reltuples`` over the table's partitions (the table itself when it has none), as of
their last VACUUM or ANALYZE (autovacuum's on local partitions; a foreign partition's is its
last ANALYZE on the primary, which moving or loading it runs).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

EXACT_BELOW = 1_000_000


@dataclass(frozen=True)
class Count:
    rows: int
    estimated: bool


def table_rows(session: Session, table, exact_below: int | None = None) -> Count:
    """Rows of ``table`` (a mapped class or Table): counted when the estimate says fewer
    than ``exact_below`` (default ``EXACT_BELOW``). Raises :class:`DatabaseUnavailable`."""
    exact_below = EXACT_BELOW if exact_below is None else exact_below
    name = getattr(table, "__tablename__", None) or table.name
    estimate = session.scalar(
        text(
            "SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint FROM pg_class c, "
            "(SELECT CAST(:name AS regclass) AS oid) t "
            "WHERE c.oid IN (SELECT i.inhrelid FROM pg_inherits i WHERE i.inhparent = t.oid) "
            "   OR (c.oid = t.oid AND c.relkind <> 'p')"
        ),
        {"name": name},
    )
    if estimate >= exact_below:
        return Count(int(estimate), estimated=True)
    return Count(session.scalar(select(func.count()).select_from(table)), estimated=False)
