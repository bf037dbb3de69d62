"""Servers on a member's port that are not the member's recorded process: a web or AI instance
someone restarted by hand (``movierec serve web --port 8001 &``) after the cluster's own one
died.

The cluster record cannot know their pids, so they are found by the port they listen on, and
only a ``movierec serve <role>`` process is taken for one: any other program on the port is
named, never signalled.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import psutil

from movierec.cluster.members import Member, is_running
from movierec.errors import OpsCommandFailed


@dataclass(frozen=True)
class Stray:
    """What listens on a member's port instead of the member's own process."""

    pid: int  # the topmost process of the server (gunicorn's master)
    command: str
    ours: bool  # a `movierec serve` of the member's role: stopped with the cluster

    def describe(self) -> str:
        if self.ours:
            return f"pid {self.pid} (started outside the cluster) answers on its port"
        return f"port held by pid {self.pid} ({self.command[:60]}), not this member's server"


def _listeners(port: int) -> set[int]:
    """Pids listening on 127.0.0.1 / any address at ``port`` (those we may inspect)."""
    found = set()
    for conn in psutil.net_connections("tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            found.add(conn.pid)
    return found


def _serves(process: psutil.Process, member: Member) -> bool:
    """Whether ``process`` is ``movierec serve <member.role>`` (gunicorn's workers are forks
    of it and carry the same command line)."""
    try:
        args = process.cmdline()
    except psutil.Error:
        return False
    tail = [a for a in args if not a.startswith("-")]
    return any("movierec" in a for a in args) and "serve" in tail and member.role in tail


def _top(process: psutil.Process, member: Member) -> psutil.Process:
    """The outermost ancestor that is still the same server (the gunicorn master)."""
    while True:
        try:
            parent = process.parent()
        except psutil.Error:
            return process
        if parent is None or not _serves(parent, member):
            return process
        process = parent


def find_stray(member: Member) -> Stray | None:
    """What listens on ``member.port`` other than the member's own process group, if anything.

    Only web and AI members have strays: a director restarted by hand writes its pid file and
    a PostgreSQL server its postmaster.pid, which their own stop commands follow. Workers left
    behind by a member whose master died count as strays too.
    """
    if member.role not in ("web", "ai"):
        return None
    own_group = member.pid if is_running(member) else None
    for pid in sorted(_listeners(member.port)):
        try:
            if own_group is not None and os.getpgid(pid) == own_group:
                continue
            process = psutil.Process(pid)
            ours = _serves(process, member)
            top = _top(process, member) if ours else process
            return Stray(top.pid, " ".join(top.cmdline()), ours)
        except (OSError, psutil.Error):
            continue  # it ended while we looked
    return None


def stop_stray(stray: Stray, timeout: float = 10.0) -> None:
    """SIGTERM the stray server (gunicorn stops its workers), SIGKILL what is left of it and
    its children after ``timeout``. Raises :class:`OpsCommandFailed` when a process survives,
    or when the stray is not a movierec server."""
    if not stray.ours:
        raise OpsCommandFailed(f"not stopping {stray.describe()}")
    try:
        top = psutil.Process(stray.pid)
        family = [top, *top.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    alive = family
    for how, wait in (("terminate", timeout), ("kill", 5.0)):
        for process in alive:
            _signal(process, how)
        alive = _wait_gone(alive, wait)
        if not alive:
            return
    raise OpsCommandFailed(f"processes {[p.pid for p in alive]} survived SIGKILL")


def _signal(process: psutil.Process, how: str) -> None:
    try:
        getattr(process, how)()
    except psutil.NoSuchProcess:
        pass


def _wait_gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Those of ``processes`` still running after ``timeout`` seconds. A zombie has ended:
    only its parent (whoever started it by hand) can collect its exit status."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in processes if _running(p)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
