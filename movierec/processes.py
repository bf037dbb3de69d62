"""Child processes: external tools run to completion (:func:`run`), and the servers the demo
and the local cluster start in the background, wait for and stop (:class:`Child`).

:func:`run` is the one runner for tools (initdb, pg_ctl, pgBackRest, HAProxy): it lives here,
beside neither the database nor the director, so that the director's commands need not import
the database package (and with it SQLAlchemy and the driver) to start HAProxy.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import requests

from movierec.errors import OpsCommandFailed

# What a tool runs with: messages in English (they are parsed, and shown), and nothing of
# the caller's environment (a PGPASSWORD, say).
TOOL_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "LANG": "C"}


def last_lines(done: subprocess.CompletedProcess[str], lines: int = 3) -> str:
    """A failed tool's reason: the last ``lines`` lines of its stderr (else of its stdout)."""
    tail = (done.stderr or done.stdout).strip().splitlines()[-lines:]
    return " | ".join(tail) or "(no output)"


def run(
    name: str,
    argv: list[str],
    timeout: float = 60.0,
    *,
    user: str | None = None,
    reason: Callable[[subprocess.CompletedProcess[str]], str] = last_lines,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (a list, never a shell string) to completion from ``/``, with
    :data:`TOOL_ENV`, stdin closed and both streams captured; as the OS user ``user`` when
    given (through runuser: the caller is root). ``name`` is what messages call the command.

    Raises :class:`OpsCommandFailed` when it exits with an error (the exit code and
    ``reason(done)``, by default the end of stderr) or outlives ``timeout`` seconds.
    """
    program = Path(argv[0]).name
    if user is not None:
        argv = ["/usr/sbin/runuser", "-u", user, "--", *argv]
    try:
        done = subprocess.run(
            argv,
            cwd="/",
            env=TOOL_ENV,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise OpsCommandFailed(f"{name} did not finish within {timeout:.0f} s") from exc
    if done.returncode != 0:
        exited = f"{program} exited with {done.returncode}"
        said = exited if name == program else f"{name} failed ({exited})"
        raise OpsCommandFailed(f"{said}: {reason(done)}")
    return done


def movierec_command(args: Sequence[str]) -> list[str]:
    """The command line of ``movierec *args`` in a new process of this Python.

    ``-P``: without it, ``python -m`` puts the working directory first on the path, and a
    ``movierec`` directory there (a checkout, an old tree unpacked to compare against) is what
    the servers would run, whatever the environment's package or ``PYTHONPATH`` says. That
    happened: benches meant to compare an old tree's servers with today's ran today's on both
    sides, as they were started from a checkout.
    """
    return [sys.executable, "-P", "-m", "movierec", *args]


@dataclass
class Child:
    """A ``movierec`` sub-command running in the background, its output in ``log``."""

    name: str
    process: subprocess.Popen
    log: Path
    health_url: str

    @classmethod
    def start(
        cls,
        name: str,
        args: list[str],
        log: Path,
        health_url: str,
        env: Mapping[str, str],
        base_env: Mapping[str, str] | None = None,
    ) -> Child:
        """``env`` is added to ``base_env`` (by default this process's environment)."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            process = subprocess.Popen(
                movierec_command(args),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**(os.environ if base_env is None else base_env), **env},
                start_new_session=True,  # Ctrl-C reaches the demo, which stops us in order
            )
        return cls(name, process, log, health_url)

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Poll ``health_url`` until it answers 200. Raises :class:`OpsCommandFailed`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise OpsCommandFailed(
                    f"{self.name} exited with {self.process.returncode}: {self.log_tail()}"
                )
            try:
                if requests.get(self.health_url, timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise OpsCommandFailed(f"{self.name} not healthy after {timeout:.0f} s: {self.log_tail()}")

    def log_tail(self, lines: int = 3) -> str:
        text = self.log.read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:]) or "(no output)"

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group (gunicorn master and workers), SIGKILL if it lingers."""
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout)


def stop_pid(
    pid: int,
    alive: Callable[[], bool],
    steps: tuple[tuple[signal.Signals, float], ...],
) -> bool:
    """Send ``pid`` each signal of ``steps`` in turn, waiting up to its seconds for
    ``alive()`` to turn False; whether it is gone at the end."""
    for sig, wait in steps:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not alive():
            break
    return not alive()
