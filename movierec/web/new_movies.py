"""New movies are not invisible: the "New this week" slot of "for you".

A movie added after the ranking model was trained has no factors, so the recommender never
lists it until the next retrain, and one that few have rated is listed rarely. Such movies
reach users here by their own metadata instead (:mod:`movierec.web.content`): the movies
added in the last :data:`WEEK` (``movie_arrivals``, migration 0013) and those added before
that still rated fewer than :data:`RARE` times, ranked for the user by how well their
genres, decade and title words fit the user's ratings and preferred genres; only those that
fit (above 0) are shown, at most :data:`SLOT`. Without ratings or genres to go on, the
newest are shown.

The candidates (the newest :data:`CANDIDATES` arrivals with their rating counts) are read
at most every :data:`TTL_SECONDS` per process; the user's taste from their latest
:data:`PROFILE` ratings, when their "for you" page is rendered (a page kept in the page
cache keeps its slot until the user's taste or the model changes).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Flask, current_app
from flask_login import current_user
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from movierec.db.schema import Movie, MovieArrival, Rating
from movierec.errors import DatabaseUnavailable
from movierec.web import catalog
from movierec.web.content import fit, taste_of
from movierec.web.db import get_session
from movierec.web.refreshed import Refreshed
from movierec.web.users import preferred_genres

EXTENSION = "movierec.new_movies"
WEEK = timedelta(days=7)
RARE = 10  # a movie rated fewer times than this is still "new" to the ranking model
CANDIDATES = 500
PROFILE = 500
SLOT = 6
TTL_SECONDS = 60.0


@dataclass(frozen=True)
class Arrival:
    movie: catalog.MovieItem
    added_at: datetime


def arrivals(
    session: Session, now: datetime | None = None, limit: int = CANDIDATES
) -> list[Arrival]:
    """The newest ``limit`` movies added in the last week, or before it and still rated
    fewer than :data:`RARE` times; newest first, with their rating counts."""
    counts = (
        select(Rating.movie_id, func.count().label("n"), func.avg(Rating.rating).label("average"))
        .where(Rating.movie_id == MovieArrival.movie_id)
        .group_by(Rating.movie_id)
        .lateral("counts")
    )
    since = (now or func.now()) - WEEK
    rows = session.execute(
        select(
            Movie.id,
            Movie.title,
            Movie.year,
            Movie.genres,
            Movie.imdb_id,
            Movie.tmdb_id,
            func.coalesce(counts.c.n, 0).label("ratings"),
            counts.c.average,
            MovieArrival.added_at,
        )
        .select_from(MovieArrival)
        .join(Movie, Movie.id == MovieArrival.movie_id)
        .outerjoin(counts, counts.c.movie_id == MovieArrival.movie_id)
        .where((MovieArrival.added_at >= since) | (func.coalesce(counts.c.n, 0) < RARE))
        .order_by(MovieArrival.added_at.desc(), Movie.id.desc())
        .limit(limit)
    )
    return [
        Arrival(catalog.MovieItem(r.id, r.title, r.year, tuple(r.genres or ()), r.imdb_id,
                                  r.tmdb_id, r.ratings, _average(r.average)), r.added_at)
        for r in rows
    ]  # fmt: skip


def _average(value) -> float | None:
    return None if value is None else round(float(value), 2)


def for_user(session: Session, user_id: int, candidates: list[Arrival], k: int = SLOT):
    """Up to ``k`` of ``candidates`` for the user, best fit first; none they rated."""
    if not candidates:
        return []
    rated = session.execute(
        select(Movie.genres, Movie.year, Movie.title, Rating.rating, Rating.movie_id)
        .join(Movie, Movie.id == Rating.movie_id)
        .where(Rating.user_id == user_id)
        .order_by(Rating.rated_at.desc())
        .limit(PROFILE)
    ).all()
    seen = {r.movie_id for r in rated}
    taste = taste_of(
        ((tuple(r.genres or ()), r.year, r.title, float(r.rating)) for r in rated),
        preferred_genres(session, user_id),
    )
    unseen = [a for a in candidates if a.movie.id not in seen]
    if taste.empty:
        return [a.movie for a in unseen[:k]]
    scored = [(fit(taste, a.movie.genres, a.movie.year, a.movie.title), a) for a in unseen]
    best = sorted((s for s in scored if s[0] > 0), key=lambda s: -s[0])
    return [a.movie for _, a in best[:k]]


def new_this_week(shown: Iterable[catalog.MovieItem] = ()) -> list[catalog.MovieItem]:
    """The slot for the logged-in user, none of the movies ``shown`` above it (a template
    global: "for you" renders it); empty when the database does not answer, as the slot is
    an extra the page can do without."""
    if not current_user.is_authenticated:
        return []
    listed = {m.id for m in shown}
    try:
        found = [a for a in current_app.extensions[EXTENSION].get() if a.movie.id not in listed]
        if not found:  # the common case: nothing new, and nothing more to read
            return []
        return for_user(get_session(), current_user.id, found)
    except DatabaseUnavailable:  # a shard down, say: the page goes on without its extra
        return []


def init_app(app: Flask) -> None:
    app.extensions[EXTENSION] = Refreshed(arrivals, TTL_SECONDS)
    app.add_template_global(new_this_week)
