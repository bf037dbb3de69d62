"""What the site stores about a user: the account, ratings, searches, preferred genres and the
movies they are not interested in.

Each function that writes for a user first names that user as the actor of the transaction
(:func:`movierec.db.history.act_as_user`), so the change history records the write as
``user:<id>`` whichever page or API call made it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ScalarSelect, bindparam, delete, func, select
from sqlalchemy.dialects.postgresql import aggregate_order_by, insert
from sqlalchemy.orm import Session

from movierec.db.history import act_as_user
from movierec.db.partitions.rows import delete_rows, upsert
from movierec.db.schema import Movie, NotInterested, Preference, Rating, Search, User
from movierec.web.catalog import SearchQuery

RATINGS_PAGE = 100
# A genre found in this many of the movies a user dismissed is demoted in their picks.
DEMOTE_AFTER = 2


@dataclass(frozen=True)
class RatedMovie:
    movie_id: int
    title: str
    year: int | None
    rating: float
    rated_at: datetime


@dataclass(frozen=True)
class DismissedMovie:
    movie_id: int
    title: str
    year: int | None
    dismissed_at: datetime


@dataclass(frozen=True)
class PastSearch:
    query: str
    genre: str | None
    year: int | None
    searched_at: datetime


def create_user(session: Session, username: str, password_hash: str) -> int | None:
    """The new user's id, or None when ``username`` is taken (also by a concurrent sign-up)."""
    user_id = new_user_id(session)  # known before the insert: the history blames the new user
    act_as_user(session, user_id)
    stmt = (
        insert(User)
        .values(id=user_id, username=username, password_hash=password_hash)
        .on_conflict_do_nothing(index_elements=[User.username])
        .returning(User.id)
    )
    return session.scalar(stmt)


def new_user_id(session: Session) -> int:
    """An id for an account about to be made (from the users' own sequence)."""
    return session.scalar(select(func.nextval(func.pg_get_serial_sequence("users", "id"))))


