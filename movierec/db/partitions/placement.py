"""Moving one partition to another tablespace or shard server (:func:`place`).

Online (the default), writes go on while the rows move; they wait twice, briefly:

1. (shard target) the shard's table is created first, over a direct connection; it is
   dropped again if anything below fails;
2. the copy is created (``<name>_new``: a table in the target tablespace, carrying a CHECK
   of the partition's hash bound so that ATTACH need not scan it, or a postgres_fdw foreign
   table); then a short transaction holds the parent against writes while it adds the change
   log (:mod:`~movierec.db.partitions.online`): a trigger that logs the key of each row
   written from then on. Like the final lock below, it waits at most FINAL_LOCK_WAIT_S for
   its locks (an autovacuum or a long transaction holding the partition would otherwise
   hold every writer queued behind it), and tries again, for up to ``lock_timeout_s``;
3. rows are copied in chunks of the partition column, each chunk its own transaction;
4. the logged changes are replayed onto the copy until it is at most a few behind (the move
   gives up, changing nothing, if writes outpace it for ``catch_up_s``);
5. the copy is checked row by row against the partition in one snapshot while writes go on,
   then only the keys written since (again, until they are few), and once more under the
   final lock;
6. the final transaction locks the parent ACCESS EXCLUSIVE (reads and writes wait, for
   tens of milliseconds), replays the last changes, checks every key the earlier checks
   left open, DETACHes the old partition, ATTACHes the copy with the same bounds, drops the
   old one and the log and gives the copy its name. It waits at most FINAL_LOCK_WAIT_S for
   the lock (what queues behind it waits no longer), then catches up and tries again, for
   up to ``lock_timeout_s``. (DETACH needs that lock anyway: taking it at once means a
   transaction that read the table and then writes cannot deadlock with the move);
7. after the commit, the rows' old home on a shard (if they came from one) is dropped.

Why a trigger log and not logical replication or pg_repack: one mechanism serves both kinds
of move and any source (local, tablespace, shard), through the connection and postgres_fdw
mapping the move already has. Logical replication would need ``wal_level = logical`` (a
restart of every server; they run ``replica``), a role with REPLICATION on the primary whose
password the shard keeps in its subscription, and it cannot copy into another table of the
same database (a tablespace move). pg_repack moves a table to another tablespace the same
way (trigger log, copy, short swap), and BENCHMARKS.md measures it beside this, but it is an
extension and a client to install on every server, moves nothing to a shard and does not
check the copy.

Offline (``online=False``), steps 2-6 are one transaction that holds the parent against
writes from the first row copied to the swap, checked by count and checksum (the sum of a
64-bit hash of each row's text) of both tables. Writers lock the parent before a partition,
as both modes do, so they cannot deadlock with a move; a transaction that read the table
before and writes to it during the final lock can, and then the move fails, changing
nothing, and may simply be run again.

Because the transaction commits on the primary and, through postgres_fdw, on the shard, a
crash between the two commits can leave a copy on the shard that no partition points at; the
next ``place`` to that shard refuses to overwrite it and names it. A move whose process dies
leaves its log, trigger and copy behind; the next ``place`` of that partition refuses and
says what to drop.

Rows that only change place are not change-history events: they are copied (and changes
replayed) into a table that becomes a partition only afterwards (ATTACH), so the parent's
row triggers (history, references) do not fire for them; the writes users make during the
move fire them once, on the old partition, as always.

Re-partitioning a whole table is :mod:`~movierec.db.partitions.repartition`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
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
    text_settings,
)
from movierec.db.partitions.online import ChangeLog, Check
from movierec.db.partitions.servers import (
    check_tablespace,
    connect_server,
    get_server,
    probe_from_primary,
)
from movierec.errors import BadInput, MovierecError, first_line

CATCH_UP_S = 300.0  # how long an online move may chase writes before it gives up
_FEW_BEHIND = 100  # a replay pass that found no more than this: caught up
_MAX_CHECKS = 5  # checks of the keys written meanwhile before the final one
FINAL_LOCK_WAIT_S = 0.2  # the longest the final lock request may queue others behind it
_BOUND_CHECK = "movierec_move_bound"


@dataclass(frozen=True)
class PlaceReport:
    partition: str
    source: str  # location before, e.g. "local", "server shard1"
    target: str
    rows: int
    checksum: int
    seconds: float
    leftover: str | None = None  # a shard table we could not drop afterwards (why)
    online: bool = False
    caught_up: int = 0  # (online) changes written during the move and replayed onto the copy
    # (online) the longer of its two locked transactions, from the lock to the commit's
    # return: an upper bound of the writes' wait (the old files are unlinked after the
    # locks are released, before the commit returns)
    held_s: float = 0.0


def place(
    settings: Settings,
    partition: str,
    server: str | None = None,
    tablespace: str | None = None,
    progress: Progress | None = None,
    lock_timeout_s: float = LOCK_TIMEOUT_S,
    online: bool = True,
    catch_up_s: float = CATCH_UP_S,
) -> PlaceReport:
    """Move ``partition``'s rows to shard ``server`` or into ``tablespace`` (``pg_default``:
    back to the primary's default): online, writes waiting only for two short locks, or
    (``online=False``) in one transaction that holds writes throughout (see the module
    docstring).

    Raises :class:`BadInput` (neither or both targets, already there), :class:`NotFound`
    (unknown partition, server or tablespace), :class:`DatabaseUnavailable` (the primary
    or the target server does not answer: nothing is started) and :class:`PartitionError`
    (the move failed or could not catch up with the writes; nothing was changed).
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
            if online:
                report = _move_online(
                    conn, part, shape, server, tablespace, progress, lock_timeout_s, catch_up_s
                )
            else:
                report = _move(conn, part, shape, server, tablespace, progress, lock_timeout_s)
        except BaseException:
            if created_remote:
                _rollback_quietly(conn)
                _drop_remote_table(conn, server, created_remote)
            raise
        if server is not None:
            _analyze_placed(conn, server, part.name)
        leftover = None
        if part.placement is Placement.SERVER:
            leftover = _drop_remote_table(conn, part.where, part.remote_table)
    return replace(report, seconds=time.perf_counter() - started, leftover=leftover)


