"""The user's own page: ratings, recent searches, preferred genres, and (from
:mod:`movierec.web.auth.security`) passwords, linked providers, API tokens and deletion."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from movierec.web import cache
from movierec.web.auth.security import account_security
from movierec.web.db import commit, get_session, wrote
from movierec.web.forms import PreferencesForm, UndoNotInterestedForm
from movierec.web.users import (
    dismissed_movies,
    preferred_genres,
    ratings_of,
    recent_searches,
    save_preferred_genres,
)
from movierec.wire import site
from movierec.wire.params import read_valid

bp = Blueprint("account", __name__, url_prefix="/account")


@bp.get("")
@login_required
def index() -> str:
    return render_account()


def render_account(new_token: str | None = None) -> str:
    """The account page; ``new_token`` is an API token just made, shown this once."""
    session = get_session()
    found, problems = read_valid([site.RATINGS_PAGE], request.args)
    if problems:
        flash(f"{'; '.join(problems)}: showing the first page.", "error")
    page_number = found.get("page", 1)
    ratings, more = ratings_of(session, current_user.id, page_number)
    form = PreferencesForm(genres=preferred_genres(session, current_user.id))
    return render_template(
        "account/index.html",
        ratings=ratings,
        page=page_number,
        more=more,
        searches=recent_searches(session, current_user.id),
        dismissed=dismissed_movies(session, current_user.id),
        undo_form=UndoNotInterestedForm(),
        form=form,
        new_token=new_token,
        **account_security(current_user.id),
    )


@bp.post("/genres")
@login_required
def genres() -> Response:
    form = PreferencesForm()
    if form.validate_on_submit():
        save_preferred_genres(get_session(), current_user.id, form.genres.data or [])
        commit()
        wrote()
        cache.after_taste_change(current_user.id)
        flash("Preferred genres saved.", "info")
    else:
        flash("Those genres were not understood.", "error")
    return redirect(url_for("account.index"))
