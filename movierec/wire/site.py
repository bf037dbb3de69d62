"""The site's request parameters and its JSON API under ``/api/``, defined once.

The pages (search, account, "for you") and the JSON API read their query strings with these
parameters, so a year or a page number means the same everywhere; :data:`OPENAPI` (served at
``/api/openapi.json``) describes the API from the same objects.
"""

from __future__ import annotations

from movierec.db.schema import GENRES
from movierec.errors import BadInput
from movierec.wire.openapi import (
    BOOLEAN,
    INTEGER,
    LOGGED_IN,
    NUMBER,
    STRING,
    Operation,
    array_of,
    document,
    nullable,
    obj,
)
from movierec.wire.params import (
    Choice,
    Ids,
    Integer,
    Problem,
    Text,
    json_whole_number,
    quote,
)
from movierec.wire.recommender import MAX_PREDICT

MAX_QUERY_CHARS = 200
MAX_SEARCH_PAGE = 500
MAX_K = 100
DECADES = tuple(range(2020, 1910, -10))

Q = Text("q", "Title words (typos are forgiven).", max_chars=MAX_QUERY_CHARS)
GENRE = Choice("genre", "Only movies of this genre.", choices=tuple(GENRES))
YEAR = Integer("year", "Only movies released this year.", low=1870, high=2100)
SEARCH_PAGE = Integer("page", "Page of results, 20 a page.", default=1, high=MAX_SEARCH_PAGE)
SEARCH_SORTS = ("relevance", "title", "newest", "oldest")
SEARCH_SORT = Choice(
    "sort", "Order: relevance (best title matches first; by title without words), title, "
    "newest or oldest (by year).", choices=SEARCH_SORTS, default="relevance",
)  # fmt: skip
# "For you": the recommender's best MAX_K, FOR_YOU_PAGE_SIZE a page.
FOR_YOU_PAGE_SIZE = 24
FOR_YOU_PAGES = MAX_K // FOR_YOU_PAGE_SIZE
FOR_YOU_PAGE = Integer(
    "page", f"Page of recommendations, {FOR_YOU_PAGE_SIZE} a page.", default=1,
    high=FOR_YOU_PAGES,
)  # fmt: skip
FOR_YOU_SORTS = ("best", "stars", "newest", "oldest", "title")
FOR_YOU_SORT = Choice(
    "sort", "Order: best (the recommender's), stars (your predicted stars), newest, oldest "
    "or title.", choices=FOR_YOU_SORTS, default="best",
)  # fmt: skip
RATINGS_PAGE = Integer("page", "Page of ratings, newest first.", default=1, high=10_000)
USERS_PAGE = Integer("page", "Page of users, oldest first.", default=1, high=100_000)
K = Integer("k", "How many movies.", default=10, high=MAX_K)
DECADE = Choice(
    "decade", "Only movies of this decade (1990 or 1990s).",
    choices=tuple(f"{d}{s}" for d in DECADES for s in ("s", "")),
)  # fmt: skip
MOVIE_ID = Integer("movie_id", "The movie's id.", required=True)
# The movies of a page whose predicted stars its script asks for (GET /stars, the search page).
STARS_FOR = Ids("movies", "The page's movies.", required=True, max_items=MAX_PREDICT)

MOVIE = obj(
    ["id", "title", "year", "genres", "imdb_url", "tmdb_url", "ratings", "average_rating",
     "score"],
    id=INTEGER, title=STRING, year=nullable(INTEGER), genres=array_of(STRING),
    imdb_url=nullable(STRING), tmdb_url=nullable(STRING), ratings=INTEGER,
    average_rating=nullable(NUMBER), score=nullable(NUMBER),
)  # fmt: skip
SEARCHED = obj(
    ["q", "genre", "year", "page", "has_next", "results"],
    q=STRING, genre=nullable(STRING), year=nullable(INTEGER), page=INTEGER, has_next=BOOLEAN,
    results=array_of(MOVIE),
)  # fmt: skip
STARS = {"type": "number", "minimum": 0.5, "maximum": 5, "multipleOf": 0.5}
RATED = obj(
    ["movie_id", "title", "year", "rating", "rated_at"],
    movie_id=INTEGER, title=STRING, year=nullable(INTEGER), rating=NUMBER,
    rated_at={"type": "string", "format": "date-time"},
)  # fmt: skip
RATINGS = obj(["page", "has_next", "ratings"], page=INTEGER, has_next=BOOLEAN,
              ratings=array_of(RATED))  # fmt: skip