def _moved_since(conn: psycopg.Connection, part: Partition) -> bool:
    """Whether ``part`` lives elsewhere now (another move got there first). Its row and
    byte figures are left out: under writes they change by the second."""
    now = find_partition(conn, part.name)
    return replace(now, rows=None, bytes=None) != replace(part, rows=None, bytes=None)


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


def _analyze_placed(conn: psycopg.Connection, server: str, name: str) -> None:
    """Statistics for the shard's planner (queries pushed down run there) and for the
    primary's: autovacuum never analyzes a foreign table, and one never analyzed counts as -1
    rows. At 20M ratings the primary planned over two 5M-row foreign partitions as if they
    held ~2,000 rows each, and the admin page's estimate (web/counts.py) left them out: half
    the ratings. Analyzing the foreign table reads the shard's rows (postgres_fdw samples on
    the primary in PostgreSQL 15): 3.3 s per 5M rows. Best effort."""
    try:
        with connect_server(conn, server) as remote:
            remote.execute(sql.SQL("ANALYZE {}").format(sql.Identifier("public", name)))
    except (MovierecError, psycopg.Error):
        pass  # autovacuum will do it
    try:
        with conn.transaction():
            conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(name)))
    except psycopg.Error:
        _rollback_quietly(conn)  # the next ANALYZE of the table (a load's) will do it


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
        if _moved_since(conn, part):
            raise PartitionError(f"{part.name} changed while we looked; nothing was changed")
        before = checksum(conn, part.name, shape)
        _create_copy(conn, part, shape, server, tablespace, new)
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


