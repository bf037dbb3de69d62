"""Listing partitions, moving one (``place``), re-partitioning a table, finding orphans.

Moving a partition (:func:`place`) happens in one transaction on the primary:

1. (shard target) the shard's table is created first, over a direct connection; it is
   dropped again if anything below fails;
2. the parent table is locked SHARE ROW EXCLUSIVE: reads go on, writes to the table wait
   until the move commits, so no write can slip in between copy and swap (writers lock the
   parent before a partition, as we do, so they cannot deadlock with the move; a transaction
   that read the table before and writes to it during the move can, and then the move
   fails, changing nothing, and may simply be run again). Lock waits give up after
   ``lock_timeout_s``;
3. rows are copied into the new table (a postgres_fdw foreign table, batch_size 1000, or a
   table in the target tablespace) in chunks of the partition column, with progress;
4. count and checksum (the sum of a 64-bit hash of each row's text) of the old and the new
   table must agree, else everything is rolled back;
5. DETACH the old partition, ATTACH the new one with the same bounds, drop the old one and
   give the new one its name;
6. after the commit, the rows' old home on a shard (if they came from one) is dropped.

Because the transaction commits on the primary and, through postgres_fdw, on the shard, a
crash between the two commits can leave a copy on the shard that no partition points at; the
next ``place`` to that shard refuses to overwrite it and names it.

Re-partitioning (:func:`repartition`) rebuilds a table's partitions in one transaction that
holds the table ACCESS EXCLUSIVE (nothing reads or writes it meanwhile): detach the old
partitions, create the new ones, move the rows through the parent, verify, drop the old
ones. It refuses while a partition lives on a shard: place it back on the primary first.
Rows that only change place are not change-history events: both run with
``session_replication_role = replica`` (history, reference and movie_sources triggers skip).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace

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
    find_partition,
    foreign_table_ddl,
    local_table_ddl,
    partition_name,
    primary,
    read_partitions,
    remote_table_ddl,
    table_shape,
)
from movierec.db.partitions.servers import (
    check_tablespace,
    connect_server,
    get_server,
    probe_from_primary,
)
from movierec.errors import BadInput, MovierecError, first_line

Progress = Callable[[int, int | None], None]
CHUNK_ROWS = 50_000
MAX_CHUNKS = 1000
MAX_PARTITIONS = 256
LOCK_TIMEOUT_S = 30.0
# Both sides of a checksum render rows as text the same way (postgres_fdw sets these on the
# shard's session too).
_TEXT_SETTINGS = (
    "SET LOCAL TimeZone = 'UTC'",
    "SET LOCAL DateStyle = 'ISO'",
    "SET LOCAL IntervalStyle = 'postgres'",
    "SET LOCAL extra_float_digits = 3",
)


def _no_progress(done: int, total: int | None) -> None:
    pass


@dataclass(frozen=True)
class Checksum:
    rows: int
    sum: int  # sum over rows of hashtextextended(row::text, 0)


@dataclass(frozen=True)
class PlaceReport:
    partition: str
    source: str  # location before, e.g. "local", "server shard1"
    target: str
    rows: int
    checksum: int
    seconds: float
    leftover: str | None = None  # a shard table we could not drop afterwards (why)


@dataclass(frozen=True)
class RepartitionReport:
    table: str
    before: int  # partitions
    after: int
    rows: int
    checksum: int
    seconds: float


@dataclass(frozen=True)
class Orphans:
    """Rows of ``child`` whose ``column`` names no row of ``parent`` (should be 0)."""

    child: str
    column: str
    parent: str
    rows: int


# -- listing --------------------------------------------------------------------------------


def list_partitions(
    settings: Settings, table: str | None = None, exact: bool = False
) -> list[Partition]:
    """Every partition (of ``table``), where it lives, its rows and bytes.

    Rows are estimates (the planner's) unless ``exact`` (count(*), a full scan of each).
    Figures of foreign partitions come from their shard server (one connection each); an
    unreachable shard leaves them ``None`` with the reason in ``error``. Raises
    :class:`NotFound` for an unknown table, :class:`DatabaseUnavailable` when the primary
    does not answer.
    """
    with primary(settings) as conn, ExitStack() as shards:
        remotes: dict[str, psycopg.Connection | str] = {}
        result = []
        for partition in read_partitions(conn, table):
            if partition.placement is Placement.SERVER:
                if partition.where not in remotes:
                    remotes[partition.where] = _open_shard(conn, shards, partition.where)
                partition = _remote_figures(remotes[partition.where], partition, exact)
            elif exact:
                rows = conn.execute(
                    sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(partition.name))
                ).fetchone()[0]
                partition = replace(partition, rows=rows, exact=True)
            result.append(partition)
    return result


def _open_shard(conn: psycopg.Connection, stack: ExitStack, server: str):
    """A connection to ``server`` kept open by ``stack``, or why there is none."""
    try:
        return stack.enter_context(connect_server(conn, server))
    except MovierecError as exc:
        return str(exc)


def _remote_figures(
    remote: psycopg.Connection | str, partition: Partition, exact: bool
) -> Partition:
    if isinstance(remote, str):
        return replace(partition, error=remote)
    schema, _, name = (partition.remote_table or "").partition(".")
    try:
        row = remote.execute(
            "SELECT c.reltuples::bigint, pg_total_relation_size(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s",
            (schema, name),
        ).fetchone()
        if row is None:
            return replace(
                partition, error=f"{partition.remote_table} is missing on {partition.where}"
            )
        rows, size = row
        if exact:
            rows = remote.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, name))
            ).fetchone()[0]
    except psycopg.Error as exc:
        return replace(partition, error=f"shard server {partition.where}: {first_line(exc)}")
    return replace(partition, rows=rows if rows >= 0 else None, exact=exact, bytes=size)


# -- checksums and copies -------------------------------------------------------------------


def checksum(conn: psycopg.Connection, relation: str, shape: TableShape) -> Checksum:
    """Rows of ``relation`` and the sum of a 64-bit hash of each row's text (every column,
    generated ones included, so they are checked too). Order-independent."""
    row = sql.SQL("ROW({})").format(
        sql.SQL(", ").join(sql.Identifier(c.name) for c in shape.columns)
    )
    rows, total = conn.execute(
        sql.SQL(
            "SELECT count(*), coalesce(sum(hashtextextended(({})::text, 0)), 0) FROM {}"
        ).format(row, sql.Identifier(relation))
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
) -> int:
    """INSERT ... SELECT every row of ``source`` into ``target``, a chunk of the partition
    column at a time (batched by postgres_fdw when ``target`` is foreign)."""
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in shape.writable)
    column = sql.Identifier(shape.partition_column)
    bounds = _chunk_bounds(conn, source, shape.partition_column, total)
    ranges = list(zip([None, *bounds], [*bounds, None], strict=True))
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
        cursor = conn.execute(
            sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} WHERE {}").format(
                sql.Identifier(target), columns, columns, sql.Identifier(source), where
            ),
            params,
        )
        done += cursor.rowcount
        progress(done, total)
    return done


# -- place ----------------------------------------------------------------------------------


def place(
    settings: Settings,
    partition: str,
    server: str | None = None,
    tablespace: str | None = None,
    progress: Progress | None = None,
    lock_timeout_s: float = LOCK_TIMEOUT_S,
) -> PlaceReport:
    """Move ``partition``'s rows to shard ``server`` or into ``tablespace`` (``pg_default``:
    back to the primary's default), in one transaction (see the module docstring).

    Raises :class:`BadInput` (neither or both targets, already there), :class:`NotFound`
    (unknown partition, server or tablespace), :class:`DatabaseUnavailable` (the primary
    or the target server does not answer: nothing is started) and :class:`PartitionError`
    (the move failed; nothing was changed).
    """
    if (server is None) == (tablespace is None):
        raise BadInput("place the partition on a --server or in a --tablespace (one of them)")
    progress = progress or _no_progress
    started = time.perf_counter()
    with primary(settings) as conn:
        part = find_partition(conn, partition)
        shape = table_shape(conn, part.table)
        target = f"server {server}" if server else _tablespace_label(tablespace)
        if _same_place(part, server, tablespace):
            raise BadInput(f"{partition} is already on {target}")
        if server is not None:
            get_server(conn, server)
            with connect_server(conn, server) as remote:
                remote.execute("SELECT 1")
            probe_from_primary(conn, server)
        else:
            check_tablespace(conn, tablespace)
        created_remote = None
        try:
            if server is not None:
                created_remote = _create_remote_table(conn, server, shape, part)
            conn.commit()  # only reads so far: the move below is a transaction of its own
            report = _move(conn, part, shape, server, tablespace, progress, lock_timeout_s)
        except BaseException:
            if created_remote:
                _rollback_quietly(conn)
                _drop_remote_table(conn, server, created_remote)
            raise
        if server is not None:
            _analyze_remote(conn, server, part.name)
        leftover = None
        if part.placement is Placement.SERVER:
            leftover = _drop_remote_table(conn, part.where, part.remote_table)
    return replace(report, seconds=time.perf_counter() - started, leftover=leftover)


def _rollback_quietly(conn: psycopg.Connection) -> None:
    try:
        conn.rollback()
    except psycopg.Error:
        pass  # the connection is gone; its transaction with it


def _tablespace_label(name: str) -> str:
    return "the default tablespace" if name == DEFAULT_TABLESPACE else f"tablespace {name}"


def _same_place(part: Partition, server: str | None, tablespace: str | None) -> bool:
    if server is not None:
        return part.placement is Placement.SERVER and part.where == server
    return part.placement is not Placement.SERVER and part.where == tablespace


def _create_remote_table(
    conn: psycopg.Connection, server: str, shape: TableShape, part: Partition
) -> str:
    """Create the shard's table for ``part`` (named like it) and return ``public.<name>``;
    refuses if a table of that name is there already."""
    with connect_server(conn, server) as remote:
        exists = remote.execute("SELECT to_regclass(%s) IS NOT NULL", (f"public.{part.name}",))
        if exists.fetchone()[0]:
            raise PartitionError(
                f"shard server {server} already has a table public.{part.name} (left from an "
                "earlier move?); drop it there first; nothing was changed"
            )
        try:
            with remote.transaction():
                for extension in shape.extensions:
                    remote.execute(
                        sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(
                            sql.Identifier(extension)
                        )
                    )
                for statement in remote_table_ddl(shape, part.name, part.remainder):
                    remote.execute(statement)
        except psycopg.Error as exc:
            raise PartitionError(
                f"cannot create {part.name} on shard server {server}: {first_line(exc)}; "
                "nothing was changed"
            ) from exc
    return f"public.{part.name}"


def _analyze_remote(conn: psycopg.Connection, server: str, name: str) -> None:
    """Statistics for the shard's planner (queries pushed down run there); best effort."""
    try:
        with connect_server(conn, server) as remote:
            remote.execute(sql.SQL("ANALYZE {}").format(sql.Identifier("public", name)))
    except (MovierecError, psycopg.Error):
        pass  # autovacuum will do it


