"""Movies to show a user: the recommender's picks with their titles, or a popular fallback.

"Cannot recommend" is a result here, never an error page: when no recommender answers, the
user gets popular movies in the genres they like, marked as ``limited``.

Answers are cached per worker (see :mod:`movierec.web.cache`): a user's picks while neither
the model version nor their taste version changes, a movie's similar movies per model version.
Limited and partial answers are not cached, so that a recovered recommender is used at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, cast

from flask import current_app
from flask import session as flask_session
from flask_login import current_user
from sqlalchemy import Connection, ScalarSelect, bindparam, func, select

from movierec.db.schema import NotInterested, Preference, Rating
from movierec.db.user_signals import as_json, signal_columns
from movierec.errors import NotFound
from movierec.web import cache, catalog, changes, popular
from movierec.web.ai_client import AIClient, AIUnavailable
from movierec.web.auth.sessions import ReadAlong, read_along_row
from movierec.web.db import connection, get_session, read_session
from movierec.web.users import DEMOTE_AFTER, Refusals, preferred_genres, refusal_columns

EXTENSION = "movierec.ai"


@dataclass(frozen=True)
class Picks:
    movies: tuple[catalog.MovieItem, ...]
    model_version: str | None = None
    # The recommender answered with its own fallback (e.g. a user it has no ratings for).
    fallback: bool = False
    reason: str | None = None
    # No recommender answered; these are popular movies chosen here.
    limited: bool = False

    @cached_property
    def approx_bytes(self) -> int:
        """What the picks hold (see :func:`~movierec.web.cache.approx_size`), computed once:
        the recommendations cache, the page and the derived HTML and JSON all keep them."""
        return cache.approx_size((self.movies, self.model_version, self.reason))


def ai_client() -> AIClient:
    return cast(AIClient, current_app.extensions[EXTENSION])


def _mine(column: Any, table: Any) -> ScalarSelect:
    """``column`` of ``table``'s rows of the user (a scalar subquery)."""
    return select(column).where(table.user_id == bindparam("user_id")).scalar_subquery()


# Built once: the statement's compiled form is then reused from SQLAlchemy's cache.
_TASTE = select(
    func.count(),
    func.max(Rating.rated_at),
    _mine(Preference.updated_at, Preference),
    _mine(func.count(), NotInterested),
    _mine(func.max(NotInterested.created_at), NotInterested),
).where(Rating.user_id == bindparam("user_id"))


# The taste version and, for a cache miss, the user's refusals and what the recommender
# reads about them (sent along so that it need not): one round trip for all three.
_TASTE_AND_SIGNALS = _TASTE.add_columns(*refusal_columns(), *signal_columns(bindparam("user_id")))
_REFUSALS = slice(len(_TASTE.selected_columns), len(_TASTE.selected_columns) + 2)


def taste_version(conn: Connection, user_id: int) -> tuple:
    """What the user's recommendations depend on besides the model: how many ratings they
    have, when they last rated, when they last changed their preferred genres, and how many
    movies they dismissed ("not interested") and when they last did.

    Any rating, re-rating or removal, and any dismissal or undo changes it. Read it from the
    primary (a replica may lag behind the rating that was just made): index lookups on the
    ratings' and the dismissals' primary keys.
    """
    return tuple(conn.execute(_TASTE, {"user_id": user_id}).one())


# For the views that start with for_user: read with the user's row when that is not cached.
TASTE_ALONG = ReadAlong(_TASTE_AND_SIGNALS, {"at_least": DEMOTE_AFTER})


def taste_and_signals(conn: Connection, user_id: int) -> tuple[tuple, Refusals, dict[str, Any]]:
    """:func:`taste_version`, :func:`~movierec.web.users.refusals` and the recommender's
    context (:func:`movierec.db.user_signals.as_json`) in one statement."""
    params = {"user_id": user_id, "at_least": DEMOTE_AFTER}
    row = conn.execute(_TASTE_AND_SIGNALS, params).one()
    return _taste_and_signals(row, row._mapping)


def _taste_and_signals(
    values: Sequence, named: Mapping[str, Any]
) -> tuple[tuple, Refusals, dict[str, Any]]:
    taste = tuple(values[: _REFUSALS.start])
    return taste, Refusals.of(values[_REFUSALS]), as_json(named)


