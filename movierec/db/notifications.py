"""The primary's change notifications: which users' data just changed.

Triggers (migration 0006) on ``users``, ``ratings``, ``preferences`` and ``not_interested``
send ``NOTIFY movierec_user_changes, '<user id>'`` for every row written, delivered when the
writing transaction commits (PostgreSQL sends one notification per distinct user per
transaction). A bulk load skips the row triggers and sends :data:`EVERYONE` instead.

Caches that follow the notifications (the web workers' user and recommendation caches) can
then serve without asking the database whether what they hold is still current. They must
stop trusting themselves while the listener is not connected: notifications sent meanwhile are
lost, so :class:`Listener` reports each (re)connection, and its loss, to its owner.
"""

from __future__ import annotations

import logging
import os
import select
import threading
from collections.abc import Callable

import psycopg
from psycopg import sql

from movierec.db.engines import libpq_conninfo

CHANNEL = "movierec_user_changes"
# The payload that stands for "any user may have changed" (bulk loads).
EVERYONE = "*"
log = logging.getLogger(__name__)


def notify_everyone(cur: psycopg.Cursor) -> None:
    """Tell every listener, when ``cur``'s transaction commits, that any user may have
    changed (for writes made with the row triggers switched off)."""
    cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, EVERYONE))


class Listener:
    """Follows :data:`CHANNEL` on the server at ``url`` in a daemon thread.

    ``on_change`` gets each payload (a user id as text, or :data:`EVERYONE`); ``on_state`` gets
    True once listening (again) and False when the connection is lost. Reconnects every
    ``retry_seconds`` until :meth:`stop`. The thread sleeps in ``select`` on the connection's
    socket: a server that goes away wakes it at once (end of file), one that silently drops
    off the network within about 10 s (TCP keepalives), and :meth:`stop` through a pipe.
    """

    def __init__(
        self,
        url: str,
        on_change: Callable[[str], None],
        on_state: Callable[[bool], None],
        retry_seconds: float = 1.0,
    ):
        self.url = libpq_conninfo(url, "movierec-listener")
        self._on_change, self._on_state = on_change, on_state
        self._retry = retry_seconds
        self._stopping = threading.Event()
        self._wake_read, self._wake_write = os.pipe()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def start(self) -> None:
        """Start listening (in the background); nothing happens if already started."""
        if self._thread is not None:  # called on every cache lookup: no lock once started
            return
        with self._start_lock:
            if self._thread is not None or self._stopping.is_set():
                return
            self._thread = threading.Thread(target=self._run, name="change-listener", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening and close the connection; waits up to ``timeout`` seconds."""
        with self._start_lock:
            if self._stopping.is_set():
                return
            self._stopping.set()
            os.write(self._wake_write, b"x")
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        if thread is None or not thread.is_alive():
            os.close(self._wake_read)
            os.close(self._wake_write)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._listen()
            except psycopg.Error as exc:
                log.warning("change notifications lost, retrying: %s", str(exc).strip())
            finally:
                self._on_state(False)
            self._stopping.wait(self._retry)

    def _listen(self) -> None:
        with psycopg.connect(self.url, autocommit=True, **_CONNECT) as conn:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
            self._on_state(True)
            pgconn = conn.pgconn
            while not self._stopping.is_set():
                ready, _, _ = select.select([pgconn.socket, self._wake_read], [], [])
                if pgconn.socket in ready:
                    pgconn.consume_input()  # raises when the server has gone
                    while (notice := pgconn.notifies()) is not None:
                        self._on_change(notice.extra.decode())


_CONNECT = {  # connect_timeout is in the conninfo
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
}
