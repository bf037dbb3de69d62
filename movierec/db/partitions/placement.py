"""Moving one partition to another tablespace or shard server (:func:`place`).

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

Rows that only change place are not change-history events: they are copied into a table
that becomes a partition only afterwards (ATTACH), so the parent's row triggers (history,
references) do not fire for them.

Re-partitioning a whole table is :mod:`~movierec.db.partitions.repartition`.
"""

from __future__ import annotations

import time
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
    primary,
    remote_table_ddl,
    table_shape,
)
from movierec.db.partitions.copying import (
    LOCK_TIMEOUT_S,
    Progress,
    checksum,
    copy_rows,
    lock_for_move,
    no_progress,
)
from movierec.db.partitions.servers import (
    check_tablespace,
    connect_server,
    get_server,
    probe_from_primary,
)
from movierec.errors import BadInput, MovierecError, first_line


@dataclass(frozen=True)
class PlaceReport:
    partition: str
    source: str  # location before, e.g. "local", "server shard1"
    target: str
    rows: int
    checksum: int
    seconds: float
    leftover: str | None = None  # a shard table we could not drop afterwards (why)


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
    progress = progress or no_progress
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
        lock_for_move(conn, part.table, "SHARE ROW EXCLUSIVE", lock_timeout_s)
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
