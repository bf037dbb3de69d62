"""Rating a movie from its page, and taking the rating back."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, url_for
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from movierec.web import catalog
from movierec.web.db import get_session
from movierec.web.forms import RateForm
from movierec.web.users import rate, unrate
from movierec.web.writes import commit_taste_change
from movierec.wire import site

bp = Blueprint("ratings", __name__, url_prefix="/movies/<id:movie_id>/rating")


@bp.post("")
@login_required
def save(movie_id: int) -> Response:
    session = get_session()
    catalog.movie_or_404(session, movie_id)
    form = RateForm()
    if form.validate_on_submit():
        rating = site.stars(float(form.rating.data))
        rate(session, current_user.id, movie_id, rating)
        commit_taste_change(rated=movie_id)
        flash(f"Rated {rating:g} ★.", "info")
    else:
        flash("Pick a rating from 0.5 to 5 stars.", "error")
    return redirect(url_for("movies.detail", movie_id=movie_id))


@bp.post("/delete")
@login_required
def remove(movie_id: int) -> Response:
    session = get_session()
    catalog.movie_or_404(session, movie_id)
    if unrate(session, current_user.id, movie_id):
        commit_taste_change(rated=movie_id)
        flash("Rating removed.", "info")
    return redirect(url_for("movies.detail", movie_id=movie_id))
