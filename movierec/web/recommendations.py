"""The "for you" page: the recommender's picks for the logged-in user, filtered by genre and
decade on request, and "not interested" (with its undo, from the account page)."""

from __future__ import annotations

from collections.abc import Mapping

from flask import (
    Blueprint,
    current_app,
    flash,
    get_template_attribute,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required
from markupsafe import Markup
from werkzeug.wrappers import Response

from movierec.db.schema import GENRES
from movierec.web import catalog, picks
from movierec.web.auth.sessions import login_manager
from movierec.web.db import get_session
from movierec.web.forms import NotInterestedForm, UndoNotInterestedForm
from movierec.web.fragments import cached_page, movie_list_html
from movierec.web.users import dismiss, undismiss
from movierec.web.writes import commit_taste_change
from movierec.wire import site
from movierec.wire.params import read_valid

bp = Blueprint("recommendations", __name__)
FOR_YOU = 24
# With a filter, the recommender is asked for this many and the page keeps those that match.
FILTER_CANDIDATES = min(FOR_YOU * 5, 100)
DISMISS_FORM = "not-interested"
FILTER_FORMS = "movierec.filter_forms"


def parse_filters(args: Mapping[str, str]) -> tuple[dict[str, str | int], list[str]]:
    """The genre and decade filters in ``args`` (only the valid ones) and what was not
    understood."""
    found, problems = read_valid([site.GENRE, site.DECADE], args)
    filters: dict[str, str | int] = {}
    if found.get("genre"):
        filters["genre"] = found["genre"]
    if found.get("decade"):
        filters["decade"] = site.decade(found["decade"])
    return filters, problems


def matches(movie: catalog.MovieItem, filters: Mapping[str, str | int]) -> bool:
    genre, decade = filters.get("genre"), filters.get("decade")
    if genre is not None and genre not in movie.genres:
        return False
    if decade is not None:
        return movie.year is not None and int(decade) <= movie.year < int(decade) + 10
    return True


def filters_html(filters: Mapping[str, str | int]) -> Markup:
    """The filter form with ``filters`` selected, rendered once per app and combination of
    filters (a few hundred at most, as parse_filters lets only known ones through): its
    ~30 options were most of the page's rendering time."""
    forms = current_app.extensions.setdefault(FILTER_FORMS, {})
    key = (filters.get("genre"), filters.get("decade"))
    html = forms.get(key)
    if html is None:
        macro = get_template_attribute("recommendations/_filters.html", "filter_form")
        html = forms[key] = Markup(macro(GENRES, site.DECADES, filters))
    return html


@bp.get("/for-you")
def for_you() -> str | Response:
    # Before the login check, which would read the user's row alone: see taste_with_user.
    taste = picks.taste_with_user()
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    filters, problems = parse_filters(request.args)
    if problems:
        flash(f"Filter not understood: {'; '.join(problems)}.", "error")
    if filters:
        found = picks.for_user(current_user.id, FILTER_CANDIDATES, taste)
        movies = tuple(m for m in found.movies if matches(m, filters))[:FOR_YOU]
        return _page(found, movies, filters)
    found = picks.for_user(current_user.id, FOR_YOU, taste, record=True)
    if found.limited:
        return _page(found, found.movies, filters)
    # Cached picks are the same object on every hit: their page and list HTML are kept.
    return cached_page(
        found, lambda: _page(found, found.movies, filters, movie_list_html(found, DISMISS_FORM))
    )


def _page(
    found: picks.Picks,
    movies: tuple[catalog.MovieItem, ...],
    filters: Mapping[str, str | int],
    movies_html: Markup | None = None,
) -> str:
    return render_template(
        "recommendations/for_you.html",
        picks=found,
        movies=movies,
        movies_html=movies_html,
        filters=filters,
        filters_html=filters_html(filters),
        dismiss_form_id=DISMISS_FORM,
    )


@bp.post("/for-you/not-interested")
@login_required
def not_interested() -> Response:
    filters, _ = parse_filters(request.form)
    form = NotInterestedForm()
    if form.validate_on_submit():
        session = get_session()
        movie = catalog.movie_or_404(session, form.movie_id.data)
        dismiss(session, current_user.id, movie.id)
        commit_taste_change()
        flash(f"You will not be shown {movie.title} again (undo on your account page).", "info")
    else:
        flash("That request was not understood; please try again.", "error")
    return redirect(url_for("recommendations.for_you", **filters))


@bp.post("/for-you/not-interested/<id:movie_id>/delete")
@login_required
def undo_not_interested(movie_id: int) -> Response:
    form = UndoNotInterestedForm()
    if form.validate_on_submit():
        if undismiss(get_session(), current_user.id, movie_id):
            commit_taste_change()
            flash("It may be recommended to you again.", "info")
    else:
        flash("That request was not understood; please try again.", "error")
    return redirect(url_for("account.index"))
