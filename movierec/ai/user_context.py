"""What the server reads about a user at request time: ratings, preferences, searched genres.

The model only knows ratings up to its training; the database knows the rest, so a movie
rated a minute ago is not recommended back. Both reads are primary-key lookups. When the
database does not answer, the server still answers from the model alone, and does not try the
database again for ``retry_after`` seconds so that every request does not wait on a timeout.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Float, Row, Select, bindparam, cast, func, select
from sqlalchemy.dialects.postgresql import aggregate_order_by

from movierec.ai.base import Signals
from movierec.db import Database, Preference, Rating, Search
from movierec.errors import DatabaseUnavailable

RECENT_SEARCHES = 20

log = logging.getLogger(__name__)


def _context_query(with_genres: bool) -> Select:
    """Everything :meth:`UserContextReader.read` needs in one statement (one round trip, one
    snapshot): the ratings as parallel arrays, and with ``with_genres`` the preferences and
    the genres of the latest searches, newest first."""
    user = bindparam("user_id")
    ratings = (
        select(
            func.array_agg(Rating.movie_id).label("movie_ids"),
            # float8, not numeric: no per-element conversion of the array when it is read.
            func.array_agg(cast(Rating.rating, Float)).label("stars"),
            func.max(Rating.rated_at).label("last_rated_at"),
        )
        .where(Rating.user_id == user)
        .subquery()
    )
    columns = [ratings.c.movie_ids, ratings.c.stars, ratings.c.last_rated_at]
    if with_genres:
        recent = (
            select(Search.genre, Search.searched_at)
            .where(Search.user_id == user, Search.genre.is_not(None))
            .order_by(Search.searched_at.desc())
            .limit(RECENT_SEARCHES)
            .subquery()
        )
        newest_first = aggregate_order_by(recent.c.genre, recent.c.searched_at.desc())
        mine = Preference.user_id == user
        columns += [
            select(Preference.genres).where(mine).scalar_subquery().label("genres"),
            select(Preference.movie_ids).where(mine).scalar_subquery().label("liked"),
            select(func.array_agg(newest_first)).scalar_subquery().label("searched"),
        ]
    return select(*columns)


_CONTEXT = _context_query(with_genres=False)
_CONTEXT_WITH_GENRES = _context_query(with_genres=True)


@dataclass(frozen=True)
class UserContext:
    rated: frozenset[int] = frozenset()
    genres: tuple[str, ...] = ()
    from_database: bool = False
    ratings: tuple[tuple[int, float], ...] = ()  # (movie_id, stars), all of them
    liked: tuple[int, ...] = ()  # preferences.movie_ids
    searched_genres: tuple[str, ...] = ()  # genres of the latest searches, newest first
    last_rated_at: float | None = None  # the newest rated_at (epoch seconds), if any

    def fingerprint(self) -> tuple:
        """What the answer for this user depends on besides the model and the request: the
        number of ratings and the newest rated_at (a new rating changes both), a hash of the
        ratings themselves (a changed or deleted one), favourites and genres. Part of the
        per-user result cache key, so no cached list outlives a change of these."""
        return (
            self.from_database, len(self.ratings), self.last_rated_at,
            hash(frozenset(self.ratings)), self.genres, self.liked, self.searched_genres,
        )  # fmt: skip

    def signals(self) -> Signals:
        """The context as fold-in signals; complete only when read from the database."""
        return Signals(
            ratings=self.ratings,
            liked=self.liked,
            genres=self.genres,
            searched_genres=self.searched_genres,
            complete=self.from_database,
        )


class UserContextReader:
    """Reads :class:`UserContext` from the database; never raises for an unreachable one."""

    def __init__(
        self,
        database: Database | None,
        retry_after: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.database = database
        self.retry_after = retry_after
        self._clock = clock
        self._down_until = 0.0

    def read(self, user_id: int, want_genres: bool) -> UserContext:
        """The user's ratings (and, when ``want_genres``, preferred genres, favourite movies
        and searched genres), or an empty context when there is no database or it does not
        answer."""
        if self.database is None or self._clock() < self._down_until:
            return UserContext()
        statement = _CONTEXT_WITH_GENRES if want_genres else _CONTEXT
        try:
            row = self._read_row(self.database, statement, user_id)
        except DatabaseUnavailable as exc:
            self._down_until = self._clock() + self.retry_after
            log.warning("answering from the model alone for %.0fs: %s", self.retry_after, exc)
            return UserContext()
        found = row._mapping  # the genre columns are there only when asked for
        ratings = tuple(
            zip(found["movie_ids"] or (), map(float, found["stars"] or ()), strict=True)
        )
        return UserContext(
            rated=frozenset(m for m, _ in ratings),
            genres=tuple(found.get("genres") or ()),
            from_database=True,
            ratings=ratings,
            liked=tuple(found.get("liked") or ()),
            searched_genres=tuple(dict.fromkeys(found.get("searched") or ())),
            last_rated_at=row.last_rated_at.timestamp() if row.last_rated_at else None,
        )

    def _read_row(self, database: Database, statement: Select, user_id: int) -> Row:
        """The statement's one row; read again when the pooled connection turned out dead (a
        restarted or failed-over server), as the pool has then dropped every old one."""

        def read() -> Row:
            with database.autocommit(readonly=True) as conn:
                return conn.execute(statement, {"user_id": user_id}).one()

        try:
            return read()
        except DatabaseUnavailable as exc:
            if not getattr(exc.__cause__, "connection_invalidated", False):
                raise
        return read()
