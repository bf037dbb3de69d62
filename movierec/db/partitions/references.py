"""Whether every reference between partitioned tables still holds: the triggers that stand for
foreign keys (migration 0004) keep it so, but rows written behind their back may not."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from movierec.config import Settings
from movierec.db.partitions.catalog import primary


@dataclass(frozen=True)
class Orphans:
    """Rows of ``child`` whose ``column`` names no row of ``parent`` (should be 0)."""

    child: str
    column: str
    parent: str
    rows: int


def check_references(settings: Settings) -> list[Orphans]:
    """For each reference in ``table_references`` (what foreign keys were), how many child
    rows name a parent row that does not exist. Triggers keep this at 0; rows written
    behind their back (``session_replication_role = replica``, edits on a shard server)
    may not. Raises :class:`DatabaseUnavailable`."""
    with primary(settings) as conn:
        references = conn.execute(
            "SELECT child_table, child_column, parent_table, parent_column "
            "FROM table_references ORDER BY 1, 2"
        ).fetchall()
        result = []
        for child, column, parent, parent_column in references:
            rows = conn.execute(
                sql.SQL(
                    "SELECT count(*) FROM {} c WHERE NOT EXISTS "
                    "(SELECT 1 FROM {} p WHERE p.{} = c.{})"
                ).format(
                    sql.Identifier(child),
                    sql.Identifier(parent),
                    sql.Identifier(parent_column),
                    sql.Identifier(column),
                )
            ).fetchone()[0]
            result.append(Orphans(child, column, parent, rows))
    return result
