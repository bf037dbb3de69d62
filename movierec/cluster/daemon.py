"""Long-running helper processes of the local cluster (etcd, Patroni): start one in a session
of its own with its output in a log file, remember it in a pid file, tell whether it still
runs, and stop exactly it.

The pid file holds the pid and the kernel's start time of that pid, so a pid the kernel has
since given to another program is never signalled (as :mod:`movierec.cluster.members` does
for the web and AI servers).
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from movierec.cluster.members import start_time
from movierec.db.tools import SERVER_USER, running_as_root
from movierec.errors import OpsCommandFailed
from movierec.processes import stop_pid

# What the helpers see of our environment: enough to run, nothing of the caller's secrets.
_ENV_KEYS = ("PATH", "LANG", "LC_ALL", "TZ")
# Popen handles of the daemons this very process started: kept (a dropped handle of a running
# child warns) and polled, so an ended one does not linger as a zombie.
_STARTED: dict[int, subprocess.Popen] = {}


@dataclass(frozen=True)
class Daemon:
    """A background process known by its pid file ``pid_file``."""

    name: str
    pid_file: Path
    log_file: Path

    def pid(self) -> int | None:
        """The pid of the recorded process while that very process runs, else None."""
        try:
            data = json.loads(self.pid_file.read_text())
            pid, started = int(data["pid"]), data["started"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return pid if start_time(pid) == started else None

    def running(self) -> bool:
        return self.pid() is not None

    def start(self, argv: list[str], as_server_user: bool = False) -> int:
        """Start ``argv`` in a new session (signals to our terminal do not reach it), its
        stdout and stderr appended to :attr:`log_file`; return its pid. With
        ``as_server_user`` it runs as the PostgreSQL OS user when we are root (Patroni starts
        PostgreSQL, which refuses root). Raises :class:`OpsCommandFailed` when it already runs
        or cannot be started."""
        if self.running():
            raise OpsCommandFailed(f"{self.name} already runs (pid {self.pid()})")
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        env = {k: os.environ[k] for k in _ENV_KEYS if k in os.environ}
        env.setdefault("LANG", "C.UTF-8")
        user = SERVER_USER if as_server_user and running_as_root() else None
        with self.log_file.open("ab") as out:
            try:
                process = subprocess.Popen(
                    argv,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    cwd="/",
                    user=user,
                    group=user,
                    start_new_session=True,
                )
            except OSError as exc:
                raise OpsCommandFailed(f"cannot start {self.name}: {exc}") from exc
        _STARTED[process.pid] = process
        started = start_time(process.pid)
        self.pid_file.write_text(json.dumps({"pid": process.pid, "started": started}) + "\n")
        return process.pid

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM the process, SIGKILL it after ``timeout``; False when it did not run.

        Raises :class:`OpsCommandFailed` when it survives SIGKILL.
        """
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False

        def running() -> bool:
            _reap(pid)
            return self.running()

        if not stop_pid(pid, running, ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0))):
            raise OpsCommandFailed(f"{self.name} (pid {pid}) survived SIGKILL")
        _reap(pid)  # it may have turned into a zombie after the last look
        self.pid_file.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 3) -> str:
        try:
            text = self.log_file.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:]) or "(empty log)"


@atexit.register
def _reap_all() -> None:
    """At exit, collect the daemons that ended meanwhile (stopped by another command, say):
    a handle never asked would report them as still running."""
    for pid in list(_STARTED):
        _reap(pid)


def _reap(pid: int) -> None:
    """Collect the exit status of ``pid`` once it has ended, when this process started it
    (else its parent, or init, does); a zombie would still count as running."""
    process = _STARTED.get(pid)
    if process is not None and process.poll() is not None:
        del _STARTED[pid]