def _drop_remote_table(conn: psycopg.Connection, server: str, remote_table: str) -> str | None:
    """Drop a shard table no partition points at any more; returns why not, if it failed."""
    schema, _, name = remote_table.partition(".")
    try:
        with connect_server(conn, server) as remote:
            remote.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(schema, name)))
    except (MovierecError, psycopg.Error) as exc:
        reason = str(exc) if isinstance(exc, MovierecError) else first_line(exc)
        return f"{remote_table} on shard server {server} could not be dropped: {reason}"
    return None


def _move(
    conn: psycopg.Connection,
    part: Partition,
    shape: TableShape,
    server: str | None,
    tablespace: str | None,
    progress: Progress,
    lock_timeout_s: float,
) -> PlaceReport:
    new = f"{part.name}_new"
    with conn.transaction():
        for statement in _TEXT_SETTINGS:
            conn.execute(statement)
        conn.execute(
            sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{lock_timeout_s}s"))
        )
        conn.execute(
            sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(sql.Identifier(part.table))
        )
        if find_partition(conn, part.name) != part:
            raise PartitionError(f"{part.name} changed while we looked; nothing was changed")
        before = checksum(conn, part.name, shape)
        if server is not None:
            conn.execute(foreign_table_ddl(shape, new, server, part.name))
        else:
            space = "" if tablespace == DEFAULT_TABLESPACE else tablespace
            conn.execute("SELECT set_config('default_tablespace', %s, true)", (space,))
            for statement in local_table_ddl(shape, new):
                conn.execute(statement)
        copy_rows(conn, part.name, new, shape, before.rows, progress)
        after = checksum(conn, new, shape)
        if after != before:
            raise PartitionError(
                f"the copy of {part.name} does not match it ({after.rows} rows, checksum "
                f"{after.sum}; expected {before.rows}, {before.sum}); nothing was changed"
            )
        _swap(conn, part, shape, new)
        if server is None:
            conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(part.name)))
    target = f"server {server}" if server else _tablespace_label(tablespace)
    return PlaceReport(part.name, part.location, target, before.rows, before.sum, 0.0)


