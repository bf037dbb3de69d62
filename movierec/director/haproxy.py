"""Talking to HAProxy: the binary (argument lists, timeout, one-line errors), its Unix sockets,
and its processes.

HAProxy runs in master-worker mode (``-W``): the master (pid in the pid file) re-executes
itself on SIGUSR2 with the new configuration, forks a new worker and hands it the listening
sockets, then asks the old worker to finish its in-flight requests and exit.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from movierec.errors import OpsCommandFailed
from movierec.processes import run

HAPROXY_CANDIDATES = ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy")
_ALERT = re.compile(r"^\[ALERT\]\s+\(\d+\)\s*:\s*")


def haproxy_binary() -> Path:
    """The haproxy executable (``MOVIEREC_HAPROXY`` overrides the search).

    Raises :class:`OpsCommandFailed` when it is not installed.
    """
    override = os.environ.get("MOVIEREC_HAPROXY")
    candidates = [override] if override else [*HAPROXY_CANDIDATES, shutil.which("haproxy")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise OpsCommandFailed("haproxy not found; install the Debian package haproxy")


def _reason(done: subprocess.CompletedProcess[str]) -> str:
    """The line that explains a failure: HAProxy's first ALERT without its prefix (later ones
    only summarise: "Fatal errors found", "Exiting"), else the last line of output."""
    output = done.stderr + "\n" + done.stdout
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    alerts = [_ALERT.sub("", line) for line in lines if line.startswith("[ALERT]")]
    return alerts[0] if alerts else (lines[-1] if lines else "(no output)")


def run_haproxy(args: list[str], what: str = "haproxy", timeout: float = 20.0) -> str:
    """Run ``haproxy args...`` and return its stderr (where HAProxy writes its notices).

    Raises :class:`OpsCommandFailed` with the exit code and HAProxy's reason on failure, and
    when it does not finish within ``timeout`` seconds (:func:`movierec.processes.run`).
    """
    return run(what, [str(haproxy_binary()), *args], timeout, reason=_reason).stderr


def socket_command(path: Path, command: str, timeout: float = 3.0) -> str:
    """Send one command to an HAProxy CLI socket and return the whole answer.

    Raises :class:`OpsCommandFailed` when the socket cannot be reached or does not answer.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
            sock.sendall(command.encode() + b"\n")
            # Without the half-close the master CLI waits for a further command.
            sock.shutdown(socket.SHUT_WR)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except OSError as exc:
            raise OpsCommandFailed(
                f"HAProxy socket {path} did not answer {command.split()[0]!r}: "
                f"{exc.strerror or exc}"
            ) from exc
    return b"".join(chunks).decode(errors="replace")


def read_pid(pid_file: Path) -> int | None:
    """The pid in ``pid_file``, or None when there is no usable one."""
    try:
        return int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs. A zombie counts as gone: a daemon's dead master may linger as one
    when nothing reaps orphans (containers whose init does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # Field 3, after the parenthesised command name (which may itself contain spaces).
    return stat.rpartition(")")[2].split()[0] != "Z"


@dataclass(frozen=True)
class MasterInfo:
    """The master's ``show proc``: reload counters and the pids of current and old workers."""

    pid: int
    reloads: int
    failed_reloads: int
    workers: tuple[int, ...]
    old_workers: tuple[int, ...]


def parse_show_proc(text: str) -> MasterInfo:
    """Parse the master CLI's ``show proc``. Raises :class:`OpsCommandFailed` on a surprise."""
    section = "master"
    master: tuple[int, int, int] | None = None
    workers: list[int] = []
    old: list[int] = []
    for line in text.splitlines():
        if line.startswith("# "):
            section = line[2:].strip()
            continue
        fields = line.split()
        if not fields or line.startswith("#") or not fields[0].isdigit():
            continue
        if len(fields) > 1 and fields[1] == "master":
            failed = re.search(r"\[failed:\s*(\d+)\]", line)
            master = (int(fields[0]), int(fields[2]), int(failed.group(1)) if failed else 0)
        elif section == "workers":
            workers.append(int(fields[0]))
        elif section == "old workers":
            old.append(int(fields[0]))
    if master is None:
        raise OpsCommandFailed(f"unexpected answer to `show proc`: {text.strip()[:200]!r}")
    return MasterInfo(master[0], master[1], master[2], tuple(workers), tuple(old))


def show_proc(master_socket: Path) -> MasterInfo:
    """Ask the master which workers it runs. Raises :class:`OpsCommandFailed`."""
    return parse_show_proc(socket_command(master_socket, "show proc"))
