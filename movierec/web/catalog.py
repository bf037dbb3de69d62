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
from sqlalchemy import (
    ColumnElement,
    Connection,
    Float,
    Row,
    Select,
    Text,
    and_,
    bindparam,
    case,
    cast,
    func,
    lateral,
    literal,
    select,
    true,
    union_all,
)
from sqlalchemy.orm import Session

from movierec.db.schema import Movie, PopularMovie, Rating
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
# Word matches counted before choosing how to rank them. Up to this many, each one is scored
# (word_similarity and similarity: about 20 µs a title); past it, the titles-by-trigrams index
# (migration 0015) is walked from the shortest title on, about 1.5 µs a title (read from the
# index alone), some PAGE_SIZE x catalogue / matches titles long. At a million titles 1,500
# puts the two near each other (scoring 1,500: about 30 ms; a walk for 1,500 matches: about
# 14,000 titles, 20 ms; bench/bench_title_search.py and EXPLAIN of its queries).
MANY_WORD_MATCHES = 1_500
# The longest walk. A walk that finds fewer side-by-side matches than the page needs (many
# titles have the words, few next to each other, or only long ones: "of paris") gives way to
# scoring every word match; 30,000 titles cost about as much as scoring 2,000.
WALK_LIMIT = 30_000


def search(session: Session, query: SearchQuery) -> SearchPage:
    """One page of movies matching ``query``, best matches first.

    A title matches when it has every word of ``q`` (full text, 'simple' configuration), or
    when it is close to ``q`` by trigrams (typos): ``title % q`` or ``q <% title``. Titles
    with the words come first, then by word similarity, similarity and id; a chosen
    ``sort`` (title, newest, oldest) comes before all of these.

    Why the relevance order is found in parts (:func:`_best_matches`): the one statement
    that scored and sorted every title matching the words or a trigram before LIMIT cost
    p99 769 ms (two words), 621 ms (typos) and 1,450 ms (one common word) at 100,000 titles
    through the site (BENCHMARKS.md, "The whole product at scale"), and at a million titles,
    the statement alone (bench/bench_title_search.py, query by query in turn with this one,
    p50 / p99): two words 299 / 1,211 ms, one common word 290 / 3,941 ms. Scoring only what
    a page can show: 10 / 36 ms and 21 / 344 ms, the same pages for all 600 queries of the
    run. Not faster: misspelt words and a rare word (typo matches are read as before:
    89 / 667 against 92 / 822 ms, 31 / 267 against 28 / 315 ms), and a chosen sort, which
    needs every match (289 / 4,193 against 301 / 4,114 ms).
    BENCHMARKS.md, "Title search at a million titles", has both sizes.
    """
    rows = [_item(row) for row in session.execute(search_statement(query))]
    return SearchPage(query, tuple(rows[:PAGE_SIZE]), has_next=len(rows) > PAGE_SIZE)


def search_statement(query: SearchQuery) -> Select:
    """The statement of :func:`search`: one page and one row more (is there a next page)."""
    if query.q and query.sort not in _ORDERS:
        stmt = _best_matches(query)
    else:
        stmt = _in_order(query)
    return stmt.offset((query.page - 1) * PAGE_SIZE).limit(PAGE_SIZE + 1)


def _filters(query: SearchQuery) -> list[ColumnElement[bool]]:
    found = []
    if query.genre:
        found.append(Movie.genres.contains([query.genre]))
    if query.year:
        found.append(Movie.year == query.year)
    return found


class _Terms:
    """The query's text as the statement uses it: one parameter, its tsquery, and the match
    tests and scores of a title column. ``once``: the tsquery computed once per statement
    (a scalar subquery, an InitPlan) for the parts that test it on rows outside an index
    scan (the walk); the one statement of :func:`_in_order` keeps it inline, as it was."""

    def __init__(self, q: str, once: bool = True):
        self.q = bindparam("q", q, type_=Text)
        tsquery = func.plainto_tsquery("simple", self.q)
        self.tsquery = select(tsquery).scalar_subquery() if once else tsquery

    def words(self, tsv: ColumnElement = Movie.title_tsv) -> ColumnElement[bool]:
        return tsv.bool_op("@@")(self.tsquery)

    def close(self, title: ColumnElement = Movie.title) -> ColumnElement[bool]:
        """Whole title (%) or its best run of words (<%) near the query: a misspelled word in
        a long title still matches."""
        return title.bool_op("%")(self.q) | self.q.bool_op("<%")(title)

    def word_similarity(self, title: ColumnElement = Movie.title) -> ColumnElement[float]:
        return func.word_similarity(self.q, title)

    def similarity(self, title: ColumnElement = Movie.title) -> ColumnElement[float]:
        return func.similarity(title, self.q)


def _in_order(query: SearchQuery) -> Select:
    """Every match sorted: a chosen order needs them all (and no words, only filters)."""
    stmt = select(*_COLUMNS).where(*_filters(query))
    if query.sort in _ORDERS:  # a chosen order comes before any relevance
        stmt = stmt.order_by(*_ORDERS[query.sort])
    if query.q:
        terms = _Terms(query.q, once=False)
        stmt = stmt.where(terms.words() | terms.close()).order_by(
            terms.words().desc(), terms.word_similarity().desc(), terms.similarity().desc()
        )
    else:
        stmt = stmt.order_by(Movie.title) if query.sort not in _ORDERS else stmt
    return stmt.order_by(Movie.id)


