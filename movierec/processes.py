"""Child processes the demo (and later the local cluster) starts, waits for and stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import requests

from movierec.errors import OpsCommandFailed


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
                [sys.executable, "-m", "movierec", *args],
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
