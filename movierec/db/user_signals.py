"""What a recommender reads about a user, as the columns of one statement.

The ratings come as parallel arrays with the newest ``rated_at``; then the preferred genres,
the favourite movies and the genres of the latest searches, newest first. The statement runs
over the user's ratings (``WHERE ratings.user_id = :user_id``) and aggregates them, so it
gives one row even for a user without any.

The recommender server reads them itself (:mod:`movierec.ai.user_context`); the web reads them
in the statement that gives it the user's taste version and sends them with the request, which
spares the server its own read.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, Float, cast, func, select
from sqlalchemy.dialects.postgresql import aggregate_order_by

from movierec.db.schema import Preference, Rating, Search

RECENT_SEARCHES = 20
# The columns' labels: the ratings' three, then the other signals' three.
RATING_COLUMNS = ("movie_ids", "stars", "last_rated_at")
OTHER_COLUMNS = ("genres", "liked", "searched")


def signal_columns(user: BindParameter, with_genres: bool = True) -> list[ColumnElement]:
    """The columns named :data:`RATING_COLUMNS` and, with ``with_genres``,
    :data:`OTHER_COLUMNS`, for a statement over ``user``'s ratings."""
    columns: list[ColumnElement] = [
        func.array_agg(Rating.movie_id).label("movie_ids"),
        # float8, not numeric: no per-element conversion of the array when it is read.
        func.array_agg(cast(Rating.rating, Float)).label("stars"),
        func.max(Rating.rated_at).label("last_rated_at"),
    ]
    if not with_genres:
        return columns
    recent = (
        select(Search.genre, Search.searched_at)
        .where(Search.user_id == user, Search.genre.is_not(None))
        .order_by(Search.searched_at.desc())
        .limit(RECENT_SEARCHES)
        .subquery()
    )
    newest_first = aggregate_order_by(recent.c.genre, recent.c.searched_at.desc())
    mine = Preference.user_id == user
    return columns + [
        select(Preference.genres).where(mine).scalar_subquery().label("genres"),
        select(Preference.movie_ids).where(mine).scalar_subquery().label("liked"),
        select(func.array_agg(newest_first)).scalar_subquery().label("searched"),
    ]


def as_json(found: Mapping[str, Any]) -> dict[str, Any]:
    """The columns of a row (all six) as a JSON object: what the web sends the recommender
    (``last_rated_at`` in epoch seconds)."""
    body = {name: found[name] for name in (*RATING_COLUMNS, *OTHER_COLUMNS)}
    last = body["last_rated_at"]
    body["last_rated_at"] = last.timestamp() if isinstance(last, datetime) else last
    return body
