"""Movies to show a user: the recommender's picks with their titles, or a popular fallback.

"Cannot recommend" is a result here, never an error page: when no recommender answers, the
user gets popular movies in the genres they like, marked as ``limited``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from flask import current_app

from movierec.errors import NotFound
from movierec.web import catalog, popular
from movierec.web.ai_client import AIClient, AIUnavailable
from movierec.web.db import get_session
from movierec.web.users import preferred_genres

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


def ai_client() -> AIClient:
    return cast(AIClient, current_app.extensions[EXTENSION])


def for_user(user_id: int, k: int) -> Picks:
    """Up to ``k`` movies for the user. Raises :class:`DatabaseUnavailable`."""
    try:
        answer = ai_client().recommend(user_id, k)
    except AIUnavailable:
        session = get_session()
        movies = popular.for_user(session, user_id, preferred_genres(session, user_id), k)
        return Picks(tuple(movies), limited=True, reason="recommender unavailable")
    movies = catalog.movies_by_ids(get_session(), ((i.movie_id, i.score) for i in answer.items))
    return Picks(tuple(movies), answer.model_version, answer.fallback, answer.reason)


def similar_to(movie_id: int, k: int) -> Picks:
    """Up to ``k`` movies like this one; ``limited`` and empty when no recommender answers.

    Raises :class:`DatabaseUnavailable`.
    """
    try:
        answer = ai_client().similar(movie_id, k)
    except AIUnavailable:
        return Picks((), limited=True, reason="recommender unavailable")
    except NotFound:
        return Picks((), reason="the recommender does not know this movie yet")
    items = ((i.movie_id, i.score) for i in answer.items if i.movie_id != movie_id)
    movies = catalog.movies_by_ids(get_session(), items)
    return Picks(tuple(movies), answer.model_version)