def _create_copy(
    conn: psycopg.Connection,
    part: Partition,
    shape: TableShape,
    server: str | None,
    tablespace: str | None,
    new: str,
) -> None:
    """In the caller's transaction: the empty table the rows move into, ``new``."""
    if server is not None:
        conn.execute(foreign_table_ddl(shape, new, server, part.name))
        return
    space = "" if tablespace == DEFAULT_TABLESPACE else tablespace
    conn.execute("SELECT set_config('default_tablespace', %s, true)", (space,))
    for statement in local_table_ddl(shape, new):
        conn.execute(statement)
    # A CHECK that is the partition's bound lets ATTACH skip scanning every row under the
    # final lock ("implied by existing constraints"); it is dropped after the ATTACH.
    conn.execute(
        sql.SQL(
            "ALTER TABLE {} ADD CONSTRAINT {} CHECK (satisfies_hash_partition({}::oid, {}, {}, {}))"
        ).format(
            sql.Identifier(new),
            sql.Identifier(_BOUND_CHECK),
            sql.Literal(_oid(conn, part.table)),
            sql.Literal(part.modulus),
            sql.Literal(part.remainder),
            sql.Identifier(shape.partition_column),
        )
    )


def _oid(conn: psycopg.Connection, table: str) -> int:
    return conn.execute("SELECT to_regclass(%s)::oid", (table,)).fetchone()[0]


def _move_online(
    conn: psycopg.Connection,
    part: Partition,
    shape: TableShape,
    server: str | None,
    tablespace: str | None,
    progress: Progress,
    lock_timeout_s: float,
    catch_up_s: float,
) -> PlaceReport:
    new = f"{part.name}_new"
    log = ChangeLog(part.name, new, shape)
    if log.exists(conn):
        raise PartitionError(
            f"a move of {part.name} is under way, or one was interrupted ({log.table} "
            f"exists); if none runs, drop what it left: {log.leftover_hint()}; "
            "nothing was changed"
        )
    conn.commit()
    try:  # before the cleanup below takes charge: a copy of that name may be another move's
        with conn.transaction():
            _create_copy(conn, part, shape, server, tablespace, new)
    except psycopg.errors.DuplicateTable:
        raise PartitionError(
            f"{new} exists (another move of {part.name} under way, or left by one); if none "
            f"runs, drop it; nothing was changed"
        ) from None
    held = []
    try:

        def start() -> float:  # writes wait until the trigger is there, briefly
            with conn.transaction():
                # The parent, not only the partition: a bulk load holds it while it writes
                # to a shard behind the partition's back (loading.direct_foreign_inserts).
                locked = _lock_briefly(conn, part.table, "SHARE ROW EXCLUSIVE")
                if _moved_since(conn, part):
                    raise PartitionError(
                        f"{part.name} changed while we looked; nothing was changed"
                    )
                log.install(conn, part.placement is Placement.SERVER)  # (the partition too)
            return locked

        held.append(_retry_briefly(start, lambda: time.sleep(0.1), part, lock_timeout_s))
        with conn.transaction():
            total = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(part.name))
            ).fetchone()[0]
        copied = copy_rows(conn, part.name, new, shape, total, progress, commit_each=True)
        caught_up = _catch_up(conn, log, catch_up_s)
        if server is None:
            with conn.transaction():
                conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(new)))
        check = log.compare(conn, None)  # every row
        caught_up += _catch_up(conn, log, catch_up_s)
        for _ in range(_MAX_CHECKS):  # then the keys written meanwhile, until they are few
            check = log.compare(conn, check)
            caught_up += _catch_up(conn, log, catch_up_s)
            if len(check.open) <= _FEW_BEHIND:
                break

        def finish() -> float:
            nonlocal caught_up
            replayed, locked = _finish(conn, part, shape, log, check, new, server is not None)
            caught_up += replayed
            return locked

        def between() -> None:
            nonlocal caught_up
            caught_up += _catch_up(conn, log, catch_up_s)

        held.append(_retry_briefly(finish, between, part, lock_timeout_s))
    except BaseException:
        _rollback_quietly(conn)
        _undo_online(conn, log, new, server is not None, lock_timeout_s)
        raise
    target = f"server {server}" if server else _tablespace_label(tablespace)
    return PlaceReport(
        part.name, part.location, target, copied, 0, 0.0,
        online=True, caught_up=caught_up, held_s=max(held),
    )  # fmt: skip


def _lock_briefly(conn: psycopg.Connection, table: str, mode: str) -> float:
    """In the caller's transaction: the text settings checks need and ``table`` locked in
    ``mode``, waiting at most FINAL_LOCK_WAIT_S (what queues behind the request waits no
    longer). Returns when it got the lock (``perf_counter``). Raises ``LockNotAvailable``.
    """
    text_settings(conn)
    conn.execute(
        sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{FINAL_LOCK_WAIT_S}s"))
    )
    conn.execute(sql.SQL("LOCK TABLE {} IN {} MODE").format(sql.Identifier(table), sql.SQL(mode)))
    return time.perf_counter()


