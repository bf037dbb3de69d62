"""Point-in-time restore of every server to one coordinated target.

Two steps, so that every mistake is caught before anything changes: :func:`plan_restore`
parses and checks the target against the backups in the repository and picks, per stanza,
the backup to start from; :func:`run_restore` then stops the servers, restores them (in place
with ``--delta``, or side by side into a new directory) and waits until each one has replayed
WAL up to the target and been promoted.

Targets: a time (every server replays to the same instant), a restore point made by
:func:`movierec.db.backup.create_restore_point` (the same WAL record on every server), or a
backup label (its restore point, or the end of that backup when it has none and there is a
single server).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from movierec.db.backup import (
    BackupSet,
    connect,
    known_port,
    list_backups,
    refresh_config,
    restore_points,
)
from movierec.db.local_server import LocalPostgres
from movierec.db.pgbackrest import BackupConfig, BackupServer, run_pgbackrest
from movierec.db.tools import check_server_user_can_enter, give_to_server_user
from movierec.errors import BadInput, DatabaseUnavailable, NotFound, OpsCommandFailed

RESTORE_TIMEOUT_S = 6 * 3600.0
RECOVERY_TIMEOUT_S = 3600.0
# pgBackRest stores backup stop times in whole seconds; a target must lie after the backup's
# end, so one second of margin keeps "stop <= target" true of the real, unrounded end.
_STOP_MARGIN = timedelta(seconds=1)

Progress = Callable[[int, int | None], None]


@dataclass(frozen=True)
class StanzaRestore:
    """What to restore for one server: from which backup, into which server directory."""

    stanza: str
    server: LocalPostgres  # the server to restart (live one, or a new one under target_dir)
    backup: BackupSet
    args: list[str]
    managed: bool = False  # in place into a Patroni group's primary (the caller restarts it)


@dataclass(frozen=True)
class RestorePlan:
    """A checked restore, ready to run."""

    target: str  # for people: "time 2024-06-01 12:00:00+00", "restore point x", ...
    kind: str  # "time", "name" or "immediate"
    items: list[StanzaRestore]
    target_dir: Path | None = None
    live: list[BackupServer] = field(default_factory=list)

    @property
    def in_place(self) -> bool:
        return self.target_dir is None


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """An ISO 8601 time (``2024-06-01 12:00:00.5+02:00``; no offset = local time), in UTC.

    Raises :class:`BadInput` when it does not parse or lies in the future.
    """
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise BadInput(
            f"restore time {text!r} is not an ISO 8601 time (e.g. 2024-06-01 12:00:00+00:00)"
        ) from exc
    if when.tzinfo is None:
        when = when.astimezone()  # the machine's local time zone, as a person would mean
    when = when.astimezone(UTC)
    if when > (now or datetime.now(UTC)):
        raise BadInput(f"restore time {when:%Y-%m-%d %H:%M:%S.%f} UTC is in the future")
    return when


def _pg_time(when: datetime) -> str:
    return f"{when.astimezone(UTC):%Y-%m-%d %H:%M:%S.%f}+00"


def _lsn(text: str) -> int:
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


def _by_stanza(config: BackupConfig, servers: list[BackupServer]) -> dict[str, list[BackupSet]]:
    backups = list_backups(config)
    grouped = {item.name: [b for b in backups if b.stanza == item.name] for item in servers}
    empty = [name for name, sets in grouped.items() if not sets]
    if empty:
        raise NotFound(f"no backup of {', '.join(empty)} yet: run `movierec backup create`")
    return grouped


def plan_restore(
    config: BackupConfig,
    servers: list[BackupServer],
    at: str | None = None,
    backup: str | None = None,
    point: str | None = None,
    target_dir: Path | None = None,
) -> RestorePlan:
    """Check a restore of every server to one target and choose the backups to use.

    Exactly one of ``at`` (an ISO 8601 time), ``backup`` (a pgBackRest label) or ``point`` (a
    restore point name) is required. With ``target_dir`` the servers are restored side by
    side under ``target_dir/<stanza>``, leaving the live ones alone. Changes nothing.
    Raises :class:`BadInput` for a malformed or unreachable target or an unusable
    ``target_dir``, :class:`NotFound` for an unknown label or point or missing backups.
    """
    if sum(x is not None for x in (at, backup, point)) != 1:
        raise BadInput("give exactly one restore target: a time, a backup label or a point")
    when = parse_time(at) if at is not None else None
    if target_dir is not None:
        _check_target_dir(target_dir)
    refresh_config(config, servers)
    grouped = _by_stanza(config, servers)
    if when is not None:
        kind, target, chosen = "time", _pg_time(when), _choose_for_time(grouped, when)
        label = f"time {target}"
    elif point is not None:
        kind, target, chosen = "name", point, _choose_for_point(config, grouped, point)
        label = f"restore point {point}"
    else:
        kind, target, chosen = _choose_for_backup(config, grouped, backup or "")
        label = f"backup {backup}" + (f" (restore point {target})" if target else "")
    items = []
    for item in servers:
        args = [f"--stanza={item.name}", f"--set={chosen[item.name].label}", "--delta"]
        args += [f"--type={kind}", "--target-action=promote"]
        if target:
            args.append(f"--target={target}")
        server = item.server
        if item.managed and target_dir is None:
            args += [
                # The stanza names every member; restore into the one that is primary now,
                # its tablespaces into its own directories (the backup's may be another's).
                f"--pg1-path={server.data_dir}",
                f"--tablespace-map-all={server.state_dir / 'tablespaces'}",
            ]
        if target_dir is not None:
            server = LocalPostgres(target_dir.resolve() / item.name)
            args += [
                f"--pg1-path={server.data_dir}",
                # Tablespace paths are absolute: without this map the copy would write into
                # the live server's tablespace directories.
                f"--tablespace-map-all={server.state_dir / 'tablespaces'}",
                # The copy must not push WAL into the live server's archive.
                "--archive-mode=off",
            ]
        managed = item.managed and target_dir is None
        items.append(StanzaRestore(item.name, server, chosen[item.name], args, managed))
    return RestorePlan(label, kind, items, target_dir, list(servers))


def _choose_for_time(grouped: dict[str, list[BackupSet]], when: datetime) -> dict[str, BackupSet]:
    chosen = {}
    for stanza, sets in grouped.items():
        usable = [b for b in sets if b.stop + _STOP_MARGIN <= when]
        if not usable:
            earliest = min(b.stop for b in sets) + _STOP_MARGIN
            raise BadInput(
                f"restore time {_pg_time(when)} is before the first backup of {stanza} "
                f"(earliest restorable time {_pg_time(earliest)})"
            )
        chosen[stanza] = max(usable, key=lambda b: b.stop)
    return chosen


def _choose_for_point(
    config: BackupConfig, grouped: dict[str, list[BackupSet]], name: str
) -> dict[str, BackupSet]:
    found = [p for p in restore_points(config) if p.name == name]
    if not found:
        raise NotFound(f"no restore point named {name!r} (see `movierec backup list`)")
    chosen = {}
    for stanza, sets in grouped.items():
        if stanza not in found[0].lsn:
            raise BadInput(f"restore point {name!r} was not made on {stanza}")
        at = _lsn(found[0].lsn[stanza])
        usable = [b for b in sets if b.lsn_stop and _lsn(b.lsn_stop) <= at]
        if not usable:
            raise BadInput(f"restore point {name!r} is older than every backup of {stanza}")
        chosen[stanza] = max(usable, key=lambda b: _lsn(b.lsn_stop))
    return chosen


def _choose_for_backup(
    config: BackupConfig, grouped: dict[str, list[BackupSet]], label: str
) -> tuple[str, str, dict[str, BackupSet]]:
    """(kind, target, backups) for "the state at the end of backup ``label``"."""
    matches = [b for sets in grouped.values() for b in sets if b.label == label]
    if not matches:
        raise NotFound(f"no backup labelled {label!r} (see `movierec backup list`)")
    name = matches[0].restore_point
    if name and any(p.name == name for p in restore_points(config)):
        # The backup's restore point is the same moment on every server.
        chosen = {}
        for stanza, sets in grouped.items():
            same = [b for b in sets if b.restore_point == name]
            if not same:
                raise BadInput(f"backup {label} has no companion backup of {stanza}")
            chosen[stanza] = same[0]
        return "name", name, chosen
    if len(grouped) > 1:
        raise BadInput(f"backup {label} has no restore point to restore every server to")
    return "immediate", "", {matches[0].stanza: matches[0]}


def _check_target_dir(target_dir: Path) -> None:
    if target_dir.exists() and (not target_dir.is_dir() or any(target_dir.iterdir())):
        raise BadInput(f"target directory {target_dir} exists and is not empty")
    parent = target_dir.resolve().parent
    if not parent.is_dir():
        raise BadInput(f"target directory's parent {parent} does not exist")
    try:
        check_server_user_can_enter(parent)
    except OpsCommandFailed as exc:
        raise BadInput(str(exc)) from exc


@dataclass(frozen=True)
class RestoredServer:
    stanza: str
    state_dir: Path
    url: str


def run_restore(
    config: BackupConfig, plan: RestorePlan, on_progress: Progress | None = None
) -> list[RestoredServer]:
    """Carry out ``plan``; return each restored server, running and promoted.

    In place, every live server is stopped first and restarted on its own port; side by
    side, each copy starts on a free port. Raises :class:`OpsCommandFailed` when pgBackRest
    or PostgreSQL fail (the server log's last error is quoted), :class:`DatabaseUnavailable`
    when a server does not come back.
    """
    progress = on_progress or (lambda done, total: None)
    steps = 2 * len(plan.items)
    progress(0, steps)
    if plan.kind == "time":
        _seal(config, plan.live)
    if plan.in_place:
        for item in plan.items:
            known_port(item.server)
            item.server.stop()
    else:
        assert plan.target_dir is not None
        plan.target_dir.mkdir(exist_ok=True, mode=0o755)
        live = {server.name: server.server for server in plan.live}
        for item in plan.items:
            item.server.state_dir.mkdir(mode=0o700)
            give_to_server_user(item.server.state_dir)
            live[item.stanza].passwords.copy_to(item.server.state_dir)  # the same roles
    done = 0
    for item in plan.items:
        run_pgbackrest(config, "restore", item.args, timeout=RESTORE_TIMEOUT_S)
        done += 1
        progress(done, steps)
    restored = []
    for item in plan.items:
        _start_and_wait(item.server)
        restored.append(RestoredServer(item.stanza, item.server.state_dir, item.server.url()))
        done += 1
        progress(done, steps)
    if plan.in_place:
        refresh_config(config, plan.live)  # new socket directories
    return restored


def _seal(config: BackupConfig, servers: list[BackupServer]) -> None:
    """Make every running server's latest writes reachable by a time target.

    Recovery stops at the first commit after the target time; with no later commit in the
    archive it ends "before the target was reached" and PostgreSQL refuses to start. So we
    commit one transaction with an xid now, and ``check`` switches WAL and waits until the
    segment is archived. A stopped server cannot be sealed: its archive ends where it does.
    """
    for item in servers:
        if not item.server.is_running():
            continue
        with connect(item.server) as conn:
            conn.execute("SELECT txid_current()")
        run_pgbackrest(config, "check", [f"--stanza={item.name}"], timeout=300)


def _start_and_wait(server: LocalPostgres, timeout: float = RECOVERY_TIMEOUT_S) -> None:
    try:
        server.start()
    except OpsCommandFailed as exc:
        raise OpsCommandFailed(f"{exc}; server log: {_last_error(server)}") from exc
    deadline = time.monotonic() + timeout
    while True:
        with connect(server) as conn:
            if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                return
        if time.monotonic() > deadline:
            raise DatabaseUnavailable(f"{server.state_dir}: still recovering after {timeout:.0f} s")
        time.sleep(0.2)


def _last_error(server: LocalPostgres) -> str:
    try:
        lines = server.log_file.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    errors = [line for line in lines if "FATAL" in line or "ERROR" in line]
    return (errors or lines or ["(empty log)"])[-1].strip()
