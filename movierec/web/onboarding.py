"""The first visit: pick favourite genres, rate a dozen informative movies (or skip), and
"for you" is personal at once.

Sign-up (password or provider) lands here. The movies asked about are the informative ones
for the genres picked (:mod:`movierec.db.onboarding`: widely seen and judged differently),
a page of :data:`PAGE` at a time; "not seen" is every movie's default, so skipping one is
doing nothing. Saving commits the ratings as the movie page's rating does
(:func:`~movierec.web.writes.commit_taste_change`): the user's taste version changes, so their
next "for you" list is asked anew, and the recommender folds the new ratings in from the
database (or the context the site sends) — no retraining needed.

The candidates (one aggregate over the ratings) are kept per process for
:data:`TTL_SECONDS`: a ten-minute-old count serves a first visit as well as a fresh one.
"""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import select
from werkzeug.wrappers import Response

from movierec.db.onboarding import Candidate, candidate_stats, informative_order
from movierec.db.schema import Rating
from movierec.web import catalog
from movierec.web.db import connection, get_session
from movierec.web.forms import HALF_STARS, PreferencesForm
from movierec.web.refreshed import Refreshed
from movierec.web.users import preferred_genres, save_preferred_genres
from movierec.web.users import rate as rate_movie
from movierec.web.writes import commit_taste_change
from movierec.wire.onboarding import PREFIX, RATE_PAGE, read_ratings
from movierec.wire.params import read_valid

bp = Blueprint("onboarding", __name__, url_prefix="/welcome")
PAGE = 12
TTL_SECONDS = 600.0
EXTENSION = "movierec.onboarding"


def init_app(app) -> None:
    app.extensions[EXTENSION] = Refreshed(candidate_stats, TTL_SECONDS)
    app.register_blueprint(bp)


@bp.get("")
@login_required
def genres() -> str:
    """Step 1: the genres you like (the account page's form, preselected)."""
    form = PreferencesForm(genres=preferred_genres(get_session(), current_user.id))
    return render_template("onboarding/genres.html", form=form)


@bp.post("/genres")
@login_required
def save_genres() -> Response:
    form = PreferencesForm()
    if not form.validate_on_submit():
        flash("Those genres were not understood.", "error")
        return redirect(url_for("onboarding.genres"))
    save_preferred_genres(get_session(), current_user.id, form.genres.data or [])
    commit_taste_change()
    return redirect(url_for("onboarding.rate"))


@bp.get("/rate")
@login_required
def rate() -> str:
    """Step 2: a page of informative movies of your genres to rate (or skip)."""
    found, problems = read_valid([RATE_PAGE], request.args)
    page = found.get("page") or 1
    if problems:
        flash(f"Not understood: {'; '.join(problems)}.", "error")
    session = get_session()
    liked = preferred_genres(session, current_user.id)
    rated = set(session.scalars(select(Rating.movie_id).where(Rating.user_id == current_user.id)))
    order = informative_order(_candidates(), liked, exclude=rated)
    ids = order[(page - 1) * PAGE : page * PAGE]
    by_id = catalog.movie_rows(connection(), set(ids))
    movies = [by_id[i] for i in ids if i in by_id]
    return render_template(
        "onboarding/rate.html",
        movies=movies,
        genres=liked,
        page=page,
        more=len(order) > page * PAGE,
        rated=len(rated),
        stars=HALF_STARS,
        prefix=PREFIX,
    )


@bp.post("/rate")
@login_required
def save_ratings() -> Response:
    """Save the ratings given (a "not seen" is none), then the next page or "for you"."""
    given = read_ratings(request.form)
    session = get_session()
    known = catalog.movie_rows(connection(), set(given))
    for movie_id, stars in given.items():
        if movie_id in known:
            rate_movie(session, current_user.id, movie_id, stars)
    if known:
        commit_taste_change()
    if request.form.get("next") == "more":
        found, _ = read_valid([RATE_PAGE], request.form)
        page = found.get("page") or 1
        return redirect(url_for("onboarding.rate", page=min(page + 1, RATE_PAGE.high)))
    count = len(known)
    flash(
        f"Thanks: your recommendations now use your {count} new rating{'s' if count != 1 else ''}."
        if count
        else "No ratings yet: rate movies you have seen from their pages whenever you like.",
        "info",
    )
    return redirect(url_for("recommendations.for_you"))


def _candidates() -> list[Candidate]:
    return current_app.extensions[EXTENSION].get()
