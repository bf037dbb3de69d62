"""Helpers for the director tests: stand-in backends, HTTP calls, a background request loop."""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from movierec import director

STANDIN = Path(__file__).with_name("standin.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(port: int, path: str = "/", headers: dict | None = None) -> tuple[int, str]:
    """One request on a fresh connection (so every request is a new connect to the director)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def wait_until(predicate, timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout} s")


@dataclass
class Standin:
    """A stand-in web instance in its own process, so killing it is a real crash."""

    name: str
    port: int
    process: subprocess.Popen

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(5)

    def set_healthy(self, healthy: bool) -> None:
        assert get(self.port, "/_up" if healthy else "/_down")[0] == 200


def spawn_standins(names: list[str]) -> list[Standin]:
    """Start one stand-in per name (in parallel) and wait until each answers /healthz."""
    started = []
    for name in names:
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, str(STANDIN), name, str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append(Standin(name, port, process))
    for item in started:

        def answers(item=item) -> bool:
            try:
                return get(item.port, "/healthz")[0] == 200
            except OSError:
                return False

        wait_until(answers, 10, f"stand-in {item.name}")
    return started


@dataclass
class RequestLoop:
    """Requests through the director from a background thread until stopped (at most
    ``limit``), each on a new connection; records who answered and every failure."""

    port: int
    limit: int = 5000
    served: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.is_set() and len(self.served) + len(self.failures) < self.limit:
            try:
                status, body = get(self.port)
            except OSError as exc:
                self.failures.append(repr(exc))
                continue
            if status == 200:
                self.served.append(body)
            else:
                self.failures.append(f"HTTP {status}")

    def __enter__(self) -> RequestLoop:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(10)


def start_director(settings, primaries, backups=(), name="d1", **options):
    backends = [director.Backend(s.name, "127.0.0.1", s.port) for s in primaries]
    backends += [director.Backend(s.name, "127.0.0.1", s.port, backup=True) for s in backups]
    state = director.DirectorState(name, free_port(), tuple(backends), **options)
    director.start(settings, state)
    return state


def statuses(settings, name="d1") -> dict[str, str]:
    return {b.name: b.status for b in director.status(settings, name).backends}


def wait_statuses(settings, expected: dict[str, str], timeout: float = 5.0) -> None:
    def reached() -> bool:
        current = statuses(settings)
        return all(current[k] == v for k, v in expected.items())

    wait_until(reached, timeout, f"backend statuses {expected}")
