"""Do the copies of the data agree? What ``movierec db check`` and ``movierec backup drill`` ask.

A copy is compared table by table: every ordinary table of the ``public`` schema that holds
rows here (each local partition on its own; a foreign partition is compared on its own
server), by its row count and an order-independent checksum (the sum of the first 60 bits
of each row's md5, as text), so two servers agree exactly when they hold the same rows.

Under writes a comparison needs one moment that every copy shows. :func:`writes_paused`
takes it on a server: in one transaction it locks the tables compared (SHARE: readers go on,
writers wait, in-flight writes finish first), exports its snapshot and reads the WAL position
(``db check``) or writes a restore point (``backup drill``), and holds the lock only until the
readers of that moment have started: the other side's snapshot (a replica that has replayed
up to the position, once :func:`flush_wal` has it sent) and an import of the exported one.
The checksums are then computed at leisure while the site writes again. Writes stall for the
time it takes a replica to replay to the position (milliseconds when it streams);
``PAUSE_LIMIT`` bounds it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from movierec.errors import BadInput, MovierecError

PAUSE_LIMIT = 5.0  # seconds writes may wait while the copies reach the paused moment
LOCK_TIMEOUT_MS = 5000

_TABLES = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname <> 'alembic_version'
ORDER BY c.relname
"""


class CheckFailed(MovierecError):
    """The copies could not be compared (a lock not granted, a replica too far behind)."""


@dataclass(frozen=True)
class Digest:
    rows: int
    checksum: int


@dataclass(frozen=True)
class Difference:
    """One table that differs between ``reference`` and ``copy`` (None: missing there)."""

    table: str
    reference: Digest | None
    copy: Digest | None


@dataclass(frozen=True)
class Comparison:
    """``copy`` (a server, or a restored copy) against ``reference`` over ``tables``."""

    reference: str
    copy: str
    tables: int
    differences: tuple[Difference, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.differences


@dataclass(frozen=True)
class AcknowledgedCheck:
    """Acknowledged writes (a drill's record) against what the primary holds."""

    checked: int
    missing: tuple[dict, ...] = ()  # acknowledged, and not there (or another value)
    resurrected: tuple[dict, ...] = ()  # acknowledged deleted, and there

    @property
    def ok(self) -> bool:
        return not self.missing and not self.resurrected


@dataclass(frozen=True)
class Paused:
    """The paused moment in one database: its exported snapshot, the tables locked, and the
    server's WAL position (that of the restore point, when one was written)."""

    snapshot: str
    lsn: str
    tables: tuple[str, ...]
    restore_point: str | None = None
    stalled_ms: list[float] = field(default_factory=list)  # set when the pause ends


def data_tables(conn: psycopg.Connection) -> list[str]:
    """The tables holding rows on this server (partitions one by one, no foreign tables)."""
    return [name for (name,) in conn.execute(_TABLES)]


def digests(conn: psycopg.Connection, tables: Sequence[str]) -> dict[str, Digest]:
    """Row count and checksum of each of ``tables``, in the connection's snapshot."""
    found = {}
    for table in tables:
        stmt = sql.SQL(
            "SELECT count(*), coalesce(sum(('x' || left(md5(t::text), 15))::bit(60)::bigint), 0)"
            " FROM {} t"
        ).format(sql.Identifier(table))
        rows, checksum = conn.execute(stmt).fetchone()
        found[table] = Digest(int(rows), int(checksum))
    return found


def compare(
    reference_name: str,
    reference: Mapping[str, Digest],
    copy_name: str,
    copy: Mapping[str, Digest],
) -> Comparison:
    tables = sorted(set(reference) | set(copy))
    differences = tuple(
        Difference(t, reference.get(t), copy.get(t))
        for t in tables
        if reference.get(t) != copy.get(t)
    )
    return Comparison(reference_name, copy_name, len(tables), differences)


@contextmanager
def writes_paused(
    conns: Sequence[psycopg.Connection], restore_point: str | None = None
) -> Iterator[list[Paused]]:
    """Pause writes to the data tables of the databases ``conns`` reach, all on one server,
    while the block runs (see the module docstring); ``restore_point``: write one with that
    name (for the whole server) at the paused moment. One :class:`Paused` per connection.

    The connections must not be in a transaction and are used for nothing else meanwhile.
    Raises :class:`CheckFailed` when a lock is not granted within ``LOCK_TIMEOUT_MS``.
    """
    started = time.monotonic()
    pauses: list[Paused] = []
    try:
        with ExitStack() as held:
            tables = [_lock_data_tables(conn, held) for conn in conns]
            # The insert position, not pg_current_wal_lsn() (the written one): a commit made
            # with synchronous_commit = off is seen before the WAL writer writes it.
            position = "SELECT pg_current_wal_insert_lsn()::text"
            args: tuple = ()
            if restore_point is not None:
                position, args = "SELECT pg_create_restore_point(%s)::text", (restore_point,)
            (lsn,) = conns[0].execute(position, args).fetchone()
            for conn, names in zip(conns, tables, strict=True):
                # Its first query: each transaction's snapshot is taken now, locks all held.
                (snapshot,) = conn.execute("SELECT pg_export_snapshot()").fetchone()
                pauses.append(Paused(snapshot, lsn, names, restore_point))
            yield pauses
    except psycopg.errors.LockNotAvailable as exc:
        raise CheckFailed(
            f"writes did not pause within {LOCK_TIMEOUT_MS} ms (a long transaction holds a "
            "table); nothing was compared, try again"
        ) from exc
    finally:
        for paused in pauses:
            paused.stalled_ms.append((time.monotonic() - started) * 1000)


def _lock_data_tables(conn: psycopg.Connection, held: ExitStack) -> tuple[str, ...]:
    """In a new REPEATABLE READ transaction of ``conn`` (ended by ``held``), lock its data
    tables against writes, before any query takes the transaction's snapshot."""
    names = tuple(data_tables(conn))  # before the transaction: its own snapshot
    held.enter_context(conn.transaction())
    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(LOCK_TIMEOUT_MS))
    if names:
        conn.execute(
            sql.SQL("LOCK TABLE {} IN SHARE MODE").format(
                sql.SQL(", ").join(sql.Identifier(t) for t in names)
            )
        )
    return names


