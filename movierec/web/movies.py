"""The home page (popular movies), title search and the movie page."""

from __future__ import annotations

from flask import Blueprint, flash, jsonify, render_template, request, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from movierec.db import ShardUnavailable
from movierec.db.schema import GENRES
from movierec.errors import BadInput
from movierec.web import cache, catalog, picks, popular, stars
from movierec.web.auth.sessions import login_manager
from movierec.web.db import commit, get_session, read_session
from movierec.web.forms import RateForm
from movierec.web.fragments import movies_html
from movierec.web.users import rating_of, record_search
from movierec.wire import site
from movierec.wire.params import read_args

bp = Blueprint("movies", __name__)
bp.add_app_template_filter(stars.badge, "star_badge")  # every page's movie lists use it
POPULAR_ON_HOME = 24
SIMILAR_ON_PAGE = 8
USERS_OWN = frozenset({"same-origin", "none"})  # Sec-Fetch-Site of a search the user made


@bp.get("/")
def index() -> str:
    try:
        movies = popular.top(POPULAR_ON_HOME)
    except ShardUnavailable:
        movies = None  # the page still searches
    return render_template("movies/index.html", popular=movies, genres=GENRES)


@bp.get("/search")
def search() -> tuple[str, int]:
    """Search results, the same for everyone; a logged-in user's predicted stars are put in
    by the page's script (:func:`stars_badges`). Asked for here, they cost each user's first
    search in a worker a read of their ratings and a recommender call, on a page that is
    otherwise a kept list: 207 cold searches a second against 362 without stars in a loaded
    run; with the stars after the page, 981 against 973 on a quiet machine (BENCHMARKS.md,
    "Search results' stars after the page")."""
    try:
        query = catalog.parse_search(request.args)
    except BadInput as exc:
        flash(f"Search not understood: {exc}.", "error")
        return render_template(
            "movies/search.html", page=None, genres=GENRES, sorts=site.SEARCH_SORTS
        ), 400
    page, movies = None, ()
    if not query.is_empty:
        remember_search(query)
        page = cache.search(query)
        movies = page.movies
    later = current_user.is_authenticated
    return render_template(
        "movies/search.html", page=page, movies=movies, query=query, genres=GENRES,
        movies_html=movies_html(movies, None, stars_later=later), sorts=site.SEARCH_SORTS,
        stars_url=url_for("movies.stars_badges") if later and movies else None,
    ), 200  # fmt: skip


@bp.get("/stars")
def stars_badges() -> Response:
    """``{"badges": {movie id: HTML}}``: the current user's predicted stars of ``movies``
    (:data:`~movierec.wire.site.STARS_FOR`) as the badges the pages show, for the script of a
    page that is everyone's (search). Only movies with stars are in it; none when the
    recommender is out of reach."""
    taste = _taste_with_user()  # before anything asks for current_user: see detail()
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    movie_ids = read_args((site.STARS_FOR,), request.args)["movies"]
    found = stars.for_movies(movie_ids, taste)
    response = jsonify(badges={str(m): stars.badge(value) for m, value in found.items()})
    response.headers["Cache-Control"] = "private, no-store"  # the user's own
    return response


@bp.get("/movies/<id:movie_id>")
def detail(movie_id: int) -> str:
    # Before anything asks for current_user: a worker's first page for a user reads their
    # row, their taste (what their stars are kept under) and their ratings in one statement,
    # not three.
    taste = _taste_with_user()
    movie = cache.movie(movie_id)
    form = RateForm()
    mine = None
    if current_user.is_authenticated:
        mine = _own_rating(movie_id, taste)
        form.rating.data = None if mine is None else str(mine)
    similar = picks.similar_to(movie_id, SIMILAR_ON_PAGE)
    # The movie's and its similar movies' stars in one call.
    predicted = stars.for_movies([movie_id, *(m.id for m in similar.movies)], taste)
    similar_movies = tuple(m.with_stars(predicted.get(m.id)) for m in similar.movies)
    return render_template(
        "movies/detail.html", movie=movie, mine=mine, form=form, similar=similar,
        similar_movies=similar_movies, similar_html=movies_html(similar_movies, None),
        predicted=None if mine is not None else catalog.shown_stars(predicted.get(movie_id)),
    )  # fmt: skip


def _taste_with_user() -> picks.Taste | None:
    """:func:`picks.taste_with_user`, or None with a shard of the ratings down: the page
    then goes on as it did before it showed stars (the user's row read alone, their rating
    out of reach for a moment)."""
    try:
        return picks.taste_with_user()
    except ShardUnavailable:
        return None


def _own_rating(movie_id: int, taste: picks.Taste | None) -> float | None:
    """The user's rating of the movie: among the ratings read with ``taste`` when this
    request read them, else read (on the primary, after the user's own writes)."""
    if taste is not None:
        return picks.rating_in(taste, movie_id)
    try:
        with read_session() as session:
            return rating_of(session, current_user.id, movie_id)
    except ShardUnavailable:
        flash("Your ratings are out of reach for a moment; try again soon.", "error")
        return None


def remember_search(query: catalog.SearchQuery) -> None:
    """Store a logged-in user's search (first page only): the recommender reads them.

    Only a search the user made on this site counts. A page elsewhere can send the browser to
    ``/search?q=...`` (a top-level navigation carries the SameSite=Lax session cookie), and
    that must not plant genres in the user's taste. Browsers name where a request comes from
    in ``Sec-Fetch-Site``: ``same-origin`` (a form or link here) or ``none`` (typed, a
    bookmark) are the user's own; ``same-site`` (a sibling subdomain), ``cross-site`` and a
    missing header (an old browser, some script holding the cookie) are not recorded. A
    request with an API token is its holder's own.
    """
    if not current_user.is_authenticated or query.page != 1:
        return
    if current_user.via_token or request.headers.get("Sec-Fetch-Site") in USERS_OWN:
        record_search(get_session(), current_user.id, query)
        commit()
