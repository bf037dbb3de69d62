"""Sign up, log in and log out with a username and a password (argon2id hashes)."""

from __future__ import annotations

import math
from typing import cast

from argon2 import Parameters, PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import (
    Blueprint,
    Flask,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.exceptions import TooManyRequests
from werkzeug.wrappers import Response

from movierec.errors import BadInput
from movierec.web.auth import oauth, throttle
from movierec.web.auth.forms import LoginForm, SignupForm
from movierec.web.auth.limits import THROTTLE, TOO_MANY
from movierec.web.auth.sessions import (
    LOCKED,
    CurrentUser,
    end_session,
    safe_next,
    start_session,
)
from movierec.web.auth.throttle import LoginThrottle
from movierec.web.db import commit, get_session
from movierec.web.users import create_user, set_password_hash, user_by_name

bp = Blueprint("auth", __name__, url_prefix="/auth")
HASHER = "movierec.password_hasher"
BAD_LOGIN = "Invalid username or password."


class Passwords:
    """argon2id hashing; ``ARGON2_PARAMETERS`` in the Flask config overrides the costs."""

    def __init__(self, params: Parameters | None = None):
        self.hasher = PasswordHasher.from_parameters(params) if params else PasswordHasher()
        # Verified against when the username does not exist, so that a miss costs as long as a
        # wrong password and response times do not reveal which usernames exist.
        self.dummy_hash = self.hasher.hash("not a password anyone has")

    def verify(self, stored: str | None, password: str) -> bool:
        """Whether ``password`` matches ``stored``; with no hash, as slow as a real check."""
        try:
            self.hasher.verify(stored or self.dummy_hash, password)
        except (VerificationError, InvalidHashError):
            return False
        return stored is not None


def init_app(app: Flask) -> None:
    app.extensions[HASHER] = Passwords(app.config.get("ARGON2_PARAMETERS"))
    app.register_blueprint(bp)


def passwords() -> Passwords:
    return cast(Passwords, current_app.extensions[HASHER])


@bp.route("/signup", methods=("GET", "POST"))
def signup() -> Response | str:
    form = SignupForm()
    if form.validate_on_submit():
        password_hash = passwords().hasher.hash(form.password.data)
        user_id = create_user(get_session(), form.username.data, password_hash)
        if user_id is None:
            form.username.errors.append("That username is taken.")
        else:
            commit()
            start_session(CurrentUser(user_id, form.username.data))
            return redirect(url_for("onboarding.genres"))  # the first visit's two steps
    return render_template("auth/signup.html", form=form)


@bp.route("/login", methods=("GET", "POST"))
def login() -> Response | str:
    form = LoginForm()
    target = safe_next(request.args.get("next"))
    if form.validate_on_submit():
        account, address = _attempt(form.username.data)
        try:
            user = check_password(form.username.data, form.password.data)
        except BadInput as locked:
            flash(str(locked), "error")
        else:
            if user is not None:
                _guard().succeeded(account, address)
                start_session(user)
                response = redirect(target or url_for("movies.index"))
                throttle.remember_device(response, account)
                return response
            flash(BAD_LOGIN, "error")
    return render_template(
        "auth/login.html", form=form, providers=oauth.available_providers(), next=target
    )


@bp.post("/logout")
def logout() -> Response:
    # A POST, so that the CSRF check guards it: a link elsewhere cannot log anyone out.
    end_session()
    flash("You are logged out.", "info")
    return redirect(url_for("movies.index"))


def check_current_password(username: str, stored: str, password: str) -> bool:
    """Whether ``password`` is the logged-in user's (``stored`` hash), counted as a login
    attempt: a stolen session must not become a way to guess the password without limits
    (the password change and token forms ask for it). Raises :class:`TooManyRequests`."""
    account, address = _attempt(username)
    if not passwords().verify(stored, password):
        return False
    _guard().succeeded(account, address)
    return True


def _attempt(username: str) -> tuple[str, str]:
    """Count a password attempt on ``username``'s account from this client, before the
    password is checked (parallel guesses cannot overtake the count); the account and
    address it was counted as. Raises :class:`TooManyRequests` when it must wait."""
    account = username.strip().lower()[:64]
    address = request.remote_addr or ""
    guard = _guard()
    known = throttle.device_knows(account) or guard.known_address(account, address)
    wait = guard.admit(account, address, known)
    if wait > 0:
        raise TooManyRequests(TOO_MANY, retry_after=math.ceil(wait))
    return account, address


def _guard() -> LoginThrottle:
    return cast(LoginThrottle, current_app.extensions[THROTTLE])


def check_password(username: str, password: str) -> CurrentUser | None:
    """The user when ``password`` is theirs; None for any failure, told apart to no one.
    Raises :class:`BadInput` (:data:`LOCKED`) when it is theirs and the account is locked."""
    db, hashing = get_session(), passwords()
    user = user_by_name(db, username)
    stored = user.password_hash if user is not None and user.password_hash else None
    if not hashing.verify(stored, password) or user is None or stored is None:
        return None
    if user.locked_at is not None:  # told only to whoever knows the password
        raise BadInput(LOCKED)
    if hashing.hasher.check_needs_rehash(stored):
        set_password_hash(db, user.id, hashing.hasher.hash(password))
        commit()
    return CurrentUser.of(user)
