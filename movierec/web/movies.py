"""The home page (popular movies), title search and the movie page."""

from __future__ import annotations

from flask import Blueprint, flash, render_template, request
from flask_login import current_user

from movierec.db.schema import GENRES
from movierec.errors import BadInput
from movierec.web import cache, catalog, picks, popular
from movierec.web.db import commit, get_session, read_session
from movierec.web.forms import RateForm
from movierec.web.users import rating_of, record_search

bp = Blueprint("movies", __name__)
POPULAR_ON_HOME = 24
SIMILAR_ON_PAGE = 8


@bp.get("/")
def index() -> str:
    with read_session() as session:
        movies = popular.top(session, POPULAR_ON_HOME)
    return render_template("movies/index.html", popular=movies, genres=GENRES)


@bp.get("/search")
def search() -> tuple[str, int]:
    try:
        query = catalog.parse_search(request.args)
    except BadInput as exc:
        flash(f"Search not understood: {exc}.", "error")
        return render_template("movies/search.html", page=None, genres=GENRES), 400
    page = None
    if not query.is_empty:
        remember_search(query)
        page = cache.search(query)
    return render_template("movies/search.html", page=page, query=query, genres=GENRES), 200


@bp.get("/movies/<id:movie_id>")
def detail(movie_id: int) -> str:
    movie = cache.movie(movie_id)
    form = RateForm()
    if current_user.is_authenticated:
        mine = rating_of(get_session(), current_user.id, movie_id)
        form.rating.data = None if mine is None else str(mine)
    else:
        mine = None
    similar = picks.similar_to(movie_id, SIMILAR_ON_PAGE)
    return render_template("movies/detail.html", movie=movie, mine=mine, form=form, similar=similar)


def remember_search(query: catalog.SearchQuery) -> None:
    """Store a logged-in user's search (first page only): the recommender reads them."""
    if current_user.is_authenticated and query.page == 1:
        record_search(get_session(), current_user.id, query)
        commit()
