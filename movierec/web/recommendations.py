"""The "for you" page: the recommender's picks for the logged-in user, filtered by genre and
decade on request, and "not interested" (with its undo, from the account page)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
from movierec.wire.params import read_args, read_valid

bp = Blueprint("recommendations", __name__)
FOR_YOU = site.FOR_YOU_PAGE_SIZE
# With a filter or an order of the user's, the recommender is asked for this many (its most)
# and the pages are cut from those that match, in that order.
FILTER_CANDIDATES = site.MAX_K
PAGING = (site.FOR_YOU_PAGE, site.FOR_YOU_SORT)
# The orders besides the recommender's own (site.FOR_YOU_SORTS): stable sorts, so equals keep
# the recommender's order; movies without stars or a year come last.
ORDERS: dict[str, Callable[[catalog.MovieItem], Any]] = {
    "stars": lambda m: -(m.predicted or 0.0),
    "newest": lambda m: -(m.year or 0),
    "oldest": lambda m: m.year or 10_000,
    "title": lambda m: m.title.casefold(),
}
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


def filters_html(filters: Mapping[str, str | int], order: str = "best") -> Markup:
    """The filter form with ``filters`` and ``order`` selected, rendered once per app and
    combination (a few thousand at most, as parse_filters and the sort parameter let only
    known ones through): its ~30 options were most of the page's rendering time."""
    forms = current_app.extensions.setdefault(FILTER_FORMS, {})
    key = (filters.get("genre"), filters.get("decade"), order)
    html = forms.get(key)
    if html is None:
        macro = get_template_attribute("recommendations/_filters.html", "filter_form")
        html = forms[key] = Markup(macro(GENRES, site.DECADES, filters, site.FOR_YOU_SORTS, order))
    return html


@dataclass(frozen=True)
class Paging:
    """Which page of the list a "for you" page shows, in which order, and whether more
    follow."""

    page: int = 1
    order: str = "best"
    has_next: bool = False

    def cut(self, movies: Sequence[catalog.MovieItem]) -> tuple[catalog.MovieItem, ...]:
        return tuple(movies[(self.page - 1) * FOR_YOU : self.page * FOR_YOU])


@bp.get("/for-you")
def for_you() -> str | Response:
    # Before the login check, which would read the user's row alone: see taste_with_user.
    taste = picks.taste_with_user()
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    paging = read_args(PAGING, request.args)  # a bad page or order: BadInput, a 400 page
    page, order = paging["page"], paging["sort"]
    filters, problems = parse_filters(request.args)
    if problems:
        flash(f"Filter not understood: {'; '.join(problems)}.", "error")
    if filters or order != "best":
        found = picks.for_user(current_user.id, FILTER_CANDIDATES, taste)
        movies = [m for m in found.movies if matches(m, filters)]
        if order in ORDERS:
            movies.sort(key=ORDERS[order])
        view = Paging(page, order, has_next=len(movies) > page * FOR_YOU)
        return _page(found, view.cut(movies), filters, view)
    # The recommender's order: its best page * FOR_YOU, the page the last FOR_YOU of them.
    found = picks.for_user(current_user.id, FOR_YOU * page, taste, record=True)
    full = len(found.movies) == FOR_YOU * page and not found.limited
    view = Paging(page, order, has_next=full and page < site.FOR_YOU_PAGES)
    if found.limited or page > 1:
        return _page(found, view.cut(found.movies), filters, view)
    # Cached picks are the same object on every hit: their page and list HTML are kept.
    return cached_page(
        found,
        lambda: _page(found, found.movies, filters, view, movie_list_html(found, DISMISS_FORM)),
    )


def _page(
    found: picks.Picks,
    movies: tuple[catalog.MovieItem, ...],
    filters: Mapping[str, str | int],
    paging: Paging,
    movies_html: Markup | None = None,
) -> str:
    return render_template(
        "recommendations/for_you.html",
        picks=found,
        movies=movies,
        movies_html=movies_html,
        filters=filters,
        filters_html=filters_html(filters, paging.order),
        paging=paging,
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
