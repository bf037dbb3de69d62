"""What this worker has heard of users' changes, so that a cache hit needs no database query.

Each worker follows the primary's change notifications (:mod:`movierec.db.notifications`)
from its first request on. Cached values are *stamped* with :func:`now` taken before the
database was read for them; :func:`fresh` then tells whether anything of that user was
heard of since. Notifications arrive a moment after the writing transaction commits, and only
while the listener is connected, so:

* while it is not connected (or before it first is), nothing is fresh: callers check the
  database as they would without a cache;
* on every (re)connection everything stamped before counts as changed (notifications sent
  meanwhile are lost);
* a user's own writes must not wait for the notification: the worker that took the write
  tells its caches at once, and the user's session carries a marker (see
  :mod:`movierec.web.picks`) that makes the next request check the database, whichever
  worker serves it. Only another session of the same user can see a list that is a few
  milliseconds old.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import cast

from flask import Flask, current_app

from movierec.db.notifications import EVERYONE, Listener

EXTENSION = "movierec.changes"
REMEMBERED_USERS = 100_000


class ChangeLog:
    """The last change heard of per user, as a count of notifications (an *epoch*).

    Remembers the latest ``remembered`` users; a user forgotten counts as changed when the
    newest forgotten change was (never fresher than the truth).
    """

    def __init__(self, remembered: int = REMEMBERED_USERS):
        self._remembered = remembered
        self._lock = threading.Lock()
        self._epoch = 0
        self._changed: OrderedDict[int, int] = OrderedDict()
        self._floor = 0  # everything stamped before this counts as changed
        self.listening = False

    def now(self) -> int:
        """The stamp for a value about to be read from the database."""
        return self._epoch

    def fresh(self, user_id: int, stamp: int) -> bool:
        """Whether nothing of the user was heard of since ``stamp`` (False when deaf)."""
        if not self.listening:
            return False
        with self._lock:
            return max(self._floor, self._changed.get(user_id, 0)) <= stamp

    def heard(self, payload: str) -> None:
        with self._lock:
            self._epoch += 1
            if payload == EVERYONE or not payload.isdigit():
                self._everyone()
                return
            user_id = int(payload)
            self._changed[user_id] = self._epoch
            self._changed.move_to_end(user_id)
            while len(self._changed) > self._remembered:
                _, epoch = self._changed.popitem(last=False)
                self._floor = max(self._floor, epoch)

    def changed_here(self, user_id: int) -> None:
        """This worker changed the user: what it stamped of them before is stale now,
        without waiting for the notification."""
        self.heard(str(user_id))

    def connected(self, listening: bool) -> None:
        with self._lock:
            if listening:
                self._epoch += 1
                self._everyone()
            self.listening = listening

    def _everyone(self) -> None:
        self._floor = self._epoch
        self._changed.clear()


class Changes:
    """A worker's :class:`ChangeLog` and the listener that feeds it (started on first use,
    so that it runs in the worker process, not in a parent that forks)."""

    def __init__(self, database_url: str):
        self.log = ChangeLog()
        self.listener = Listener(database_url, self.log.heard, self.log.connected)

    def started(self) -> ChangeLog:
        self.listener.start()
        return self.log


def init_app(app: Flask, database_url: str) -> None:
    app.extensions[EXTENSION] = Changes(database_url)


def close(app: Flask) -> None:
    changes = app.extensions.get(EXTENSION)
    if changes is not None:
        changes.listener.stop()


def log() -> ChangeLog:
    return cast(Changes, current_app.extensions[EXTENSION]).started()


def now() -> int:
    return log().now()


def fresh(user_id: int, stamp: int) -> bool:
    return log().fresh(user_id, stamp)


def changed_here(user_id: int) -> None:
    log().changed_here(user_id)
