"""Reading the movie catalogue: lookup, title search, popular movies, rating statistics.

Queries return frozen :class:`MovieItem` rows rather than ORM objects, so pages can use them
after their (possibly read-only, replica) session has ended.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal

from flask import abort
from sqlalchemy import Connection, Row, Text, func, literal, select
from sqlalchemy.orm import Session

from movierec.db.schema import Movie, Rating
from movierec.wire import site
from movierec.wire.params import MAX_ID

PAGE_SIZE = 20
_COLUMNS = (Movie.id, Movie.title, Movie.year, Movie.genres, Movie.imdb_id, Movie.tmdb_id)


@dataclass(frozen=True)
class MovieItem:
    id: int
    title: str
    year: int | None
    genres: tuple[str, ...]
    imdb_id: str | None = None
    tmdb_id: int | None = None
    ratings: int | None = 0  # None: unknown for now (a shard holding some is down)
    average: float | None = None
    score: float | None = None
    # "Because you liked <because>": the title of the movie the recommender based this on.
    because: str | None = None
    # The logged-in user's predicted stars from the rating model (one decimal, as shown), for
    # a movie they have not rated; None: none to show (see movierec.web.stars).
    predicted: float | None = None

    @property
    def approx_bytes(self) -> int:
        """What the row refers to, for :func:`movierec.web.bounded_cache.approx_size`: its fields
        summed directly. Walking them as an object graph cost three times as much, and a cold
        "for you" page sizes dozens of rows."""
        values = self.__dict__
        return (
            sys.getsizeof(values)
            + sum(map(sys.getsizeof, values.values()))
            + sum(map(sys.getsizeof, self.genres))
        )

    def scored(
        self, score: float | None, because: str | None, predicted: float | None = None
    ) -> MovieItem:
        """This movie with a recommender's ``score``, ``because`` and ``predicted`` stars:
        what ``dataclasses.replace`` makes, at a fifth of its cost (it checks and passes every
        field again), for the two dozen rows of each new list."""
        item = object.__new__(type(self))
        item.__dict__.update(
            self.__dict__, score=score, because=because, predicted=shown_stars(predicted)
        )
        return item

    def with_stars(self, predicted: float | None) -> MovieItem:
        """This movie with the user's ``predicted`` stars (None: none to show)."""
        return self.scored(self.score, self.because, predicted)

    @property
    def imdb_url(self) -> str | None:
        # MovieLens stores the IMDb number without its "tt" prefix and zero padding.
        if not self.imdb_id:
            return None
        digits = self.imdb_id.removeprefix("tt")
        return f"https://www.imdb.com/title/tt{digits.zfill(7)}/"

    @property
    def tmdb_url(self) -> str | None:
        return f"https://www.themoviedb.org/movie/{self.tmdb_id}" if self.tmdb_id else None


@dataclass(frozen=True)
class SearchQuery:
    q: str = ""
    genre: str | None = None
    year: int | None = None
    page: int = 1
    sort: str = "relevance"  # one of movierec.wire.site.SEARCH_SORTS

    @property
    def is_empty(self) -> bool:
        return not (self.q or self.genre or self.year)


@dataclass(frozen=True)
class SearchPage:
    query: SearchQuery
    movies: tuple[MovieItem, ...]
    has_next: bool


def parse_search(args: Mapping[str, str]) -> SearchQuery:
    """The search in request arguments (``q``, ``genre``, ``year``, ``page``, read by
    :data:`movierec.wire.site.SEARCH`). Raises :class:`BadInput` naming every malformed one."""
    found = site.SEARCH.read(args)
    return SearchQuery(
        q=found["q"], genre=found["genre"], year=found["year"], page=found["page"],
        sort=found["sort"],
    )  # fmt: skip


# Orders a search may ask for besides relevance (site.SEARCH_SORTS); ties by the rest.
_ORDERS = {
    "title": (Movie.title,),
    "newest": (Movie.year.desc().nulls_last(), Movie.title),
    "oldest": (Movie.year.asc().nulls_last(), Movie.title),
}


