"""Moving rows from one table to another inside a transaction, and checking the copy: what a
partition move (:mod:`~movierec.db.partitions.placement`) and a re-partitioning
(:mod:`~movierec.db.partitions.repartition`) share.

The checksum is the sum of a 64-bit hash of each row's text, so both sides must render rows
as text the same way: :func:`lock_for_move` sets the same text settings postgres_fdw sets on
a shard's session.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg import sql

from movierec.db.partitions.catalog import TableShape

Progress = Callable[[int, int | None], None]
CHUNK_ROWS = 50_000
MAX_CHUNKS = 1000
LOCK_TIMEOUT_S = 30.0
_TEXT_SETTINGS = (
    "SET LOCAL TimeZone = 'UTC'",
    "SET LOCAL DateStyle = 'ISO'",
    "SET LOCAL IntervalStyle = 'postgres'",
    "SET LOCAL extra_float_digits = 3",
)


def no_progress(done: int, total: int | None) -> None:
    pass


@dataclass(frozen=True)
class Checksum:
    rows: int
    sum: int  # sum over rows of hashtextextended(row::text, 0)


def lock_for_move(conn: psycopg.Connection, table: str, mode: str, lock_timeout_s: float) -> None:
    """In the caller's transaction: the text settings checksums need, then ``table`` locked
    in ``mode`` (``SHARE ROW EXCLUSIVE``, ``ACCESS EXCLUSIVE``), giving up after
    ``lock_timeout_s`` (:class:`~movierec.db.errors.LockTimeout`)."""
    text_settings(conn)
    conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{lock_timeout_s}s")))
    conn.execute(sql.SQL("LOCK TABLE {} IN {} MODE").format(sql.Identifier(table), sql.SQL(mode)))


def text_settings(conn: psycopg.Connection) -> None:
    """In the caller's transaction: render rows as text the way a shard's postgres_fdw
    session does, so a row hashes alike on both sides."""
    for statement in _TEXT_SETTINGS:
        conn.execute(statement)


def row_hash(shape: TableShape) -> sql.Composed:
    """A 64-bit hash of a row's text (every column, generated ones included)."""
    row = sql.SQL("ROW({})").format(
        sql.SQL(", ").join(sql.Identifier(c.name) for c in shape.columns)
    )
    return sql.SQL("hashtextextended(({})::text, 0)").format(row)


def checksum(conn: psycopg.Connection, relation: str, shape: TableShape) -> Checksum:
    """Rows of ``relation`` and the sum of a 64-bit hash of each row's text (every column,
    generated ones included, so they are checked too). Order-independent."""
    rows, total = conn.execute(
        sql.SQL("SELECT count(*), coalesce(sum({}), 0) FROM {}").format(
            row_hash(shape), sql.Identifier(relation)
        )
    ).fetchone()
    return Checksum(int(rows), int(total))


def _chunk_bounds(conn: psycopg.Connection, relation: str, column: str, rows: int) -> list:
    """Values of ``column`` that cut ``relation`` into chunks of about CHUNK_ROWS rows."""
    chunks = min(MAX_CHUNKS, math.ceil(rows / CHUNK_ROWS))
    if chunks <= 1:
        return []
    fractions = [k / chunks for k in range(1, chunks)]
    bounds = conn.execute(
        sql.SQL("SELECT percentile_disc(%s::float8[]) WITHIN GROUP (ORDER BY {}) FROM {}").format(
            sql.Identifier(column), sql.Identifier(relation)
        ),
        (fractions,),
    ).fetchone()[0]
    return sorted(set(bounds or ()))


def copy_rows(
    conn: psycopg.Connection,
    source: str,
    target: str,
    shape: TableShape,
    total: int,
    progress: Progress,
    commit_each: bool = False,
) -> int:
    """INSERT ... SELECT every row of ``source`` into ``target``, a chunk of the partition
    column at a time (batched by postgres_fdw when ``target`` is foreign). With
    ``commit_each`` (outside a transaction), each chunk commits on its own: no snapshot and
    no transaction lasts longer than one chunk while an online move copies."""
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in shape.writable)
    column = sql.Identifier(shape.partition_column)
    bounds = _chunk_bounds(conn, source, shape.partition_column, total)
    ranges = list(zip([None, *bounds], [*bounds, None], strict=True))
    if commit_each:
        conn.commit()  # the bounds' read; each chunk below is a transaction of its own
    done = 0
    progress(0, total)
    for low, high in ranges:
        conditions, params = [], []
        if low is not None:
            conditions.append(sql.SQL("{} > %s").format(column))
            params.append(low)
        if high is not None:
            conditions.append(sql.SQL("{} <= %s").format(column))
            params.append(high)
        where = sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("true")
        statement = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} WHERE {}").format(
            sql.Identifier(target), columns, columns, sql.Identifier(source), where
        )
        if commit_each:
            with conn.transaction():
                done += conn.execute(statement, params).rowcount
        else:
            done += conn.execute(statement, params).rowcount
        progress(done, total)
    return done
