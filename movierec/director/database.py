"""The director's lower level: an HAProxy in TCP mode in front of every PostgreSQL group,
following the primary Patroni elects (see ``ops/haproxy/postgres.cfg.template``).

Each group gets two addresses that never change: its primary frontend (web and AI servers
write there, admin commands too) and its read frontend (the replicas, or the primary when no
replica is up). HAProxy asks each member's Patroni REST API every half second whether it is
the primary (``/primary``) or a replica (``/replica``), so a failover or switchover reaches
every client within about a second, without restarting any of them, and sessions left on a
member that stopped being primary are cut.

Why HAProxy and not libpq multi-host URLs (``host=a,b&target_session_attrs=read-write``):
those pick the primary when a connection opens, but a pooled connection opened before a
switchover stays on the demoted member and its writes fail until the pool recycles it; the
URLs would also have to list every member in every server's settings and change whenever
members are added. HAProxy cuts the stale sessions and hides the members behind one address.

It runs as its own HAProxy (master-worker, so a reload keeps the listening sockets) with its
files in ``state_dir/dbswitch``; the HTTP director in front of the web servers is separate.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from movierec.db.patroni import Group
from movierec.director.haproxy import process_alive, read_pid, run_haproxy, socket_command
from movierec.director.render import _template  # the same ops/haproxy templates
from movierec.errors import OpsCommandFailed
from movierec.processes import stop_pid

READY_TIMEOUT = 10.0


@dataclass(frozen=True)
class SwitchFiles:
    """Where the database switch keeps its configuration and runtime files."""

    root: Path  # state_dir/dbswitch

    @property
    def config(self) -> Path:
        return self.root / "haproxy.cfg"

    @property
    def pid_file(self) -> Path:
        return self.root / "haproxy.pid"

    @property
    def stats_socket(self) -> Path:
        return self.root / "stats.sock"


def switch_files(state_dir: Path) -> SwitchFiles:
    return SwitchFiles(state_dir.resolve() / "dbswitch")


def render_config(groups: list[Group], files: SwitchFiles) -> str:
    """The text of the switch's haproxy.cfg for ``groups``. Raises :class:`ConfigError`."""
    block = _template("postgres-group.cfg.template")
    rendered = []
    for group in groups:
        servers = [
            f"    server {m.name} 127.0.0.1:{m.pg_port} check port {m.rest_port}"
            for m in group.members
        ]
        rendered.append(
            block.substitute(
                scope=group.scope,
                primary_bind=f"127.0.0.1:{group.primary_port}",
                replica_bind=f"127.0.0.1:{group.replica_port}",
                primary_servers="\n".join(servers),
                replica_servers="\n".join(servers),
            )
        )
    return _template("postgres.cfg.template").substitute(
        stats_socket=files.stats_socket, groups="\n".join(rendered)
    )


def running_pid(files: SwitchFiles) -> int | None:
    pid = read_pid(files.pid_file)
    return pid if pid is not None and process_alive(pid) else None


def apply(state_dir: Path, groups: list[Group]) -> bool:
    """Start the switch for ``groups``, or reload it with them when it runs (connections
    through members that stay keep going). True when started here. Raises
    :class:`OpsCommandFailed` when HAProxy rejects the configuration (the running one keeps
    serving) or does not come up."""
    files = switch_files(state_dir)
    files.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = render_config(groups, files)
    new = files.config.with_suffix(".new")
    new.write_text(text)
    try:
        run_haproxy(["-c", "-f", str(new)], what="database switch configuration check")
    except OpsCommandFailed:
        new.unlink(missing_ok=True)
        raise
    os.replace(new, files.config)
    pid = running_pid(files)
    if pid is not None:
        before = _worker_pid(files)
        os.kill(pid, signal.SIGUSR2)
        _wait_for_worker(files, lambda worker: worker is not None and worker != before)
    else:
        files.stats_socket.unlink(missing_ok=True)
        run_haproxy(
            ["-W", "-D", "-f", str(files.config), "-p", str(files.pid_file)],
            what="starting the database switch",
        )
        _wait_for_worker(files, lambda worker: worker is not None)
    _wait_for_primaries(state_dir, groups)
    return pid is None


def _wait_for_primaries(state_dir: Path, groups: list[Group], timeout: float = 15.0) -> None:
    """Until a fresh worker's checks have found each group's primary: before that, a client
    could be turned away (or, while every server still counts as up, sent to a replica)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = backend_status(state_dir)
        waiting = [
            g.scope
            for g in groups
            if [s for s in seen.get(f"{g.scope}_primary", {}).values() if s == "UP"] != ["UP"]
        ]
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise OpsCommandFailed(
                f"the database switch sees no single primary of {', '.join(waiting)} "
                f"after {timeout:.0f} s ({seen})"
            )
        time.sleep(0.1)


def _worker_pid(files: SwitchFiles) -> int | None:
    try:
        answer = socket_command(files.stats_socket, "show info", timeout=1.0)
    except OpsCommandFailed:
        return None
    for line in answer.splitlines():
        if line.startswith("Pid: "):
            return int(line.split()[1])
    return None


def _wait_for_worker(files: SwitchFiles, ready, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready(_worker_pid(files)):
            return
        time.sleep(0.05)
    raise OpsCommandFailed(f"the database switch did not answer within {timeout:.0f} s")


def stop(state_dir: Path, timeout: float = 10.0) -> bool:
    """Stop the switch (its sessions are cut); False when it did not run. Raises
    :class:`OpsCommandFailed` when HAProxy survives SIGKILL."""
    files = switch_files(state_dir)
    pid = running_pid(files)
    if pid is None:
        return False
    # SIGTERM, not HAProxy's soft stop: database sessions would hold a soft-stopping worker
    # for as long as they stay open.
    steps = ((signal.SIGTERM, timeout), (signal.SIGKILL, 3.0))
    if not stop_pid(pid, lambda: process_alive(pid), steps):
        raise OpsCommandFailed(f"database switch: HAProxy master {pid} survived SIGKILL")
    files.pid_file.unlink(missing_ok=True)
    return True


def backend_status(state_dir: Path) -> dict[str, dict[str, str]]:
    """What the switch sees now: ``{proxy: {member: "UP"|"DOWN"|...}}`` (``main_primary``,
    ``main_replicas``, ...); empty when it does not run."""
    files = switch_files(state_dir)
    if running_pid(files) is None:
        return {}
    try:
        text = socket_command(files.stats_socket, "show stat")
    except OpsCommandFailed:
        return {}
    seen: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        fields = line.split(",")
        if line.startswith("#") or len(fields) < 18 or fields[1] in ("FRONTEND", "BACKEND"):
            continue
        seen.setdefault(fields[0], {})[fields[1]] = fields[17]
    return seen
