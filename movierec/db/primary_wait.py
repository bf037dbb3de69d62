"""Waiting out a switch of the primary: a connection attempt that the database switch turns
away is made again, for a bounded time, instead of failing the request that needed it.

During a planned switchover (``db replica promote``) there is a moment of a few seconds when
the switch has no primary behind it: the old one is shutting down ("the database system is
shutting down"), or has come back as a standby that HAProxy still counts as the primary for
half a second (libpq refuses it under ``target_session_attrs=read-write``), or no member is
up and HAProxy closes the connection at once. Every request that arrived in that moment and
needed a new connection failed with a 503 (8 to 27 per switchover in BENCHMARKS.md), though
nothing had been sent for it yet. Connecting again is always safe, since no statement has
run: so the attempt is repeated every ``PAUSE`` seconds until the new primary answers, for
at most ``seconds`` (``Settings.database_connect_wait``).

What is *not* repeated: a statement, or a COMMIT whose connection went while it ran. Its work
may have been done; the caller gets :class:`DatabaseUnavailable` (the site: 503 with
Retry-After) and decides. Nor an attempt that nothing answered (connection refused, a
timeout): that is an outage, not a switch, and waiting would only delay the 503.

The window is shared by every attempt of the engine: it opens at the first attempt turned
away, and once it has passed with the primary still missing, later attempts fail at once
(one try each) until one gets through. A long outage then costs each request one attempt,
not ``seconds`` of a web worker's thread.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from movierec.db.errors import turned_away

PAUSE = 0.1  # seconds between attempts; HAProxy checks the members every 0.5 s
T = TypeVar("T")


class PrimaryWait:
    """Makes connection attempts, repeating those turned away for up to ``seconds``."""

    def __init__(
        self,
        seconds: float,
        pause: float = PAUSE,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.seconds = seconds
        self.pause = pause
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._since: float | None = None  # when attempts began to be turned away
        self._last = -math.inf  # the latest attempt turned away

    def connect(self, attempt: Callable[[], T]) -> T:
        """``attempt()``'s connection. Raises what the last attempt raised: at once when it
        was not turned away (see :func:`movierec.db.errors.turned_away`), else once the
        window has passed."""
        while True:
            try:
                found = attempt()
            except Exception as exc:
                if not turned_away(exc):
                    raise
                left = self._turned_away()
                if left <= 0:
                    raise
                self._sleep(min(self.pause, left))
                continue
            with self._lock:
                self._since = None
            return found

    def _turned_away(self) -> float:
        """Note an attempt turned away; the seconds the window still has."""
        now = self._clock()
        with self._lock:
            # No attempt for a whole window: whatever was failing then may have recovered
            # and failed anew since; this one gets a window of its own.
            if self._since is None or now - self._last > self.seconds:
                self._since = now
            self._last = now
            return self._since + self.seconds - now
