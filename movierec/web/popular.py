"""Popular movies, counted once for every web worker and read by each at most once a minute.

Counting every rating is the most expensive query the site runs, and the home page and the
recommender-down fallback both need it; a minute-old answer serves them equally well. The
last count is kept in the database (``popular_movies``, migration 0017) with when it was made
and how long it took. A worker reads it every ``ttl`` seconds; the worker that finds it due
counts again under an advisory lock and replaces it, and the others go on reading the last
one. Each worker used to count for itself: at 20M ratings (58 s a count, bench_scale at full
size) a restarted worker showed no popular movies for minutes (the first list 102 s after a
restart of the web instances; now at once when a count is kept), and every worker spent the
database that long.

A count is due ``ttl`` after the last. One that took more than ``SLOW_SECONDS`` (or outlasted
the statement timeout) is kept ``KEEP_PER_SECOND`` times as long as it took, so that the site
spends at most ~1/30 of a database core counting, and is made in a thread of its own with
``COUNT_TIMEOUT_MS`` while requests get the last list; a fast one is made by the request that
found it due. The count reads every partition of ``ratings``, so with a shard server down it
fails: the last list is kept then, and counting is tried again after ``RETRY_SECONDS``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from flask import Flask, current_app
from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.orm import Session

from movierec.db import ShardUnavailable
from movierec.db.errors import QueryTimeout
from movierec.db.schema import PopularMovie, Rating
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
LOCK_KEY = 0x706F70756C6172  # "popular": held by the transaction that counts


@dataclass(frozen=True)
class Counted:
    """The kept count: its movies (empty before the first), whether a new one is due, and
    whether the last one was slow (to be made aside)."""

    movies: list[catalog.MovieItem]
    due: bool
    slow: bool


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
        with self._lock:  # one look at a time; the others wait for its answer
            if time.monotonic() < self._expires:
                return self._movies
            with read_session() as session:
                kept = read_counted(session, self.ttl)
            self._movies = kept.movies or self._movies
            self._slow = self._slow or kept.slow
            if not kept.due:
                self._expires = time.monotonic() + self.ttl
            elif self._slow:
                self._count_aside()
            else:
                self._count_here()
            return self._movies

    def _count_here(self) -> None:
        try:
            self._counted(count_where_possible(self.ttl))
        except ShardUnavailable:
            if not self._movies:
                raise
            self._expires = time.monotonic() + RETRY_SECONDS
        except QueryTimeout:
            self._slow = True
            self._count_aside()

    def _counted(self, counted: tuple[list[catalog.MovieItem], float] | None) -> None:
        """Keep what this worker counted; ``None``: another counts, read its list soon."""
        if counted is None:
            self._expires = time.monotonic() + min(self.ttl, RETRY_SECONDS)
            return
        self._movies, seconds = counted
        self._expires = time.monotonic() + self.ttl
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
            with app.app_context():
                counted = count_where_possible(self.ttl, timeout_ms=COUNT_TIMEOUT_MS)
            with self._lock:
                self._counted(counted)
        except DatabaseUnavailable:
            pass  # the last list stays; tried again after RETRY_SECONDS
        finally:
            self._counting = False


def count_where_possible(
    ttl: float, timeout_ms: int | None = None
) -> tuple[list[catalog.MovieItem], float] | None:
    """:func:`count_and_keep` on the primary; with the primary down, a count on a replica for
    this worker alone (the site reads while its primary is down). Raises
    :class:`DatabaseUnavailable`."""
    try:
        with database().session() as session:
            _timeout(session, timeout_ms)
            return count_and_keep(session, ttl)
    except (ShardUnavailable, QueryTimeout):
        raise
    except DatabaseUnavailable:
        with database().session(readonly=True) as session:
            _timeout(session, timeout_ms)
            return _count(session)


def _timeout(session: Session, timeout_ms: int | None) -> None:
    if timeout_ms is not None:
        session.execute(text(f"SET LOCAL statement_timeout = {int(timeout_ms)}"))


def read_counted(session: Session, ttl: float) -> Counted:
    """The kept count, and whether a new one is due."""
    state = _state(session, ttl)
    if state is None:
        return Counted([], due=True, slow=False)
    due, slow = state
    return Counted(catalog.counted_popular(session), due=due, slow=slow)


def _state(session: Session, ttl: float) -> tuple[bool, bool] | None:
    """Whether a count is due and whether the last was slow, by the database's clock (the
    same for every worker); ``None`` before the first count."""
    row = session.execute(
        text(
            "SELECT now() > counted_at + make_interval(secs => CASE WHEN seconds > :slow "
            "THEN greatest(:ttl, :keep * seconds) ELSE :ttl END), seconds > :slow "
            "FROM popular_movies WHERE rank = 0"
        ),
        {"slow": SLOW_SECONDS, "ttl": ttl, "keep": KEEP_PER_SECOND},
    ).first()
    return None if row is None else (bool(row[0]), bool(row[1]))


def count_and_keep(session: Session, ttl: float) -> tuple[list[catalog.MovieItem], float] | None:
    """Count the most rated movies and replace the kept count with them, in ``session``'s
    transaction on the primary; how long the count took. ``None`` when another transaction
    counts (it holds the lock) or has just counted (a replica had not shown it yet)."""
    if not session.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": LOCK_KEY}):
        return None
    state = _state(session, ttl)
    if state is not None and not state[0]:
        return None
    movies, seconds = _count(session)
    now = session.scalar(select(func.now()))
    session.execute(delete(PopularMovie))
    if movies:
        session.execute(
            insert(PopularMovie),
            [
                {"rank": rank, "movie_id": movie.id, "ratings": movie.ratings or 0,
                 "average": movie.average or 0.0, "counted_at": now, "seconds": seconds}
                for rank, movie in enumerate(movies)
            ],
        )  # fmt: skip
    return movies, seconds


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
