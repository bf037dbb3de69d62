"""The processes a cluster started, as recorded in ``state_dir/cluster.json``, and how to tell
whether they still run and stop exactly them.

A web or AI instance is a ``movierec serve`` process started in a session of its own, so its
process group (the gunicorn master and its workers) is its pid. Each record keeps the kernel's
start time of that pid: a pid the kernel has since given to another program is never
signalled.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path

from movierec.db.local_server import LocalPostgres
from movierec.errors import ConfigError, OpsCommandFailed
from movierec.files import write_atomically

CLUSTER_FILE = "cluster.json"
# Popen handles of children started by this very process (the demo): reaped after a stop.
_CHILDREN: dict[int, subprocess.Popen] = {}


@dataclass(frozen=True)
class Member:
    """One server of the cluster."""

    name: str  # web-1, ai-1, director, postgres, replica-r1
    role: str  # web, ai, director, primary, replica
    port: int
    pid: int | None = None
    started: int | None = None  # the pid's start time in clock ticks since boot
    owned: bool = True  # started by `cluster up`; `down` stops only these
    health_url: str | None = None
    log: str | None = None
    state_dir: str | None = None  # a PostgreSQL server's state directory


@dataclass
class ClusterRecord:
    """What ``cluster up`` started: written when it is up, read by ``status`` and ``down``."""

    url: str
    members: list[Member] = field(default_factory=list)
    director: str | None = None  # only in records of older versions: their one director

    def director_name(self, member: Member) -> str:
        """The HAProxy director behind director member ``member``: named as the member
        (records of an older version name their single director in ``director``)."""
        return self.director if member.name == "director" and self.director else member.name

    def to_json(self) -> str:
        return json.dumps({"version": 1, **asdict(self)}, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ClusterRecord:
        """Raises :class:`ConfigError` when the text is not a record we wrote."""
        try:
            data = json.loads(text)
            members = [Member(**m) for m in data["members"]]
            return cls(data["url"], members, data.get("director"))
        except (ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"{CLUSTER_FILE} is malformed ({exc})") from exc


def record_path(state_dir: Path) -> Path:
    return state_dir.resolve() / CLUSTER_FILE


def save_record(state_dir: Path, record: ClusterRecord) -> Path:
    """Write the record atomically (a reader never sees half of it)."""
    path = record_path(state_dir)
    write_atomically(path, record.to_json(), ".cluster.")
    return path


def load_record(state_dir: Path) -> ClusterRecord | None:
    """The record, or None when no cluster was started. Raises :class:`ConfigError`."""
    try:
        text = record_path(state_dir).read_text()
    except FileNotFoundError:
        return None
    return ClusterRecord.from_json(text)


def start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), None when it is gone or a
    zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])  # field 22 of the whole line; fields here start at field 3


def is_running(member: Member) -> bool:
    """Whether the process recorded for ``member`` still runs (the same process, not a new
    one that got its pid)."""
    return member.pid is not None and start_time(member.pid) == member.started


DATABASE_ROLES = ("primary", "replica", "shard")


def postgres_member(name: str, role: str, server: LocalPostgres, owned: bool) -> Member:
    """The member for a running PostgreSQL server, with its postmaster's pid."""
    pid = postmaster_pid(server)
    return Member(
        name,
        role,
        server.port,
        pid,
        start_time(pid) if pid else None,
        owned,
        log=str(server.log_file),
        state_dir=str(server.state_dir),
    )


def postmaster_pid(server: LocalPostgres) -> int | None:
    """The pid in the server's postmaster.pid (PostgreSQL's own record), None without one."""
    try:
        return int((server.data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def member_alive(member: Member) -> bool:
    """Whether the member's own process runs: for a PostgreSQL server the postmaster of its
    data directory (also after ``db replica start`` restarted it), for the others the process
    ``cluster up`` (or ``cluster restart``) recorded."""
    if member.role in DATABASE_ROLES and member.state_dir:
        pid = postmaster_pid(LocalPostgres(Path(member.state_dir)))
        return pid is not None and start_time(pid) is not None
    return is_running(member)


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(int(entry.name))
    return found


def stop_group(member: Member, timeout: float = 10.0) -> bool:
    """SIGTERM the member's process group, SIGKILL what is left after ``timeout``.

    Returns False when the recorded process no longer ran (nothing was signalled). Raises
    :class:`OpsCommandFailed` when processes of the group survive a SIGKILL.
    """
    if member.pid is None or not is_running(member):
        _reap(member.pid)
        return False
    pgid = member.pid
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while group_members(pgid) and time.monotonic() < deadline:
            _reap(member.pid)
            time.sleep(0.05)
        if not group_members(pgid):
            break
    _reap(member.pid)
    left = group_members(pgid)
    if left:
        raise OpsCommandFailed(f"{member.name}: processes {left} survived SIGKILL")
    return True


def _reap(pid: int | None) -> None:
    process = _CHILDREN.get(pid) if pid is not None else None
    if process is not None and process.poll() is not None:
        _CHILDREN.pop(pid, None)


def reap_children(pids: Collection[int | None] | None = None) -> int:
    """Collect the exit status of children this process started that have ended (stopped by
    ``cluster down`` run elsewhere, say); the number still running (of ``pids``, when given:
    another cluster's may run meanwhile)."""
    for pid in list(_CHILDREN):
        _reap(pid)
    return len(_CHILDREN if pids is None else set(_CHILDREN) & set(pids))