def _retry_briefly(
    locked_step: Callable[[], float],
    between: Callable[[], None],
    part: Partition,
    lock_timeout_s: float,
) -> float:
    """Run ``locked_step`` (a transaction that takes its locks with :func:`_lock_briefly`)
    until it gets them, ``between`` tries, for up to ``lock_timeout_s``; returns how long it
    held them (to its commit's return). Raises :class:`PartitionError` when it never did."""
    deadline = time.monotonic() + lock_timeout_s
    while True:
        try:
            locked = locked_step()
            return time.perf_counter() - locked
        except psycopg.errors.LockNotAvailable:
            if time.monotonic() > deadline:
                raise PartitionError(
                    f"{part.table} stayed in use for {lock_timeout_s:.0f} s: could not lock it "
                    f"to move {part.name}; nothing was changed"
                ) from None
            between()


def _finish(
    conn: psycopg.Connection,
    part: Partition,
    shape: TableShape,
    log: ChangeLog,
    check: Check,
    new: str,
    foreign: bool,
) -> tuple[int, float]:
    """The final transaction: the parent locked ACCESS EXCLUSIVE (waiting at most
    FINAL_LOCK_WAIT_S, so that what queues behind the lock request waits no longer; a
    weaker lock would let a transaction that read the table and then writes to it deadlock
    with the DETACH), the last changes replayed, the open keys checked, the copy swapped in.
    Returns the changes it replayed and when it got the lock (``perf_counter``). Raises
    ``LockNotAvailable`` (try again later) and :class:`PartitionError`."""
    replayed = 0
    with conn.transaction():
        locked = _lock_briefly(conn, part.table, "ACCESS EXCLUSIVE")
        if part.placement is not Placement.SERVER:  # (LOCK refuses foreign tables)
            conn.execute(  # writes that name the partition itself, not the parent
                sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(part.name))
            )
        while found := log.replay(conn):
            replayed += found
        wrong = log.differences(conn, log.open_keys(conn, check))
        if wrong:
            raise PartitionError(
                f"the copy of {part.name} does not match it in {len(wrong)} rows (e.g. "
                f"key {sorted(wrong)[0]}); nothing was changed"
            )
        log.remove(conn)
        _swap(conn, part, shape, new)
        if not foreign:
            conn.execute(
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                    sql.Identifier(part.name), sql.Identifier(_BOUND_CHECK)
                )
            )
    return replayed, locked


def _catch_up(conn: psycopg.Connection, log: ChangeLog, catch_up_s: float) -> int:
    """Replay logged changes until a pass finds only a few; returns how many it replayed.
    Raises :class:`PartitionError` when writes keep ahead for ``catch_up_s``."""
    started, replayed = time.monotonic(), 0
    while True:
        with conn.transaction():
            text_settings(conn)
            found = log.replay(conn)
        replayed += found
        if found <= _FEW_BEHIND:
            return replayed
        if time.monotonic() - started > catch_up_s:
            raise PartitionError(
                f"writes to {log.partition} come faster than the move replays them "
                f"({log.behind(conn):,} changes behind after {catch_up_s:.0f} s); nothing was "
                "changed: move it when it is quieter, or with --offline (writes then wait "
                "for the whole copy)"
            )


def _undo_online(
    conn: psycopg.Connection, log: ChangeLog, new: str, foreign: bool, lock_timeout_s: float
) -> None:
    """After a failed online move: stop logging, drop the log and the copy (best effort:
    when the primary is gone, the next ``place`` names what is left)."""
    try:
        with conn.transaction():
            conn.execute(
                sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{lock_timeout_s}s"))
            )
            log.remove(conn)
            kind = "FOREIGN TABLE" if foreign else "TABLE"
            conn.execute(sql.SQL("DROP {} IF EXISTS {}").format(sql.SQL(kind), sql.Identifier(new)))
    except (MovierecError, psycopg.Error):
        _rollback_quietly(conn)
