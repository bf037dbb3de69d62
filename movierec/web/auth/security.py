"""The account page's security actions: password, linked providers, API tokens, sessions, and
deleting the account. Every one is a POST with the CSRF token, by the logged-in user."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from flask import Blueprint, flash, redirect, url_for
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from movierec.db.schema import User
from movierec.errors import BadInput
from movierec.web.auth import linking, oauth, tokens
from movierec.web.auth.forms import DeleteAccountForm, PasswordForm, TokenForm
from movierec.web.auth.password import check_current_password, passwords
from movierec.web.auth.policy import password_problems
from movierec.web.auth.sessions import (
    end_all_sessions,
    end_session,
    forget_user,
    logged_in_at,
    start_session,
)
from movierec.web.db import commit, database, get_session

bp = Blueprint("security", __name__, url_prefix="/account")
# An account without a password may make a token this long after logging in (through its
# provider, which asked for whatever it asks for).
FRESH_LOGIN_SECONDS = 600


@dataclass(frozen=True)
class LinkRow:
    provider: str
    title: str
    email: str | None
    can_unlink: bool


def account_security(user_id: int) -> dict[str, Any]:
    """What the account page shows of the user's ways in and tokens."""
    db = get_session()
    has_password = db.get_one(User, user_id).password_hash is not None
    linked = linking.identities_of(db, user_id)
    ways_in = len(linked) + int(has_password)
    names = {i.provider for i in linked}
    return {
        "has_password": has_password,
        "linked": [
            LinkRow(i.provider, oauth.provider_title(i.provider), i.email, ways_in > 1)
            for i in linked
        ],
        "linkable": [p for p in oauth.available_providers() if p.name not in names],
        "tokens": tokens.tokens_of(db, user_id),
        "password_form": PasswordForm(),
        "token_form": TokenForm(),
        "token_max_days": database().settings.api_token_max_days,
        "delete_form": DeleteAccountForm(),
    }


@bp.post("/password")
@login_required
def password() -> Response:
    """Set a password (accounts made by a provider have none) or change it."""
    form = PasswordForm()
    db, hashing = get_session(), passwords()
    user = db.get_one(User, current_user.id)
    if not form.validate_on_submit():
        _flash_errors(form.errors)
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
    from movierec.web.account import render_account  # the page this section is part of

    form = TokenForm()
    if not form.validate_on_submit():
        _flash_errors(form.errors)
        return redirect(url_for("account.index"))
    refusal = _reauthentication_problem(form.password.data or "")
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


def _reauthentication_problem(password: str) -> str | None:
    """Why the logged-in user has not shown just now that they are themselves; None when
    they have."""
    user = get_session().get_one(User, current_user.id)
    if user.password_hash is not None:
        if check_current_password(user.username, user.password_hash, password):
            return None
        return "Your password is not right: a token needs your password."
    logged_in = logged_in_at()
    if logged_in is not None and time.time() - logged_in <= FRESH_LOGIN_SECONDS:
        return None
    minutes = FRESH_LOGIN_SECONDS // 60
    return (
        f"Log out and log in again (a token can be made within {minutes} minutes of a login), "
        "or set a password."
    )


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


def _flash_errors(errors: dict[str, list[str]]) -> None:
    messages = [m for field, found in errors.items() if field != "csrf_token" for m in found]
    flash(" ".join(messages) or "The form was not understood; please try again.", "error")
