"""Re-partitioning a table: its rows into a new number of hash partitions (:func:`repartition`).

It happens in one transaction that holds the table ACCESS EXCLUSIVE (nothing reads or writes
it meanwhile): detach the old partitions, create the new ones, move the rows through the
parent, verify the count and checksum, drop the old ones and give the new ones the canonical
names, primary keys and truncate guard. It refuses while a partition lives on a shard: place it
back on the primary first. Rows that only change place are not change-history events: it runs
with ``session_replication_role = replica`` (history, reference and movie_sources triggers
skip).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg
from psycopg import sql

from movierec.config import Settings
from movierec.db.partitions.catalog import (
    DEFAULT_TABLESPACE,
    Partition,
    PartitionError,
    Placement,
    TableShape,
    add_truncate_guard,
    canonical_names,
    partition_name,
    primary,
    read_partitions,
    table_shape,
)
from movierec.db.partitions.copying import (
    LOCK_TIMEOUT_S,
    Progress,
    checksum,
    lock_for_move,
    no_progress,
)
from movierec.db.partitions.servers import check_tablespace
from movierec.errors import BadInput

MAX_PARTITIONS = 256


@dataclass(frozen=True)
class RepartitionReport:
    table: str
    before: int  # partitions
    after: int
    rows: int
    checksum: int
    seconds: float


def repartition(
    settings: Settings,
    table: str,
    count: int,
    tablespace: str | None = None,
    progress: Progress | None = None,
    lock_timeout_s: float = LOCK_TIMEOUT_S,
) -> RepartitionReport:
    """Rebuild ``table`` as ``count`` hash partitions (in ``tablespace``, else the default),
    moving its rows, in one transaction that locks the table (see the module docstring).

    Raises :class:`BadInput` (count out of range, a partition on a shard), :class:`NotFound`
    (unknown table or tablespace), :class:`DatabaseUnavailable` and
    :class:`PartitionError` (nothing was changed).
    """
    if not 2 <= count <= MAX_PARTITIONS:
        raise BadInput(f"the partition count must be from 2 to {MAX_PARTITIONS}, not {count}")
    started = time.perf_counter()
    with primary(settings) as conn:
        shape = table_shape(conn, table)
        if tablespace is not None:
            check_tablespace(conn, tablespace)
        conn.commit()
        with conn.transaction():
            lock_for_move(conn, table, "ACCESS EXCLUSIVE", lock_timeout_s)
            old = _local_partitions(conn, table)
            before = checksum(conn, table, shape)
            conn.execute("SET LOCAL session_replication_role = replica")
            space = "" if tablespace in (None, DEFAULT_TABLESPACE) else tablespace
            conn.execute("SELECT set_config('default_tablespace', %s, true)", (space,))
            _set_aside(conn, table, old)
            _create_new(conn, table, count)
            _move_rows(conn, table, old, shape, before.rows, progress or no_progress)
            _name_new(conn, table, count, shape)
            after = checksum(conn, table, shape)
            if after != before:
                raise PartitionError(
                    f"{table} does not match itself after re-partitioning ({after.rows} rows, "
                    f"expected {before.rows}); nothing was changed"
                )
            conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
    return RepartitionReport(
        table, len(old), count, before.rows, before.sum, time.perf_counter() - started
    )


def _local_partitions(conn: psycopg.Connection, table: str) -> list[Partition]:
    """``table``'s partitions; :class:`BadInput` when one lives on a shard server."""
    old = read_partitions(conn, table)
    remote = [p.name for p in old if p.placement is Placement.SERVER]
    if remote:
        raise BadInput(
            f"{', '.join(remote)} live on shard servers: place them back first "
            f"(place {remote[0]} --tablespace {DEFAULT_TABLESPACE}); nothing was changed"
        )
    return old


def _old_name(part: Partition) -> str:
    return f"{part.name}_old"


def _new_name(table: str, remainder: int) -> str:
    return f"{table}_new{remainder}"


def _set_aside(conn: psycopg.Connection, table: str, old: list[Partition]) -> None:
    """Detach the old partitions and rename them out of the way."""
    for part in old:
        conn.execute(
            sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(
                sql.Identifier(table), sql.Identifier(part.name)
            )
        )
        conn.execute(
            sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                sql.Identifier(part.name), sql.Identifier(_old_name(part))
            )
        )


def _create_new(conn: psycopg.Connection, table: str, count: int) -> None:
    """``count`` empty hash partitions of ``table``, under temporary names."""
    for remainder in range(count):
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} PARTITION OF {} FOR VALUES WITH (MODULUS {}, REMAINDER {})"
            ).format(
                sql.Identifier(_new_name(table, remainder)),
                sql.Identifier(table),
                sql.Literal(count),
                sql.Literal(remainder),
            )
        )


def _move_rows(
    conn: psycopg.Connection,
    table: str,
    old: list[Partition],
    shape: TableShape,
    total: int,
    progress: Progress,
) -> None:
    """Every row of the old partitions into ``table`` (the parent routes each to its new
    partition), then the old partitions dropped."""
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in shape.writable)
    done = 0
    progress(0, total)
    for part in old:
        cursor = conn.execute(
            sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(
                sql.Identifier(table), columns, columns, sql.Identifier(_old_name(part))
            )
        )
        done += cursor.rowcount
        progress(done, total)
    for part in old:
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(_old_name(part))))


def _name_new(conn: psycopg.Connection, table: str, count: int, shape: TableShape) -> None:
    """The new partitions under their canonical names, with their primary keys and the
    truncate guard."""
    key = sql.SQL(", ").join(sql.Identifier(c) for c in shape.key)
    for remainder in range(count):
        name = partition_name(table, remainder)
        conn.execute(
            sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                sql.Identifier(_new_name(table, remainder)), sql.Identifier(name)
            )
        )
        conn.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY ({})").format(
                sql.Identifier(name), sql.Identifier(f"{name}_pkey"), key
            )
        )
        add_truncate_guard(conn, shape, name)
    canonical_names(conn, table)
