"""What the server reads about a user at request time: movies rated and genres preferred.

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

from sqlalchemy import select

from movierec.db import Database, Preference, Rating
from movierec.errors import DatabaseUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UserContext:
    rated: frozenset[int] = frozenset()
    genres: tuple[str, ...] = ()
    from_database: bool = False


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
        """The user's rated movies (and preferred genres when ``want_genres``), or an empty
        context when there is no database or it does not answer."""
        if self.database is None or self._clock() < self._down_until:
            return UserContext()
        try:
            with self.database.session(readonly=True) as session:
                rated = session.scalars(select(Rating.movie_id).where(Rating.user_id == user_id))
                rated = frozenset(rated)
                genres: tuple[str, ...] = ()
                if want_genres:
                    found = session.scalar(
                        select(Preference.genres).where(Preference.user_id == user_id)
                    )
                    genres = tuple(found or ())
        except DatabaseUnavailable as exc:
            self._down_until = self._clock() + self.retry_after
            log.warning("answering from the model alone for %.0fs: %s", self.retry_after, exc)
            return UserContext()
        return UserContext(rated, genres, from_database=True)
