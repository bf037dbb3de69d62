"""Movies to show a user: the recommender's picks with their titles, or a popular fallback.

"Cannot recommend" is a result here, never an error page: when no recommender answers, the
user gets popular movies in the genres they like, marked as ``limited``.

Answers are cached per worker (see :mod:`movierec.web.cache`): a user's picks while neither
the model version nor their taste version changes, a movie's similar movies per model version.
Limited and partial answers are not cached, so that a recovered recommender is used at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, cast

from flask import current_app
from sqlalchemy import Connection, ScalarSelect, bindparam, func, select

from movierec.db.schema import NotInterested, Preference, Rating
from movierec.db.user_signals import as_json, signal_columns
from movierec.errors import NotFound
from movierec.web import cache, catalog, changes, impressions, popular
from movierec.web.ai_client import AIAnswer, AIClient, AIUnavailable
from movierec.web.auth.sessions import WithUser, read_with_user
from movierec.web.bounded_cache import approx_size
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
        """What the picks hold (see :func:`~movierec.web.bounded_cache.approx_size`), once:
        the recommendations cache, the page and the derived HTML and JSON all keep them."""
        return approx_size((self.movies, self.model_version, self.reason))


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


# For the views that start with for_user: the user's row with their taste, when it must be
# read (see taste_with_user).
_TASTE_WITH_USER = WithUser(_TASTE_AND_SIGNALS, {"at_least": DEMOTE_AFTER})

# What a user's taste is read with: what a new list needs.
Taste = cache.Taste[tuple[Refusals, dict[str, Any]]]


def read_taste(conn: Connection, user_id: int) -> Taste:
    """:func:`taste_version`, and with it, for a list not kept, what the recommender is
    told: the user's refusals (:func:`~movierec.web.users.refusals`) and its context
    (:func:`movierec.db.user_signals.as_json`), in one statement (on the primary: see
    :func:`taste_version`); stamped with the change listener's epoch taken before. Raises
    :class:`DatabaseUnavailable`."""
    stamp = changes.now()
    params = {"user_id": user_id, "at_least": DEMOTE_AFTER}
    row = conn.execute(_TASTE_AND_SIGNALS, params).one()
    return _taste(user_id, stamp, row, row._mapping)


def taste_with_user() -> Taste | None:
    """:func:`read_taste` for the session's user, in the same statement as the user's own row
    when the login must read that row from the database (a worker's first request of them,
    for one): a round trip fewer for a view that starts with :func:`for_user`, which calls
    this before anything asks for ``current_user``. None when the login reads no row (or
    nobody is logged in with a session). Raises :class:`DatabaseUnavailable`."""
    read = read_with_user(_TASTE_WITH_USER)
    return None if read is None else _taste(read.user_id, read.stamp, read.values, read.named)


def rating_in(taste: Taste, movie_id: int) -> float | None:
    """The user's rating of ``movie_id`` among the ratings read with ``taste`` (all of them,
    from the primary, as :func:`movierec.web.users.rating_of` reads it); None if unrated."""
    context = taste.read_with[1]
    for rated, stars in zip(context["movie_ids"] or (), context["stars"] or (), strict=True):
        if rated == movie_id:
            return stars
    return None


def _taste(user_id: int, stamp: int, values: Sequence, named: Mapping[str, Any]) -> Taste:
    version = tuple(values[: _REFUSALS.start])
    return cache.Taste(user_id, version, stamp, (Refusals.of(values[_REFUSALS]), as_json(named)))


def for_user(user_id: int, k: int, taste: Taste | None = None, record: bool = False) -> Picks:
    """Up to ``k`` movies for the user: their kept list while it is current, else the
    recommender's (kept for next time), else popular movies in their genres (``limited``);
    never one they said they are not interested in.

    The recommender is told those movies (``exclude``) and the genres of at least
    :data:`~movierec.web.users.DEMOTE_AFTER` of them (``demote_genres``). ``taste``: the
    user's, when :func:`taste_with_user` read it already. ``record``: the list is shown as
    it is, so a freshly computed one is recorded for online evaluation
    (:mod:`movierec.web.impressions`). Raises :class:`DatabaseUnavailable`.
    """
    lists = cache.caches().lists
    known = taste if taste is not None and taste.user_id == user_id else None
    model = ai_client().model_version()
    found = lists.find(user_id, k, model, lambda: known or read_taste(connection(), user_id))
    if found.picks is not None:
        return found.picks
    said_no, context = found.taste.read_with
    try:
        # The list's predicted stars come with it (one call) and are kept with it.
        answer = ai_client().recommend(
            user_id, k, exclude=said_no.dismissed, demote_genres=said_no.demoted_genres,
            context=context, stars=True,
        )  # fmt: skip
    except AIUnavailable:
        return _popular(user_id, k, said_no)
    picks = _picks(answer, said_no)
    if not answer.partial:
        lists.keep(found, picks)
    if record:
        impressions.shown(
            user_id, picks.model_version, [m.id for m in picks.movies], picks.fallback
        )
    return picks


def _popular(user_id: int, k: int, said_no: Refusals) -> Picks:
    """Popular movies in the user's genres, none they dismissed: when no recommender answers."""
    session = get_session()
    liked = preferred_genres(session, user_id)
    movies = popular.for_user(session, user_id, liked, k + len(said_no.dismissed))
    unwanted = set(said_no.dismissed)
    kept = tuple(m for m in movies if m.id not in unwanted)[:k]
    return Picks(kept, limited=True, reason="recommender unavailable")


def _picks(answer: AIAnswer, said_no: Refusals) -> Picks:
    """The recommender's answer as movies with their titles, the dismissed ones left out
    (also here: it is sent the newest dismissals only, and may be older code)."""
    unwanted = set(said_no.dismissed)
    items = [i for i in answer.items if i.movie_id not in unwanted]
    movies = catalog.movies_by_ids(
        connection(),
        ((i.movie_id, i.score) for i in items),
        because={i.movie_id: i.because for i in items if i.because is not None},
        rows=cache.listed_movies,
        predicted={i.movie_id: i.stars for i in items if i.stars is not None},
    )
    return Picks(tuple(movies), answer.model_version, answer.fallback, answer.reason)


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
