"""What the server knows about a user at request time: ratings, preferences, searched genres.

The model only knows ratings up to its training; the database knows the rest, so a movie
rated a minute ago is not recommended back. The server reads them in one statement
(:mod:`movierec.db.user_signals`), unless the caller sent them (``POST /recommend``, see
:func:`from_json`): the web reads them anyway with the user's taste version.
When the database does not answer, the server still answers from the model alone, and does
not try the database again for ``retry_after`` seconds so that every request does not wait on
a timeout.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, bindparam, select

from movierec.ai.base import Signals
from movierec.db import Database, Rating
from movierec.db.engines import POOL_SIZE
from movierec.db.fair_gate import FairGate
from movierec.db.user_signals import OTHER_COLUMNS, RATING_COLUMNS, signal_columns
from movierec.errors import BadInput, DatabaseUnavailable
from movierec.wire.recommender import MAX_RATINGS, MAX_WORDS, WORD_CHARS

log = logging.getLogger(__name__)


def _context_query(with_genres: bool) -> Select:
    """Everything :meth:`UserContextReader.read` needs in one statement (one round trip, one
    snapshot)."""
    user = bindparam("user_id")
    return select(*signal_columns(user, with_genres)).where(Rating.user_id == user)


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


def from_columns(found: Mapping[str, Any]) -> UserContext:
    """The context from :mod:`movierec.db.user_signals`' columns (the genre ones may be
    missing), as read from the database or sent as JSON (``last_rated_at`` a datetime there,
    epoch seconds here)."""
    movie_ids = found["movie_ids"] or ()
    ratings = tuple(zip(movie_ids, map(float, found["stars"] or ()), strict=True))
    last = found["last_rated_at"]
    return UserContext(
        rated=frozenset(movie_ids),
        genres=tuple(found.get("genres") or ()),
        from_database=True,
        ratings=ratings,
        liked=tuple(found.get("liked") or ()),
        searched_genres=tuple(dict.fromkeys(found.get("searched") or ())),
        last_rated_at=last.timestamp() if isinstance(last, datetime) else last,
    )


def from_json(body: object) -> UserContext:
    """The context a caller sent, as :func:`movierec.db.user_signals.as_json` writes it.
    Raises :class:`BadInput`."""
    if not isinstance(body, dict):
        raise BadInput("context must be a JSON object")
    missing = [name for name in (*RATING_COLUMNS, *OTHER_COLUMNS) if name not in body]
    if missing:
        raise BadInput(f"context lacks {', '.join(missing)}")
    unknown = sorted(set(body) - {*RATING_COLUMNS, *OTHER_COLUMNS})
    if unknown:  # the document's object is closed: a typo must not pass as an empty field
        raise BadInput(f"context has unknown fields: {', '.join(map(repr, unknown))[:200]}")
    movie_ids = _listed(body, "movie_ids", int, MAX_RATINGS)
    stars = _listed(body, "stars", float, MAX_RATINGS)
    if len(stars) != len(movie_ids):
        raise BadInput("context: movie_ids and stars must be as long as each other")
    # The ratings table's range; the sum is NaN or infinite when any star is.
    if stars and not (math.isfinite(sum(stars)) and 0.5 <= min(stars) and max(stars) <= 5):
        raise BadInput("context: stars must be between 0.5 and 5")
    last = body["last_rated_at"]
    if last is not None and not (_numbers([last]) and math.isfinite(last)):
        raise BadInput("context: last_rated_at must be epoch seconds or null")
    return from_columns(
        {
            "movie_ids": movie_ids,
            "stars": stars,
            "last_rated_at": last,
            "genres": _listed(body, "genres", str, MAX_WORDS),
            "liked": _listed(body, "liked", int, MAX_RATINGS),
            "searched": _listed(body, "searched", str, MAX_WORDS),
        }
    )


def _listed(body: Mapping[str, Any], name: str, kind: type, most: int) -> list:
    """``body[name]``: null or a list of at most ``most`` values of ``kind``."""
    values = body[name]
    if values is None:
        return []
    if not isinstance(values, list) or len(values) > most:
        raise BadInput(f"context: {name} must be a list of at most {most} values or null")
    if kind is int and not _integers(values):
        values = _integral(values)  # 46.0 for 46: JSON does not tell them apart
    if not _FITS[kind](values):
        raise BadInput(f"context: {name} must hold only {kind.__name__} values")
    return values


# Checks of a whole list, in C loops (map, min, max): a context holds hundreds of values,
# and a Python-level check of each one cost a sixth of the recommender's time per request.
def _integers(values: list) -> bool:
    return set(map(type, values)) <= {int} and (
        not values or (-(2**63) <= min(values) and max(values) < 2**63)
    )


def _integral(values: list) -> list:
    """``values`` with floats of no fraction made ints (the rare caller's list: any other
    value is left for :func:`_integers` to refuse)."""
    if not set(map(type, values)) <= {int, float}:
        return values
    return [int(v) if isinstance(v, float) and v.is_integer() else v for v in values]


def _numbers(values: list) -> bool:
    return set(map(type, values)) <= {int, float}


def _words(values: list) -> bool:
    return set(map(type, values)) <= {str} and max(map(len, values), default=0) <= WORD_CHARS


_FITS = {int: _integers, float: _numbers, str: _words}


class UserContextReader:
    """Reads :class:`UserContext` from the database; never raises for an unreachable one."""

    def __init__(
        self,
        database: Database | None,
        retry_after: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.database = database
        # One checkout per request, so a gate of the pool's size in front of it never waits
        # on itself; it makes the requests beyond the pool wait their turn (see FairGate).
        self._gate = FairGate(POOL_SIZE)
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
        return from_columns(row._mapping)  # the genre columns are there only when asked for

    def _read_row(self, database: Database, statement: Select, user_id: int) -> Row:
        """The statement's one row; read again when the pooled connection turned out dead (a
        restarted or failed-over server), as the pool has then dropped every old one."""

        def read() -> Row:
            with self._gate.entered(), database.autocommit(readonly=True) as conn:
                return conn.execute(statement, {"user_id": user_id}).one()

        try:
            return read()
        except DatabaseUnavailable as exc:
            if not exc.disconnected:
                raise
        return read()