def user_by_name(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


def set_password_hash(session: Session, user_id: int, password_hash: str) -> None:
    act_as_user(session, user_id)
    session.get_one(User, user_id).password_hash = password_hash


def rate(session: Session, user_id: int, movie_id: int, rating: float) -> None:
    """Set (or replace) the user's rating of the movie."""
    act_as_user(session, user_id)
    key = {"user_id": user_id, "movie_id": movie_id}
    upsert(session, Rating, key, {"rating": rating, "rated_at": func.now()})


def unrate(session: Session, user_id: int, movie_id: int) -> bool:
    """Remove the user's rating of the movie; False when there was none."""
    act_as_user(session, user_id)
    return bool(delete_rows(session, Rating, {"user_id": user_id, "movie_id": movie_id}))


def rating_of(session: Session, user_id: int, movie_id: int) -> float | None:
    return session.scalar(
        select(Rating.rating).where(Rating.user_id == user_id, Rating.movie_id == movie_id)
    )


def ratings_of(session: Session, user_id: int, page: int = 1) -> tuple[list[RatedMovie], bool]:
    """One page of the user's ratings, newest first, and whether another page follows."""
    rows = session.execute(
        select(Rating.movie_id, Movie.title, Movie.year, Rating.rating, Rating.rated_at)
        .join(Movie, Movie.id == Rating.movie_id)
        .where(Rating.user_id == user_id)
        .order_by(Rating.rated_at.desc(), Rating.movie_id)
        .offset((page - 1) * RATINGS_PAGE)
        .limit(RATINGS_PAGE + 1)
    ).all()
    rated = [RatedMovie(*row) for row in rows[:RATINGS_PAGE]]
    return rated, len(rows) > RATINGS_PAGE


def record_search(session: Session, user_id: int, query: SearchQuery) -> None:
    act_as_user(session, user_id)
    session.add(Search(user_id=user_id, query=query.q, genre=query.genre, year=query.year))


def recent_searches(session: Session, user_id: int, limit: int = 20) -> list[PastSearch]:
    rows = session.execute(
        select(Search.query, Search.genre, Search.year, Search.searched_at)
        .where(Search.user_id == user_id)
        .order_by(Search.searched_at.desc(), Search.id.desc())
        .limit(limit)
    )
    return [PastSearch(*row) for row in rows]


def preferred_genres(session: Session, user_id: int) -> list[str]:
    genres = session.scalar(select(Preference.genres).where(Preference.user_id == user_id))
    return list(genres or [])


def save_preferred_genres(session: Session, user_id: int, genres: Sequence[str]) -> None:
    act_as_user(session, user_id)
    values = {"genres": list(genres), "updated_at": func.now()}
    upsert(session, Preference, {"user_id": user_id}, values)


def dismiss(session: Session, user_id: int, movie_id: int) -> bool:
    """Mark the movie "not interested" for the user; False when it already was."""
    act_as_user(session, user_id)
    stmt = (
        insert(NotInterested)
        .values(user_id=user_id, movie_id=movie_id)
        .on_conflict_do_nothing(index_elements=[NotInterested.user_id, NotInterested.movie_id])
    )
    return bool(session.execute(stmt).rowcount)


def undismiss(session: Session, user_id: int, movie_id: int) -> bool:
    """Take back a "not interested"; False when there was none."""
    act_as_user(session, user_id)
    result = session.execute(
        delete(NotInterested).where(
            NotInterested.user_id == user_id, NotInterested.movie_id == movie_id
        )
    )
    return bool(result.rowcount)


def dismissed_movies(session: Session, user_id: int, limit: int = 100) -> list[DismissedMovie]:
    """The movies the user is not interested in (those still in the catalogue), newest first."""
    rows = session.execute(
        select(NotInterested.movie_id, Movie.title, Movie.year, NotInterested.created_at)
        .join(Movie, Movie.id == NotInterested.movie_id)
        .where(NotInterested.user_id == user_id)
        .order_by(NotInterested.created_at.desc(), NotInterested.movie_id)
        .limit(limit)
    )
    return [DismissedMovie(*row) for row in rows]


@dataclass(frozen=True)
class Refusals:
    """What the user said no to: the movies they are not interested in (newest first) and the
    genres of at least ``at_least`` of those movies (most dismissed first, ties by name)."""

    dismissed: list[int]
    demoted_genres: list[str]

    @classmethod
    def of(cls, columns: Sequence) -> Refusals:
        """From the values of :func:`refusal_columns` (NULL arrays when there are none)."""
        dismissed, demoted = columns
        return cls(list(dismissed or ()), list(demoted or ()))


def refusals(session: Session, user_id: int, at_least: int = DEMOTE_AFTER) -> Refusals:
    """The user's :class:`Refusals`, in one statement."""
    row = session.connection().execute(_REFUSALS, {"user_id": user_id, "at_least": at_least})
    return Refusals.of(row.one())


def refusal_columns() -> tuple[ScalarSelect, ScalarSelect]:
    """The two columns :meth:`Refusals.of` reads, as scalar subqueries on the parameters
    ``user_id`` and ``at_least``: for a statement that reads more about the user at once."""
    user = bindparam("user_id")
    dismissed = (
        select(
            func.array_agg(
                aggregate_order_by(
                    NotInterested.movie_id, NotInterested.created_at.desc(), NotInterested.movie_id
                )
            )
        )
        .where(NotInterested.user_id == user)
        .scalar_subquery()
    )
    genres = (
        select(func.unnest(Movie.genres).label("genre"))
        .select_from(NotInterested)
        .join(Movie, Movie.id == NotInterested.movie_id)
        .where(NotInterested.user_id == user)
        .subquery()
    )
    counted = (
        select(genres.c.genre, func.count().label("times"))
        .group_by(genres.c.genre)
        .having(func.count() >= bindparam("at_least"))
        .subquery()
    )
    most_first = aggregate_order_by(counted.c.genre, counted.c.times.desc(), counted.c.genre)
    demoted = select(func.array_agg(most_first)).scalar_subquery()
    return dismissed, demoted


_REFUSALS = select(*refusal_columns())
