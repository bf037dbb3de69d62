"""``movierec db check``: do the replicas hold exactly the primary's rows, and is every write
a client saw acknowledged still there?

The primary's writes pause for a moment (:func:`movierec.db.consistency.writes_paused`) while
each streaming replica replays up to the primary's WAL position; from then on every server
is read in a snapshot of that same moment, so the comparison is exact under load too. The
acknowledged writes (a drill's record, :func:`movierec.db.consistency.read_acknowledged`) are
checked on the primary, through it on the shards as well.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from movierec.config import Settings
from movierec.db.consistency import (
    AcknowledgedCheck,
    Comparison,
    at_replayed,
    at_snapshot,
    check_acknowledged,
    compare,
    digests,
    flush_wal,
    read_acknowledged,
    writes_paused,
)
from movierec.db.patroni import cluster_view, is_group, load_group
from movierec.db.topology import PRIMARY_DIR, connect, load_topology, state_root
from movierec.errors import DatabaseUnavailable, first_line

Opener = Callable[[], AbstractContextManager[psycopg.Connection]]


@dataclass(frozen=True)
class CheckReport:
    primary: str
    comparisons: tuple[Comparison, ...]
    unreachable: tuple[tuple[str, str], ...]  # (server, why)
    acknowledged: AcknowledgedCheck | None
    tables: int
    stalled_ms: float

    @property
    def ok(self) -> bool:
        comparisons_ok = all(c.ok for c in self.comparisons)
        acknowledged_ok = self.acknowledged is None or self.acknowledged.ok
        return comparisons_ok and acknowledged_ok and not self.unreachable


def check(settings: Settings, acknowledged: Path | None = None) -> CheckReport:
    """Compare every streaming replica with the primary, and ``acknowledged`` writes with
    the primary's rows.

    Raises :class:`DatabaseUnavailable` when the primary does not answer,
    :class:`BadInput` for an unreadable ``acknowledged`` file, and
    :class:`movierec.db.consistency.CheckFailed` when writes could not be paused or a
    replica did not reach the paused moment in time.
    """
    expected = read_acknowledged(acknowledged) if acknowledged is not None else None
    (primary, open_primary), standbys = _servers(settings)
    with ExitStack() as stack:
        pauser = stack.enter_context(open_primary())
        reader = stack.enter_context(open_primary())
        copies, unreachable = [], []
        for name, opener in standbys:
            try:
                copies.append((name, stack.enter_context(opener())))
            except (DatabaseUnavailable, psycopg.OperationalError) as exc:
                unreachable.append((name, first_line(exc)))
        with writes_paused([pauser]) as (paused,):
            if copies:
                flush_wal(reader)  # before its snapshot: the replicas are sent the moment
            at_snapshot(reader, paused)
            for _name, conn in copies:
                at_replayed(conn, paused.lsn)
        reference = digests(reader, paused.tables)
        comparisons = tuple(
            compare(primary, reference, name, digests(conn, paused.tables)) for name, conn in copies
        )
        found = check_acknowledged(reader, expected) if expected is not None else None
    return CheckReport(
        primary,
        comparisons,
        tuple(unreachable),
        found,
        len(paused.tables),
        paused.stalled_ms[0],
    )


def _servers(settings: Settings) -> tuple[tuple[str, Opener], list[tuple[str, Opener]]]:
    """(name, how to connect) of the primary and of each standby: the members of the Patroni
    group where one runs the primary (its leader now), else the recorded topology."""
    group_dir = state_root(settings) / PRIMARY_DIR
    if is_group(group_dir):
        group = load_group(group_dir)
        dbname = make_url(settings.database_url or "").database or "postgres"
        leader = next((v.name for v in cluster_view(group) if v.is_leader), None)
        if leader is None:
            raise DatabaseUnavailable(f"group {group.scope} has no primary now")
        members = [(m.name, _opener(m.local, dbname)) for m in group.members]
        return next(m for m in members if m[0] == leader), [m for m in members if m[0] != leader]
    topology = load_topology(settings)
    primary = topology.primary()
    standbys = [(s.name, _topology_opener(settings, s)) for s in topology.standbys()]
    return (primary.name, _topology_opener(settings, primary)), standbys


def _opener(server, dbname: str) -> Opener:
    return lambda: server.connect(dbname)


def _topology_opener(settings: Settings, server) -> Opener:
    return lambda: connect(settings, server)