def _swap(conn: psycopg.Connection, part: Partition, shape: TableShape, new: str) -> None:
    """Put ``new`` in ``part``'s place under the parent (the caller's transaction)."""
    parent, old = sql.Identifier(part.table), sql.Identifier(part.name)
    conn.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(parent, old))
    conn.execute(
        sql.SQL(
            "ALTER TABLE {} ATTACH PARTITION {} FOR VALUES WITH (MODULUS {}, REMAINDER {})"
        ).format(
            parent, sql.Identifier(new), sql.Literal(part.modulus), sql.Literal(part.remainder)
        )
    )
    kind = "FOREIGN TABLE" if part.placement is Placement.SERVER else "TABLE"
    conn.execute(sql.SQL("DROP {} {}").format(sql.SQL(kind), old))
    is_foreign = conn.execute(
        "SELECT relkind = 'f' FROM pg_class WHERE oid = to_regclass(%s)", (new,)
    ).fetchone()[0]
    kind = "FOREIGN TABLE" if is_foreign else "TABLE"
    conn.execute(
        sql.SQL("ALTER {} {} RENAME TO {}").format(sql.SQL(kind), sql.Identifier(new), old)
    )
    if not is_foreign:
        canonical_names(conn, part.table)
        add_truncate_guard(conn, shape, part.name)


