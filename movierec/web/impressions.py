"""Recording what the site recommended, for online evaluation (:mod:`movierec.db.online_eval`).

Called when a user's list is computed (a cache miss, which already asked the recommender),
never for a kept copy: a list shown again unchanged tells nothing new. Only the fraction
``impression_sample`` of users is recorded (chosen by user id).

The request only appends the row to its worker's queue: a thread of the worker writes the
queue every :data:`INTERVAL` seconds in one multi-row INSERT, so a page pays no round trip
and the database one statement per batch, not one per list. The cost is bounded: at most
:data:`BOUND` rows wait (more are dropped and counted in ``dropped``), and a failed write is
logged and dropped, never retried into a pile. Each row carries the time the list was shown,
so a rating made before the batch is written still counts as after it. What waits when a
worker dies (at most :data:`INTERVAL` seconds of lists) is lost; a clean exit writes it.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

from flask import Flask, current_app
from sqlalchemy.exc import SQLAlchemyError

from movierec.db import Database
from movierec.db.online_eval import record_many, sampled
from movierec.errors import MovierecError
from movierec.web.db import EXTENSION as DB_EXTENSION

log = logging.getLogger(__name__)
EXTENSION = "movierec.impressions"
FALLBACK = "popular (fallback)"
INTERVAL = 1.0
BOUND = 10_000


class Recorder:
    """One web worker's queue of impressions and the thread that writes it."""

    def __init__(self, database: Database, interval: float = INTERVAL, bound: int = BOUND):
        self.database = database
        self.interval = interval
        self.bound = bound
        self.dropped = 0
        self.written = 0
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._pid: int | None = None  # the process whose thread runs (gunicorn forks)

    def add(self, user_id: int, model_version: str, movie_ids: Sequence[int]) -> None:
        row = {
            "user_id": user_id,
            "model_version": model_version,
            "movie_ids": list(movie_ids),
            "shown_at": datetime.now(UTC),
        }
        with self._lock:
            if len(self._rows) >= self.bound:
                self.dropped += 1
                return
            self._rows.append(row)
            if self._pid != os.getpid():
                self._start()

    def flush(self) -> int:
        """Write what waits now, in one statement; the rows written (0 after a failure)."""
        with self._lock:
            rows, self._rows = self._rows, []
        if not rows:
            return 0
        try:
            with self.database.autocommit() as conn:
                record_many(conn, rows)
        except (MovierecError, SQLAlchemyError) as exc:
            log.warning("%d impressions not recorded (%s)", len(rows), type(exc).__name__)
            return 0
        with self._lock:
            self.written += len(rows)
        return len(rows)

    def close(self) -> None:
        self._stop = True
        self._wake.set()
        self.flush()

    def _start(self) -> None:
        self._pid = os.getpid()
        threading.Thread(target=self._run, name="impressions", daemon=True).start()
        atexit.register(self.flush)

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self.interval)
            self.flush()


def init_app(app: Flask) -> None:
    app.extensions[EXTENSION] = Recorder(app.extensions[DB_EXTENSION])


def recorder(app: Flask | None = None) -> Recorder:
    return cast(Recorder, (app or current_app).extensions[EXTENSION])


def shown(
    user_id: int, model_version: str | None, movie_ids: Sequence[int], fallback: bool = False
) -> None:
    """Queue that ``movie_ids`` were recommended to the user by ``model_version``, if the
    user is sampled and there is something to score (a model answered, a non-empty list).
    The recommender's own fallback (popular movies, for a user it cannot score) is recorded
    as :data:`FALLBACK`: a yardstick beside the model versions, not part of their figures."""
    if not movie_ids or not model_version:
        return
    found = recorder()
    if not sampled(user_id, found.database.settings.impression_sample):
        return
    found.add(user_id, FALLBACK if fallback else model_version, movie_ids)
