"""The JSON API under /api/: movies, search, the user's ratings, recommendations.

Its parameters, bodies and answers are :mod:`movierec.wire.site`'s, which is also its OpenAPI
document (``/api/openapi.json``). Errors answer ``{"error": "..."}`` (see
:mod:`movierec.web.errors`). POSTs authenticated by the session cookie need the CSRF token in
an ``X-CSRFToken`` header.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, request
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from movierec.errors import BadInput
from movierec.web import cache, catalog, picks
from movierec.web.auth.sessions import login_manager
from movierec.web.db import get_session
from movierec.web.fragments import derived
from movierec.web.movies import remember_search
from movierec.web.users import rate, ratings_of
from movierec.web.writes import commit_taste_change
from movierec.wire import site

bp = Blueprint("api", __name__, url_prefix="/api")


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(site.OPENAPI)


@bp.get("/movies/<id:movie_id>")
def movie(movie_id: int) -> Response:
    return jsonify(movie_json(cache.movie(movie_id)))


@bp.get("/search")
def search() -> Response:
    query = catalog.parse_search(request.args)
    if query.is_empty:
        raise BadInput("give q, genre or year")
    remember_search(query)
    page = cache.search(query)
    return jsonify(
        q=query.q,
        genre=query.genre,
        year=query.year,
        page=query.page,
        has_next=page.has_next,
        results=[movie_json(m) for m in page.movies],
    )


@bp.get("/ratings")
@login_required
def my_ratings() -> Response:
    page = site.MY_RATINGS.read(request.args)["page"]
    ratings, more = ratings_of(get_session(), current_user.id, page)
    items = [
        {
            "movie_id": r.movie_id,
            "title": r.title,
            "year": r.year,
            "rating": r.rating,
            "rated_at": r.rated_at.isoformat(),
        }
        for r in ratings
    ]
    return jsonify(page=page, has_next=more, ratings=items)


@bp.post("/ratings")
@login_required
def rate_movie() -> Response:
    movie_id, rating = site.read_rating(request.get_json(silent=True))
    session = get_session()
    catalog.movie_or_404(session, movie_id)
    rate(session, current_user.id, movie_id, rating)
    commit_taste_change(rated=movie_id)
    return jsonify(movie_id=movie_id, rating=rating)


@bp.get("/recommendations")
def recommendations() -> Response:
    # Before the login check, which would read the user's row alone: see taste_with_user.
    taste = picks.taste_with_user()
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    k = site.RECOMMENDATIONS.read(request.args)["k"]
    found = picks.for_user(current_user.id, k, taste)

    def body() -> str:
        return current_app.json.dumps(
            {
                "model_version": found.model_version,
                "fallback": found.fallback or found.limited,
                "limited": found.limited,
                "reason": found.reason,
                "items": [movie_json(m) for m in found.movies],
            }
        )

    # Cached picks are the same object on every hit: their JSON is kept with them.
    text = body() if found.limited else derived(found, "json", body)
    return current_app.response_class(text + "\n", mimetype=current_app.json.mimetype)


def movie_json(movie: catalog.MovieItem) -> dict[str, Any]:
    return {
        "id": movie.id,
        "title": movie.title,
        "year": movie.year,
        "genres": list(movie.genres),
        "imdb_url": movie.imdb_url,
        "tmdb_url": movie.tmdb_url,
        "ratings": movie.ratings,
        "average_rating": movie.average,
        "score": movie.score,
    }