# -- re-partition ---------------------------------------------------------------------------


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
    progress = progress or _no_progress
    started = time.perf_counter()
    with primary(settings) as conn:
        shape = table_shape(conn, table)
        if tablespace is not None:
            check_tablespace(conn, tablespace)
        conn.commit()
        with conn.transaction():
            for statement in _TEXT_SETTINGS:
                conn.execute(statement)
            conn.execute(
                sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{lock_timeout_s}s"))
            )
            conn.execute(
                sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(table))
            )
            old = read_partitions(conn, table)
            remote = [p.name for p in old if p.placement is Placement.SERVER]
            if remote:
                raise BadInput(
                    f"{', '.join(remote)} live on shard servers: place them back first "
                    f"(place {remote[0]} --tablespace {DEFAULT_TABLESPACE}); nothing was changed"
                )
            before = checksum(conn, table, shape)
            conn.execute("SET LOCAL session_replication_role = replica")
            space = "" if tablespace in (None, DEFAULT_TABLESPACE) else tablespace
            conn.execute("SELECT set_config('default_tablespace', %s, true)", (space,))
            parent = sql.Identifier(table)
            for part in old:
                conn.execute(
                    sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(
                        parent, sql.Identifier(part.name)
                    )
                )
                conn.execute(
                    sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                        sql.Identifier(part.name), sql.Identifier(f"{part.name}_old")
                    )
                )
            for remainder in range(count):
                conn.execute(
                    sql.SQL(
                        "CREATE TABLE {} PARTITION OF {} FOR VALUES WITH (MODULUS {}, REMAINDER {})"
                    ).format(
                        sql.Identifier(f"{table}_new{remainder}"),
                        parent,
                        sql.Literal(count),
                        sql.Literal(remainder),
                    )
                )
            columns = sql.SQL(", ").join(sql.Identifier(c) for c in shape.writable)
            done = 0
            progress(0, before.rows)
            for part in old:
                cursor = conn.execute(
                    sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(
                        parent, columns, columns, sql.Identifier(f"{part.name}_old")
                    )
                )
                done += cursor.rowcount
                progress(done, before.rows)
            for part in old:
                conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(f"{part.name}_old")))
            key = sql.SQL(", ").join(sql.Identifier(c) for c in shape.key)
            for remainder in range(count):
                temporary, name = f"{table}_new{remainder}", partition_name(table, remainder)
                conn.execute(
                    sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                        sql.Identifier(temporary), sql.Identifier(name)
                    )
                )
                conn.execute(
                    sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY ({})").format(
                        sql.Identifier(name), sql.Identifier(f"{name}_pkey"), key
                    )
                )
                add_truncate_guard(conn, shape, name)
            canonical_names(conn, table)
            after = checksum(conn, table, shape)
            if after != before:
                raise PartitionError(
                    f"{table} does not match itself after re-partitioning ({after.rows} rows, "
                    f"expected {before.rows}); nothing was changed"
                )
            conn.execute(sql.SQL("ANALYZE {}").format(parent))
    return RepartitionReport(
        table, len(old), count, before.rows, before.sum, time.perf_counter() - started
    )


# -- references -----------------------------------------------------------------------------


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