def search(session: Session, query: SearchQuery) -> SearchPage:
    """One page of movies matching ``query``, best matches first."""
    stmt = select(*_COLUMNS)
    if query.sort in _ORDERS:  # a chosen order comes before any relevance
        stmt = stmt.order_by(*_ORDERS[query.sort])
    if query.q:
        words = func.plainto_tsquery("simple", query.q)
        word_match = Movie.title_tsv.bool_op("@@")(words)
        # Trigram matches catch typos: against the whole title (%) and against its best
        # matching run of words (<%), so a misspelled word in a long title still matches.
        typo_match = Movie.title.bool_op("%")(query.q) | literal(query.q, Text).bool_op("<%")(
            Movie.title
        )
        stmt = stmt.where(word_match | typo_match).order_by(
            word_match.desc(),
            func.word_similarity(query.q, Movie.title).desc(),
            func.similarity(Movie.title, query.q).desc(),
        )
    if query.genre:
        stmt = stmt.where(Movie.genres.contains([query.genre]))
    if query.year:
        stmt = stmt.where(Movie.year == query.year)
    if not query.q and query.sort not in _ORDERS:
        stmt = stmt.order_by(Movie.title)
    stmt = stmt.order_by(Movie.id).offset((query.page - 1) * PAGE_SIZE).limit(PAGE_SIZE + 1)
    rows = [_item(row) for row in session.execute(stmt)]
    return SearchPage(query, tuple(rows[:PAGE_SIZE]), has_next=len(rows) > PAGE_SIZE)


def movie_or_404(session: Session, movie_id: int) -> MovieItem:
    """The movie; aborts with 404 when there is none."""
    # Ids come from URLs and JSON; one beyond bigint would be a database error, not a miss.
    row = None
    if 0 < movie_id <= MAX_ID:
        row = session.execute(select(*_COLUMNS).where(Movie.id == movie_id)).first()
    if row is None:
        abort(404, description=f"There is no movie {movie_id}.")
    return _item(row)


def with_rating_stats(session: Session, movie: MovieItem) -> MovieItem:
    """``movie`` with its number of ratings and their average."""
    count, average = session.execute(
        select(func.count(), func.avg(Rating.rating)).where(Rating.movie_id == movie.id)
    ).one()
    return replace(movie, ratings=count, average=None if average is None else _round(average))


def movies_by_ids(
    conn: Connection,
    scored: Iterable[tuple[int, float]],
    because: Mapping[int, int] | None = None,
    rows: Callable[[Connection, set[int]], Mapping[int, MovieItem]] | None = None,
    predicted: Mapping[int, float] | None = None,
) -> list[MovieItem]:
    """The movies for ``(id, score)`` pairs, in the given order; unknown ids drop.

    ``because`` maps movie ids to the movie they are recommended because of; those movies'
    titles are set as each item's ``because``; ``predicted``, the user's predicted stars.
    The movies are read by ``rows`` (default :func:`movie_rows`, one query), which a caller
    may put a cache in front of.
    """
    stars = predicted or {}
    scores = dict(scored)
    if not scores:
        return []
    reasons = {i: b for i, b in (because or {}).items() if i in scores}
    by_id = (rows or movie_rows)(conn, set(scores) | set(reasons.values()))
    return [
        by_id[i].scored(scores[i], _title(by_id.get(reasons.get(i))), stars.get(i))
        for i in scores
        if i in by_id
    ]


def shown_stars(predicted: float | None) -> float | None:
    """Predicted stars as a page shows them: one decimal, so that a movie's HTML in lists
    (kept per distinct movie fields, :mod:`movierec.web.fragments`) takes few forms."""
    return None if predicted is None else round(predicted, 1)


def movie_rows(conn: Connection, ids: set[int]) -> dict[int, MovieItem]:
    """The movies of ``ids`` that exist, by id, in one query (no rating statistics)."""
    return {row.id: _item(row) for row in conn.execute(select(*_COLUMNS).where(Movie.id.in_(ids)))}


def _title(movie: MovieItem | None) -> str | None:
    return None if movie is None else movie.title


def popular(session: Session, limit: int) -> list[MovieItem]:
    """The ``limit`` most rated movies, with their rating counts and averages."""
    stats = (
        select(
            Rating.movie_id,
            func.count().label("ratings"),
            func.avg(Rating.rating).label("average"),
        )
        .group_by(Rating.movie_id)
        .subquery()
    )
    stmt = (
        select(*_COLUMNS, stats.c.ratings, stats.c.average)
        .join(stats, stats.c.movie_id == Movie.id)
        .order_by(stats.c.ratings.desc(), Movie.id)
        .limit(limit)
    )
    return [_item(row) for row in session.execute(stmt)]


def _item(row: Row) -> MovieItem:
    fields = row._mapping
    average = fields.get("average")
    return MovieItem(
        id=row.id,
        title=row.title,
        year=row.year,
        genres=tuple(row.genres or ()),
        imdb_id=row.imdb_id,
        tmdb_id=row.tmdb_id,
        ratings=int(fields.get("ratings") or 0),
        average=None if average is None else _round(average),
    )


def _round(average: Decimal | float) -> float:
    return round(float(average), 2)
