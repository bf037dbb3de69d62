"""Test databases copied from the migrated template ahead of the tests that take them.

A copy of the schema (CREATE DATABASE ... TEMPLATE) costs 0.35-0.45 s here: 9.6 MB and about
400 relations, both strategies alike (measured 2026-12-07). Most of the suite's tests take a
database, so copied in each test's setup they spent about four minutes of the suite's
15-minute budget waiting for PostgreSQL. A thread copies the next ones while a test runs.
"""

from __future__ import annotations

import queue
import threading
import uuid

from movierec.db import LocalPostgres

AHEAD = 2  # copies kept ready: one taken while the next is being made
WAIT_S = 120.0  # for a copy, at most (a loaded machine's slowest copy is a few seconds)


class DatabasePool:
    """Copies of ``template`` on ``server``, made ahead by a thread; :meth:`take` one per test,
    drop it after. A copy that failed (the server restarting under a test, say) is made again
    in the taking test, which then fails with the server's own error if that fails too."""

    def __init__(self, server: LocalPostgres, template: str) -> None:
        self._server, self._template = server, template
        self._ready: queue.Queue[str | Exception] = queue.Queue(maxsize=AHEAD)
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._fill, name="test-databases", daemon=True)
        self._thread.start()

    def take(self) -> str:
        """The name of a fresh copy."""
        made = self._ready.get(timeout=WAIT_S)
        if isinstance(made, Exception):
            made = self._new_name()
            self._server.create_database(made, template=self._template)
        return made

    def close(self) -> None:
        """Stop copying and drop the copies nobody took."""
        self._closing.set()
        self._thread.join()
        while not self._ready.empty():
            made = self._ready.get_nowait()
            if isinstance(made, str):
                self._server.drop_database(made)

    def _new_name(self) -> str:
        return f"t_{uuid.uuid4().hex[:12]}"

    def _fill(self) -> None:
        while not self._closing.is_set():
            name = self._new_name()
            made: str | Exception
            try:
                self._server.create_database(name, template=self._template)
                made = name
            except Exception as exc:  # handed to the test that takes it
                made = exc
            while not self._closing.is_set():
                try:
                    self._ready.put(made, timeout=0.5)
                    break
                except queue.Full:
                    continue
            else:
                if isinstance(made, str):
                    self._server.drop_database(made)