def _best_matches(query: SearchQuery) -> Select:
    """The first ``needed`` matches by relevance, in parts that each stop early.

    * Word matches are counted up to ``cap``. Up to it, all are scored and sorted (a rare
      word, two words). Past it (a common word), the titles-by-trigrams index is walked for
      titles with the words side by side (word similarity 1): these come first, and among
      them similarity is |trigrams of q| / |trigrams of the title| exactly, so the shortest
      are the best and the walk's first ``needed`` are the page, in order. A walk that
      finds too few gives way to scoring every word match.
    * Typo matches (no words) are read only when the word matches do not fill the pages
      asked for. Then they cost what they did: the whole-title test (``%``: similarity
      >= 0.3) checks every title sharing 30 % of a short query's trigrams.

    Each part's LIMIT is computed from the counts before it; a LIMIT of 0 does not run
    its part at all (PostgreSQL's Limit node returns before its first row is asked for).
    """
    terms, filters = _Terms(query.q), _filters(query)
    needed = query.page * PAGE_SIZE + 1
    cap = max(MANY_WORD_MATCHES, needed)
    counted = (
        select(func.count())
        .select_from(select(Movie.id).where(terms.words(), *filters).limit(cap + 1).subquery())
        .cte("word_matches")
        .prefix_with("MATERIALIZED")
    )
    words = select(counted.c[0]).scalar_subquery()
    walk = _walk(terms, query, limit=case((words > cap, needed), else_=0))
    walked = select(func.count()).select_from(walk).scalar_subquery()
    parts = [
        _scored(terms, 0, terms.words(), *filters, limit=case((words <= cap, needed), else_=0)),
        select(*walk.c).where(walked >= needed),
        _scored(terms, 0, terms.words(), *filters,
                limit=case((and_(words > cap, walked < needed), needed), else_=0)),
        # Typo matches in one pass over both trigram tests, as before: read apart (<% first,
        # % only when still short), a rare word's few pages were read twice and its p50 at a
        # million titles went from 53 to 91 ms, while misspelt words gained nothing.
        _scored(terms, 1, terms.close(), ~terms.words(), *filters,
                limit=func.greatest(needed - words, 0)),
    ]  # fmt: skip
    ranked = union_all(*(_wrapped(part) for part in parts)).subquery("ranked")
    # The page's rows by id, one lookup each (LATERAL: a nested loop, never a scan of movies).
    movie = lateral(select(*_COLUMNS).where(Movie.id == ranked.c.id).limit(1)).alias("movie")
    return (
        select(*movie.c)
        .select_from(ranked)
        .join(movie, true())
        .order_by(ranked.c.tier, ranked.c.ws.desc(), ranked.c.sim.desc(), ranked.c.id)
    )


def _scored(terms: _Terms, tier: int, *where: ColumnElement[bool], limit) -> Select:
    """Ids of titles matching ``where`` with their scores, best first, at most ``limit``."""
    ws = terms.word_similarity().label("ws")
    sim = terms.similarity().label("sim")
    return (
        select(Movie.id, literal(tier).label("tier"), ws, sim)
        .where(*where)
        .order_by(ws.desc(), sim.desc(), Movie.id)
        .limit(limit)
    )


def _walk(terms: _Terms, query: SearchQuery, limit):
    """The walk of titles by number of trigrams (index-only: the index carries title,
    title_tsv, genres, year), keeping those with the words side by side, at most ``limit``."""
    trigrams = func.cardinality(func.show_trgm(Movie.title))
    by_length = (
        select(Movie.id, Movie.title, Movie.title_tsv)
        .where(*_filters(query))
        .order_by(trigrams, Movie.id)
        .limit(WALK_LIMIT)
        .subquery("by_length")
    )
    return (
        select(
            by_length.c.id,
            literal(0).label("tier"),
            terms.word_similarity(by_length.c.title).label("ws"),
            terms.similarity(by_length.c.title).label("sim"),
        )
        .where(terms.words(by_length.c.title_tsv), terms.word_similarity(by_length.c.title) == 1)
        .limit(limit)
        .cte("walk")
        .prefix_with("MATERIALIZED")
    )


def _wrapped(part: Select) -> Select:
    """``part`` as a subquery, so its ORDER BY and LIMIT stay its own inside UNION ALL."""
    inner = part.subquery()
    return select(inner.c.id, inner.c.tier, inner.c.ws, inner.c.sim)


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
    """The ``limit`` most rated movies, with their rating counts and averages.

    The average is of the ratings as ``float8``: a numeric average's state is large, and at 20M
    ratings the planner then sorted every partition by movie (index scans) where it now
    hashes them: 60.6 and 62.3 s against 18.1 and 18.2 s, alternating on one cluster
    (BENCHMARKS.md). The shown average is rounded to two places either way."""
    stats = (
        select(
            Rating.movie_id,
            func.count().label("ratings"),
            func.avg(cast(Rating.rating, Float)).label("average"),
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


def counted_popular(session: Session) -> list[MovieItem]:
    """The most rated movies as last counted into ``popular_movies`` (movierec.web.popular),
    in their order; a movie deleted since is left out."""
    stmt = (
        select(*_COLUMNS, PopularMovie.ratings, PopularMovie.average)
        .select_from(PopularMovie)
        .join(Movie, Movie.id == PopularMovie.movie_id)
        .order_by(PopularMovie.rank)
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
