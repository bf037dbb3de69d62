"""Bulk inserts into foreign partitions with postgres_fdw's batches.

postgres_fdw sends 1000 rows per round trip (``batch_size``) only into a foreign table with
no BEFORE/AFTER ROW INSERT trigger, and PostgreSQL 15 never batches COPY. The partitions of a
history-tracked table carry such triggers (cloned from the parent), even when
``session_replication_role = replica`` keeps them from firing, so a bulk load through the
parent reaches a shard one row per round trip. :func:`direct_foreign_inserts` gives the
loader, for each foreign partition, a trigger-less foreign table over the same shard table:
rows written there skip only triggers that replica mode skips anyway.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from psycopg import sql

from movierec.db.partitions.catalog import (
    Placement,
    foreign_table_ddl,
    read_partitions,
    table_shape,
)


@dataclass(frozen=True)
class DirectRoute:
    """Rows of ``table`` whose partition key hashes to ``remainder`` of ``modulus`` may be
    inserted into ``relation`` (a trigger-less foreign table) instead of the parent."""

    table: str
    relation: str
    modulus: int
    remainder: int

    def condition(self, column: sql.Composable) -> sql.Composed:
        """SQL true for the rows that belong here; ``column``: the partition key value."""
        return sql.SQL("satisfies_hash_partition({}::regclass, {}, {}, {})").format(
            sql.Literal(self.table), sql.Literal(self.modulus), sql.Literal(self.remainder), column
        )


@contextmanager
def direct_foreign_inserts(conn: psycopg.Connection, table: str) -> Iterator[list[DirectRoute]]:
    """Inside the caller's transaction, one :class:`DirectRoute` per foreign partition of
    ``table``, dropped when the block ends (nothing is left if the transaction rolls back).

    Yields no routes unless the session runs with ``session_replication_role = replica``
    (a bulk load that checked its references in bulk): otherwise triggers must fire. Nor
    for a partition an online move is copying (its change-log trigger must see every row):
    its rows go through the parent. The table is held ROW EXCLUSIVE until the transaction
    ends, so a move cannot start logging in the middle of the load.
    """
    replica = conn.execute("SELECT current_setting('session_replication_role') = 'replica'")
    if not replica.fetchone()[0]:
        yield []
        return
    conn.execute(sql.SQL("LOCK TABLE {} IN ROW EXCLUSIVE MODE").format(sql.Identifier(table)))
    foreign = [
        p
        for p in read_partitions(conn, table)
        if p.placement is Placement.SERVER and not _moving(conn, p.name)
    ]
    if not foreign:
        yield []
        return
    shape = table_shape(conn, table)
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    routes = []
    for partition in foreign:
        schema, _, remote = (partition.remote_table or "").partition(".")
        name = f"{partition.name}_load_{pid}"
        conn.execute(foreign_table_ddl(shape, name, partition.where, remote, schema))
        routes.append(DirectRoute(table, name, partition.modulus, partition.remainder))
    yield routes
    for route in routes:
        conn.execute(sql.SQL("DROP FOREIGN TABLE {}").format(sql.Identifier(route.relation)))


def _moving(conn: psycopg.Connection, partition: str) -> bool:
    """Whether an online move logs ``partition``'s writes (see
    :mod:`~movierec.db.partitions.online`)."""
    found = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass(%s) "
        "AND tgname = 'movierec_move_log')",
        (partition,),
    )
    return bool(found.fetchone()[0])
