"""The user's own page, one blueprint: ratings, recent searches, preferred genres, "not
interested" movies, and its security section (what it shows: :mod:`movierec.web.auth.security`):
the password, linked providers, API tokens, logging out everywhere and deleting the account.
Every action is a POST with the CSRF token, by the logged-in user."""

from __future__ import annotations

from dataclasses import replace

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from movierec.db.schema import User
from movierec.errors import BadInput
from movierec.web.auth import linking, oauth, tokens
from movierec.web.auth.forms import DeleteAccountForm, PasswordForm, TokenForm
from movierec.web.auth.password import check_current_password, passwords
from movierec.web.auth.policy import password_problems
from movierec.web.auth.security import account_security, flash_errors, reauthentication_problem
from movierec.web.auth.sessions import end_all_sessions, end_session, forget_user, start_session
from movierec.web.db import commit, database, get_session
from movierec.web.forms import PreferencesForm, UndoNotInterestedForm
from movierec.web.users import (
    dismissed_movies,
    preferred_genres,
    ratings_of,
    recent_searches,
    save_preferred_genres,
)
from movierec.web.writes import commit_taste_change
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
        commit_taste_change()
        flash("Preferred genres saved.", "info")
    else:
        flash("Those genres were not understood.", "error")
    return redirect(url_for("account.index"))


@bp.post("/password")
@login_required
def password() -> Response:
    """Set a password (accounts made by a provider have none) or change it."""
    form = PasswordForm()
    db, hashing = get_session(), passwords()
    user = db.get_one(User, current_user.id)
    if not form.validate_on_submit():
        flash_errors(form.errors)
        return redirect(url_for("account.index"))
    had_password = user.password_hash is not None
    if had_password and not check_current_password(
        user.username, user.password_hash, form.current.data or ""
    ):
        flash("Your current password is not right.", "error")
        return redirect(url_for("account.index"))
    problems = password_problems(form.password.data, user.username)
    if problems:
        flash(" ".join(problems), "error")
        return redirect(url_for("account.index"))
    linking.blame(db, user.id)
    user.password_hash = hashing.hasher.hash(form.password.data)
    # A new password ends every other session and revokes the tokens (a stolen session, or a
    # token made from one, may be why it was changed).
    generation = end_all_sessions(user.id)
    commit()
    start_session(replace(current_user._get_current_object(), generation=generation))
    flash("Password changed." if had_password else "Password set.", "info")
    return redirect(url_for("account.index"))


@bp.post("/identities/<provider>/unlink")
@login_required
def unlink(provider: str) -> Response:
    try:
        linking.unlink(get_session(), current_user.id, provider)
    except BadInput as exc:
        flash(str(exc), "error")
    else:
        commit()
        flash(f"{oauth.provider_title(provider)} is unlinked.", "info")
    return redirect(url_for("account.index"))


@bp.post("/tokens")
@login_required
def create_token() -> Response | str:
    """Make an API token and show it, this once, for the user who proves they are there:
    their password, or for an account without one a login less than
    :data:`FRESH_LOGIN_SECONDS` old (through their provider)."""
    form = TokenForm()
    if not form.validate_on_submit():
        flash_errors(form.errors)
        return redirect(url_for("account.index"))
    refusal = reauthentication_problem(form.password.data or "")
    if refusal:
        flash(refusal, "error")
        return redirect(url_for("account.index"))
    settings = database().settings
    days = form.days.data or settings.api_token_days
    try:
        token = tokens.create_token(
            get_session(), current_user.id, form.name.data, days, settings.api_token_max_days
        )
    except BadInput as exc:
        flash(str(exc), "error")
        return redirect(url_for("account.index"))
    commit()
    return render_account(new_token=token)


@bp.post("/tokens/<id:token_id>/revoke")
@login_required
def revoke_token(token_id: int) -> Response:
    if tokens.revoke_token(get_session(), current_user.id, token_id):
        commit()
        flash("The token is revoked: scripts using it are refused from now on.", "info")
    else:
        flash("No such token.", "error")
    return redirect(url_for("account.index"))


@bp.post("/logout-everywhere")
@login_required
def logout_everywhere() -> Response:
    end_all_sessions(current_user.id)
    commit()
    end_session(revoke=False)  # ended with all the others
    flash("You are logged out everywhere, on this device too, and your API tokens are revoked.",
          "info")  # fmt: skip
    return redirect(url_for("auth.login"))


@bp.post("/delete")
@login_required
def delete() -> Response:
    """Delete the account and everything in it, after the username is typed to confirm."""
    form = DeleteAccountForm()
    if not form.validate_on_submit() or form.confirm.data != current_user.username:
        flash("Type your username exactly to confirm that the account should go.", "error")
        return redirect(url_for("account.index"))
    linking.delete_account(get_session(), current_user.id)
    commit()
    forget_user(current_user.id)
    end_session(revoke=False)  # the account is gone, its sessions with it
    flash("Your account, your ratings and everything else of yours are deleted.", "info")
    return redirect(url_for("movies.index"))
