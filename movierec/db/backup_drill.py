"""``movierec backup drill``: would the backups, with the WAL archived since, give the data
back? The check an admin runs weekly, so that a backup that cannot be restored is found
before it is needed.

Writes pause for a moment on each server (:func:`movierec.db.consistency.writes_paused`)
while a restore point is written there, and the live tables are read in that moment's
snapshot. Every stanza is then restored side by side into a scratch directory, from its
latest backup and replaying the archived WAL up to the restore point, started on free
ports (archiving off, so nothing reaches the live archive), and compared table by table
with the live snapshot; the copies are stopped and deleted afterwards. A failure to
restore is a failed drill too.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from movierec.config import Settings
from movierec.db import backup
from movierec.db.consistency import (
    Comparison,
    Digest,
    at_snapshot,
    compare,
    digests,
    writes_paused,
)
from movierec.db.local_server import LocalPostgres
from movierec.db.restore import RestorePlan, plan_restore, run_restore
from movierec.errors import OpsCommandFailed

Progress = Callable[[int, int | None], None]
_DATABASES = "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1"


@dataclass(frozen=True)
class DrillReport:
    point: str
    comparisons: tuple[Comparison, ...]  # one per stanza: live (reference) against its copy
    stalled_ms: float  # the longest write pause on any server
    seconds: float

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.comparisons)


def drill(
    settings: Settings,
    scratch: Path | None = None,
    keep: bool = False,
    on_progress: Progress | None = None,
) -> DrillReport:
    """Restore every stanza to a restore point written now and compare with the live data.

    ``scratch``: where the copies go (default ``state_dir/drills/<point>``); ``keep`` leaves
    them running there. Raises :class:`OpsCommandFailed` when a restore fails,
    :class:`DatabaseUnavailable` when a server does not answer, :class:`NotFound` when a
    stanza has no backup yet.
    """
    started = time.monotonic()
    config = backup.backup_config(settings)
    servers = backup.local_servers(settings)
    backup.refresh_config(config, servers)
    name = backup.new_point_name(config, "drill")
    live, point, stalls = _paused_snapshot(config, servers, name)
    if scratch is None:
        drills = settings.state_dir.resolve() / "drills"
        drills.mkdir(mode=0o755, exist_ok=True)  # the server's OS user enters it
    target = scratch or drills / name
    plan = plan_restore(config, servers, point=name, target_dir=target)
    try:
        run_restore(config, plan, on_progress)
        comparisons = []
        for (stanza, dbname), reference in live.items():
            with _server(plan, stanza).connect(dbname) as conn:
                found = digests(conn, list(reference))
            comparisons.append(compare(f"{stanza}/{dbname}", reference, "restored", found))
    finally:
        if not keep:
            _discard(plan, target)
    return DrillReport(point.name, tuple(comparisons), max(stalls), time.monotonic() - started)


def _paused_snapshot(
    config: backup.BackupConfig, servers: list[backup.BackupServer], name: str
) -> tuple[dict[tuple[str, str], dict[str, Digest]], backup.RestorePoint, list[float]]:
    """Write restore point ``name`` on every server at a paused moment and read the live
    tables of each of its databases in that moment; archive the point. The digests are
    keyed by (stanza, database)."""
    live, lsns, stalls = {}, {}, []
    for item in servers:
        with ExitStack() as stack:
            with backup.connect(item.server) as admin:
                names = [n for (n,) in admin.execute(_DATABASES)]
            pausers = [stack.enter_context(item.server.connect(n)) for n in names]
            readers = [stack.enter_context(item.server.connect(n)) for n in names]
            with writes_paused(pausers, restore_point=name) as pauses:
                for reader, paused in zip(readers, pauses, strict=True):
                    at_snapshot(reader, paused)
            stalls.append(pauses[0].stalled_ms[0])
            lsns[item.name] = pauses[0].lsn
            for dbname, reader, paused in zip(names, readers, pauses, strict=True):
                live[(item.name, dbname)] = digests(reader, paused.tables)
    point = backup.RestorePoint(name, datetime.now(UTC), lsns)
    backup.archive_restore_point(config, servers, point)
    return live, point, stalls


def _server(plan: RestorePlan, stanza: str) -> LocalPostgres:
    return next(item.server for item in plan.items if item.stanza == stanza)


def _discard(plan: RestorePlan, target: Path) -> None:
    for item in plan.items:
        try:
            item.server.stop()
        except OpsCommandFailed:
            pass  # its files go below all the same
    shutil.rmtree(target, ignore_errors=True)
