"""Popular movies, counted at most once a minute per process.

Counting every rating is the most expensive query the site runs, and the home page and the
recommender-down fallback both need it; a minute-old answer serves them equally well. The
count reads every partition of ``ratings``, so with a shard server down it fails: the last
answer is kept then (an hour-old list of popular movies is still one), and asked again every
``RETRY_SECONDS``.

At scale the count takes seconds (20M ratings, half of them on shard servers): past the
site's statement timeout it failed every time, and each page view waiting for it waited that
long. A count that took more than ``SLOW_SECONDS`` (or timed out) is from then on made in a
thread of its own with ``COUNT_TIMEOUT_MS`` while requests get the last list (none before the
first, like a shard down), and kept ``KEEP_PER_SECOND`` times as long as it took, so that each
process spends at most ~1/30 of a core counting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import cast

from flask import Flask, current_app
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from movierec.db import ShardUnavailable
from movierec.db.errors import QueryTimeout
from movierec.db.schema import Rating
from movierec.errors import DatabaseUnavailable
from movierec.web import catalog
from movierec.web.db import database, read_session

EXTENSION = "movierec.popular"
CANDIDATES = 500
TTL_SECONDS = 60.0
RETRY_SECONDS = 10.0
SLOW_SECONDS = 1.0
COUNT_TIMEOUT_MS = 600_000
KEEP_PER_SECOND = 30.0


class PopularCache:
    def __init__(self, ttl: float = TTL_SECONDS):
        self.ttl = ttl
        self._lock = threading.Lock()
        self._movies: list[catalog.MovieItem] = []
        self._expires = 0.0
        self._slow = False  # the count takes seconds: never on a request's path again
        self._counting = False

    def movies(self) -> list[catalog.MovieItem]:
        """The ``CANDIDATES`` most rated movies. Raises :class:`DatabaseUnavailable`, and
        :class:`ShardUnavailable` with a shard down and no earlier answer to keep."""
        with self._lock:  # one refresh at a time; the others wait for its answer
            if time.monotonic() < self._expires:
                return self._movies
            if self._slow:
                self._count_aside()
                return self._movies
            try:
                with read_session() as session:
                    self._counted(*_count(session))
            except ShardUnavailable:
                if not self._movies:
                    raise
                self._expires = time.monotonic() + RETRY_SECONDS
            except QueryTimeout:
                self._slow = True
                self._count_aside()
            return self._movies

    def _counted(self, movies: list[catalog.MovieItem], seconds: float) -> None:
        self._movies = movies
        self._expires = time.monotonic() + max(self.ttl, KEEP_PER_SECOND * seconds)
        self._slow = self._slow or seconds > SLOW_SECONDS

    def _count_aside(self) -> None:
        """Start the count in a thread of its own (under the lock), unless one runs."""
        if self._counting:
            return
        self._counting = True
        self._expires = time.monotonic() + RETRY_SECONDS  # until it ends, or if it fails
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        threading.Thread(target=self._count_in, args=(app,), daemon=True).start()

    def _count_in(self, app: Flask) -> None:
        try:
            with app.app_context(), database().session(readonly=True) as session:
                session.execute(text(f"SET LOCAL statement_timeout = {COUNT_TIMEOUT_MS}"))
                found = _count(session)
            with self._lock:
                self._counted(*found)
        except DatabaseUnavailable:
            pass  # the last list stays; tried again after RETRY_SECONDS
        finally:
            self._counting = False


def _count(session: Session) -> tuple[list[catalog.MovieItem], float]:
    started = time.monotonic()
    movies = catalog.popular(session, CANDIDATES)
    return movies, time.monotonic() - started


def init_app(app: Flask, ttl: float = TTL_SECONDS) -> None:
    app.extensions[EXTENSION] = PopularCache(ttl)


def top(n: int) -> list[catalog.MovieItem]:
    """The ``n`` most rated movies. Raises :class:`DatabaseUnavailable`."""
    return _cache().movies()[:n]


def for_user(
    session: Session, user_id: int, prefer_genres: Sequence[str], n: int
) -> list[catalog.MovieItem]:
    """Popular movies the user has not rated, those in ``prefer_genres`` first.

    Raises :class:`DatabaseUnavailable`.
    """
    candidates = _cache().movies()
    rated = set(
        session.scalars(
            select(Rating.movie_id).where(
                Rating.user_id == user_id, Rating.movie_id.in_([m.id for m in candidates])
            )
        )
    )
    liked = set(prefer_genres)
    unrated = [m for m in candidates if m.id not in rated]
    # sorted() is stable: within each group the order stays most-rated first.
    return sorted(unrated, key=lambda m: not liked.intersection(m.genres))[:n]


def _cache() -> PopularCache:
    return cast(PopularCache, current_app.extensions[EXTENSION])
