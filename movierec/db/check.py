"""``movierec db check``: do the replicas hold exactly the primary's rows, and is every write
a client saw acknowledged still there?

The primary's writes pause for a moment (:func:`movierec.db.consistency.writes_paused`) while
each streaming replica replays up to the primary's WAL position; from then on every server
is read in a snapshot of that same moment, so the comparison is exact under load too. The
acknowledged writes (a drill's record, :func:`movierec.db.consistency.read_acknowledged`) are
checked on the primary, through it on the shards as well.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from movierec.config import Settings
from movierec.db.consistency import (
    AcknowledgedCheck,
    Comparison,
    at_replayed,
    at_snapshot,
    check_acknowledged,
    compare,
    digests,
    read_acknowledged,
    writes_paused,
)
from movierec.db.topology import connect, load_topology
from movierec.errors import DatabaseUnavailable


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
    topology = load_topology(settings)
    primary = topology.primary()
    with ExitStack() as stack:
        pauser = stack.enter_context(connect(settings, primary))
        reader = stack.enter_context(connect(settings, primary))
        copies, unreachable = [], []
        for server in topology.standbys():
            try:
                copies.append((server.name, stack.enter_context(connect(settings, server))))
            except DatabaseUnavailable as exc:
                unreachable.append((server.name, str(exc)))
        with writes_paused([pauser]) as (paused,):
            at_snapshot(reader, paused)
            for _name, conn in copies:
                at_replayed(conn, paused.lsn)
        reference = digests(reader, paused.tables)
        comparisons = tuple(
            compare(primary.name, reference, name, digests(conn, paused.tables))
            for name, conn in copies
        )
        found = check_acknowledged(reader, expected) if expected is not None else None
    return CheckReport(
        primary.name,
        comparisons,
        tuple(unreachable),
        found,
        len(paused.tables),
        paused.stalled_ms[0],
    )
