"""What the account page's security section shows and checks: the user's ways in (password,
linked providers), their API tokens, and whether they proved just now that they are
themselves. The section's actions are views of the account page (:mod:`movierec.web.account`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from flask import flash
from flask_login import current_user

from movierec.db.schema import User
from movierec.web.auth import linking, oauth, tokens
from movierec.web.auth.forms import DeleteAccountForm, PasswordForm, TokenForm
from movierec.web.auth.password import check_current_password
from movierec.web.auth.sessions import (
    logged_in_at,
)
from movierec.web.db import database, get_session

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


def reauthentication_problem(password: str) -> str | None:
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


def flash_errors(errors: dict[str, list[str]]) -> None:
    messages = [m for field, found in errors.items() if field != "csrf_token" for m in found]
    flash(" ".join(messages) or "The form was not understood; please try again.", "error")