def flush_wal(conn: psycopg.Connection) -> None:
    """Have the server of ``conn`` (not in a transaction) write and flush its WAL up to now,
    so that its replicas are sent all of it and can replay up to a paused moment.

    A commit with synchronous_commit = off (LocalPostgres' setting; any session may choose
    it) is visible before the WAL writer writes it, up to ``wal_writer_delay`` later (200 ms;
    records no commit follows may wait for a full page), and a walsender sends only flushed
    WAL: a replica waited for up to the moment of such a commit could not get there. A
    commit flushes every record before its own when its transaction wrote one (an xid alone
    is not enough): a transactional logical message, which needs no table (those compared
    are locked) and no privilege. ``local``: no wait for a synchronous standby (one that is
    down would hold the check).
    """
    with conn.transaction():
        conn.execute("SET LOCAL synchronous_commit = local")
        conn.execute("SELECT pg_logical_emit_message(true, 'movierec', 'db check')")


def at_snapshot(conn: psycopg.Connection, paused: Paused) -> None:
    """Begin a REPEATABLE READ transaction on ``conn`` that sees ``paused``'s moment (same
    server, while the pause lasts)."""
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(paused.snapshot)))


def at_replayed(conn: psycopg.Connection, lsn: str, limit: float = PAUSE_LIMIT) -> None:
    """Begin a REPEATABLE READ transaction on standby ``conn`` once it has replayed ``lsn``
    (which the primary must have flushed: :func:`flush_wal`).

    Raises :class:`CheckFailed` when it has not within ``limit`` seconds.
    """
    deadline = time.monotonic() + limit
    while True:
        (reached,) = conn.execute(
            "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)
        ).fetchone()
        if reached:
            break
        if time.monotonic() > deadline:
            raise CheckFailed(f"the replica had not replayed up to {lsn} after {limit:.0f} s")
        time.sleep(0.005)
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    conn.execute("SELECT 1")  # the snapshot is taken now, at (or after) the paused moment


# --- acknowledged writes ---------------------------------------------------------------------


UserKey = int | str  # a user's id, or (as a load generator that signs users up knows them) name


def read_acknowledged(path: Path) -> dict[tuple[UserKey, int], float | None]:
    """The last acknowledged rating per (user, movie) from a JSON-lines file of
    ``{"user_id": U, "movie_id": M, "rating": R}`` (``"username"`` instead of ``"user_id"``
    for users known by name; ``"rating": null``: a deletion).

    Raises :class:`BadInput` naming the first bad line.
    """
    acknowledged: dict[tuple[UserKey, int], float | None] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror}") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            user = str(row["username"]) if "username" in row else int(row["user_id"])
            rating = row["rating"]
            acknowledged[(user, int(row["movie_id"]))] = None if rating is None else float(rating)
        except (ValueError, KeyError, TypeError) as exc:
            raise BadInput(f"{path}:{number}: not a rating record ({exc})") from exc
    return acknowledged


def check_acknowledged(
    conn: psycopg.Connection, acknowledged: Mapping[tuple[UserKey, int], float | None]
) -> AcknowledgedCheck:
    """Whether every acknowledged rating is in ``conn``'s database as acknowledged."""
    names = sorted({user for user, _ in acknowledged if isinstance(user, str)})
    ids = dict(conn.execute("SELECT username, id FROM users WHERE username = ANY(%s)", (names,)))
    keys = [(ids.get(user, user), movie) for user, movie in acknowledged]
    keys = [(u, m) for u, m in keys if isinstance(u, int)]
    held: dict[tuple[int, int], float] = {}
    for start in range(0, len(keys), 10_000):
        batch = keys[start : start + 10_000]
        rows = conn.execute(
            "SELECT r.user_id, r.movie_id, r.rating FROM ratings r "
            "JOIN unnest(%s::bigint[], %s::bigint[]) AS k(u, m) "
            "ON r.user_id = k.u AND r.movie_id = k.m",
            ([u for u, _ in batch], [m for _, m in batch]),
        )
        held.update({(u, m): float(r) for u, m, r in rows})
    missing, resurrected = [], []
    for (user, movie), rating in acknowledged.items():
        key = (ids.get(user, user), movie)
        record = {"user": user, "movie_id": movie, "rating": rating}
        if rating is None and key in held:
            resurrected.append(record)
        elif rating is not None and held.get(key) != rating:
            missing.append(record)
    return AcknowledgedCheck(len(acknowledged), tuple(missing), tuple(resurrected))