def for_user(user_id: int, k: int) -> Picks:
    """Up to ``k`` movies for the user, never one they said they are not interested in.

    The recommender is told those movies (``exclude``) and the genres of at least
    :data:`~movierec.web.users.DEMOTE_AFTER` of them (``demote_genres``).
    Raises :class:`DatabaseUnavailable`.
    """
    store = cache.caches()
    key = (user_id, k)
    # Read with the user's row, when that came from the database in this request.
    along = read_along_row(user_id)
    # Taken before the database is read: a change heard of later makes the entry stale.
    stamp = along.stamp if along is not None else changes.now()
    model = ai_client().model_version()
    entry = store.recommendations.peek(key)
    if entry is not None and entry.model_version == model and _fresh(user_id, entry):
        hit = store.recommendations.get(key, valid=lambda found: found is entry)
        if hit is not None:  # else replaced or dropped just now: compare as below
            return hit.picks
    # Read before the recommender is asked: a rating made meanwhile makes the entry look
    # older than it is (refreshed next time), never newer.
    # The refusals and the recommender's context come with the taste version, though only a
    # miss needs them: a round trip fewer there, and none in the recommender.
    if along is not None:
        taste, said_no, context = _taste_and_signals(along.values, along.named)
    else:
        taste, said_no, context = taste_and_signals(connection(), user_id)
    _saw(taste)

    def current(found: cache.Recommended) -> bool:
        return found.taste_version == taste and found.model_version == model

    entry = store.recommendations.get(key, valid=current)
    if entry is not None:
        store.recommendations.put(key, replace(entry, stamp=stamp))
        return entry.picks
    unwanted = set(said_no.dismissed)
    try:
        answer = ai_client().recommend(
            user_id, k, exclude=said_no.dismissed, demote_genres=said_no.demoted_genres,
            context=context,
        )  # fmt: skip
    except AIUnavailable:
        session = get_session()
        liked = preferred_genres(session, user_id)
        movies = popular.for_user(session, user_id, liked, k + len(unwanted))
        kept = tuple(m for m in movies if m.id not in unwanted)[:k]
        return Picks(kept, limited=True, reason="recommender unavailable")
    # Also here: the recommender is sent the newest dismissals only, and may be older code.
    items = [i for i in answer.items if i.movie_id not in unwanted]
    movies = catalog.movies_by_ids(
        connection(),
        ((i.movie_id, i.score) for i in items),
        because={i.movie_id: i.because for i in items if i.because is not None},
        rows=cache.listed_movies,
    )
    picks = Picks(tuple(movies), answer.model_version, answer.fallback, answer.reason)
    if not answer.partial:
        store.ks.add(k)
        store.recommendations.put(key, cache.Recommended(model, taste, picks, stamp))
    return picks


def _fresh(user_id: int, entry: cache.Recommended) -> bool:
    """Whether ``entry`` is current without asking the database: this is not an API-token
    request (no session to carry what the user changed), the user's session has not changed
    their taste since it last compared (or never compared), and the change listener heard of
    no change since the entry's stamp."""
    if current_user.via_token:
        return False
    seen = flask_session.get(cache.TASTE)
    if seen is not None and seen != _digest(entry.taste_version):
        return False
    return changes.fresh(user_id, entry.stamp)


def _saw(taste: tuple) -> None:
    """Remember in the session the taste version this user's lists are now compared with,
    once the session carries a mark (a change it made, or an earlier comparison).

    A session that never changed the user's taste has nothing for other workers to catch up
    on (changes from elsewhere reach them by the change listener), so its cookie is left
    alone: before, every user's first list rewrote and re-signed it, 5 % of the web's CPU
    on a cold "for you" page."""
    if current_user.via_token:
        return
    seen = flask_session.get(cache.TASTE)
    if seen is not None and seen != (digest := _digest(taste)):
        flask_session[cache.TASTE] = digest


def _digest(taste: tuple) -> str:
    return hashlib.blake2b(repr(taste).encode(), digest_size=6).hexdigest()


def similar_to(movie_id: int, k: int) -> Picks:
    """Up to ``k`` movies like this one; ``limited`` and empty when no recommender answers.

    Raises :class:`DatabaseUnavailable`.
    """
    key = (movie_id, k, ai_client().model_version())
    store = cache.caches().similar
    found = store.get(key)
    if found is not None:
        return found
    try:
        answer = ai_client().similar(movie_id, k)
    except AIUnavailable:
        return Picks((), limited=True, reason="recommender unavailable")
    except NotFound:
        found = Picks((), reason="the recommender does not know this movie yet")
    else:
        items = ((i.movie_id, i.score) for i in answer.items if i.movie_id != movie_id)
        with read_session() as session:
            movies = catalog.movies_by_ids(session.connection(), items, rows=cache.listed_movies)
        found = Picks(tuple(movies), answer.model_version)
        if answer.partial:
            return found
    store.put(key, found)
    return found