RATING_BODY = obj(["movie_id", "rating"], movie_id={"type": "integer", "minimum": 1}, rating=STARS)
RATE_ANSWER = obj(["movie_id", "rating"], movie_id=INTEGER, rating=NUMBER)
PICKS = obj(
    ["model_version", "fallback", "limited", "reason", "items"],
    model_version=nullable(STRING), fallback=BOOLEAN, limited=BOOLEAN, reason=nullable(STRING),
    items=array_of(MOVIE),
)  # fmt: skip
USER = obj(
    ["id", "username", "display_name", "email", "is_admin", "has_password", "providers",
     "created_at"],
    id=INTEGER, username=nullable(STRING), display_name=nullable(STRING), email=nullable(STRING),
    is_admin=BOOLEAN, has_password=BOOLEAN, providers=array_of(STRING),
    created_at={"type": "string", "format": "date-time"},
)  # fmt: skip
USERS = obj(
    ["page", "total", "total_estimated", "has_next", "users"], page=INTEGER,
    total={**INTEGER, "description": "exact unless total_estimated (above a million users)"},
    total_estimated=BOOLEAN, has_next=BOOLEAN, users=array_of(USER),
)  # fmt: skip

MOVIE_GET = Operation(
    "GET", "/api/movies/{movie_id}", "One movie with its rating count and average.",
    path_params=(MOVIE_ID,), answer=MOVIE, errors=(404, 503),
)  # fmt: skip
SEARCH = Operation(
    "GET", "/api/search", "Movies by title words, genre and year: give at least one (400).",
    params=(Q, GENRE, YEAR, SEARCH_PAGE, SEARCH_SORT), answer=SEARCHED, errors=(400, 503),
)  # fmt: skip
MY_RATINGS = Operation(
    "GET", "/api/ratings", "Your ratings, newest first.",
    params=(RATINGS_PAGE,), answer=RATINGS, errors=(400, 401, 503), security=LOGGED_IN,
)  # fmt: skip
RATE = Operation(
    "POST", "/api/ratings", "Rate a movie (again): 0.5 to 5 stars in halves.",
    body=RATING_BODY, answer=RATE_ANSWER, errors=(400, 401, 404, 503), security=LOGGED_IN,
)  # fmt: skip
RECOMMENDATIONS = Operation(
    "GET", "/api/recommendations", "Movies for you; popular ones when no recommender answers.",
    params=(K,), answer=PICKS, errors=(400, 401, 503), security=LOGGED_IN,
)  # fmt: skip
ADMIN_USERS = Operation(
    "GET", "/api/admin/users", "Every account, for admins.",
    params=(USERS_PAGE,), answer=USERS, errors=(400, 401, 403, 503), security=LOGGED_IN,
)  # fmt: skip
OPERATIONS = (MOVIE_GET, SEARCH, MY_RATINGS, RATE, RECOMMENDATIONS, ADMIN_USERS)
OPENAPI = document(
    "movierec site API",
    'The site\'s JSON API. Every error is JSON {"error": "one line"}; a 503 carries '
    "Retry-After. POSTs with the session cookie need the page's CSRF token in X-CSRFToken; "
    "API tokens (Authorization: Bearer mrt_...) need none.",
    OPERATIONS,
)


def read_rating(body: object) -> tuple[int, float]:
    """``(movie_id, stars)`` from a JSON body ``{"movie_id": int, "rating": number}``.
    Raises :class:`BadInput`."""
    if not isinstance(body, dict):
        raise BadInput('send a JSON object {"movie_id": int, "rating": number}')
    try:
        movie_id = json_whole_number(body.get("movie_id"), "movie_id")
    except Problem as exc:
        raise BadInput(str(exc)) from None
    return movie_id, stars(body.get("rating"))


def stars(value: object) -> float:
    """``value`` as a rating: 0.5 to 5 in half stars (a JSON number, or a form's string of
    one). Raises :class:`BadInput`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadInput("rating must be a number from 0.5 to 5 in steps of 0.5")
    # Compared before float(): a huge JSON integer would overflow the conversion.
    if not 0.5 <= value <= 5 or float(value) * 2 != int(float(value) * 2):
        raise BadInput(f"rating {quote(str(value))} is not from 0.5 to 5 in steps of 0.5")
    return float(value)


def decade(value: str) -> int:
    """A :data:`DECADE` value as the decade's first year."""
    return int(value.removesuffix("s"))
