"""Popular movies, counted at most once a minute per process.

Counting every rating is the most expensive query the site runs, and the home page and the
recommender-down fallback both need it; a minute-old answer serves them equally well. The
count reads every partition of ``ratings``, so with a shard server down it fails: the last
answer is kept then (an hour-old list of popular movies is still one), and asked again every
``RETRY_SECONDS``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import cast

from flask import Flask, current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from movierec.db import ShardUnavailable
from movierec.db.schema import Rating
from movierec.web import catalog
from movierec.web.db import read_session

EXTENSION = "movierec.popular"
CANDIDATES = 500
TTL_SECONDS = 60.0
RETRY_SECONDS = 10.0


class PopularCache:
    def __init__(self, ttl: float = TTL_SECONDS):
        self.ttl = ttl
        self._lock = threading.Lock()
        self._movies: list[catalog.MovieItem] = []
        self._expires = 0.0

    def movies(self) -> list[catalog.MovieItem]:
        """The ``CANDIDATES`` most rated movies. Raises :class:`DatabaseUnavailable`, and
        :class:`ShardUnavailable` with a shard down and no earlier answer to keep."""
        with self._lock:  # one refresh at a time; the others wait for its answer
            if time.monotonic() >= self._expires:
                try:
                    with read_session() as session:
                        self._movies = catalog.popular(session, CANDIDATES)
                except ShardUnavailable:
                    if not self._movies:
                        raise
                    self._expires = time.monotonic() + RETRY_SECONDS
                    return self._movies
                self._expires = time.monotonic() + self.ttl
            return self._movies


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
