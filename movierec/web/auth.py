"""Sign up, log in and log out with a username and a password (argon2id hashes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

from argon2 import Parameters, PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import (
    Blueprint,
    Flask,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import LoginManager, UserMixin, login_user, logout_user
from werkzeug.wrappers import Response

from movierec.db.schema import User
from movierec.web.db import commit, get_session
from movierec.web.forms import LoginForm, SignupForm
from movierec.web.users import create_user, set_password_hash, user_by_name

bp = Blueprint("auth", __name__, url_prefix="/auth")
login_manager = LoginManager()
login_manager.login_message = "Log in to see that page."
HASHER = "movierec.password_hasher"
BAD_LOGIN = "Invalid username or password."


@dataclass(frozen=True)
class CurrentUser(UserMixin):
    """The logged-in user as pages see it; holds no database session."""

    id: int
    username: str


class Passwords:
    """argon2id hashing; ``ARGON2_PARAMETERS`` in the Flask config overrides the costs."""

    def __init__(self, params: Parameters | None = None):
        self.hasher = PasswordHasher.from_parameters(params) if params else PasswordHasher()
        # Verified against when the username does not exist, so that a miss costs as long as a
        # wrong password and response times do not reveal which usernames exist.
        self.dummy_hash = self.hasher.hash("not a password anyone has")


def init_app(app: Flask) -> None:
    app.extensions[HASHER] = Passwords(app.config.get("ARGON2_PARAMETERS"))
    login_manager.init_app(app)
    app.register_blueprint(bp)


def passwords() -> Passwords:
    return cast(Passwords, current_app.extensions[HASHER])


@login_manager.user_loader
def load_user(user_id: str) -> CurrentUser | None:
    if not user_id.isdigit():
        return None
    user = get_session().get(User, int(user_id))
    return CurrentUser(user.id, user.username) if user else None


@login_manager.unauthorized_handler
def unauthorized() -> Response:
    if request.path.startswith("/api/"):
        response = jsonify(error="log in first")
        response.status_code = 401
        return response
    flash(login_manager.login_message, "info")
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


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
            _start_session(CurrentUser(user_id, form.username.data))
            flash("Welcome! Rate a few movies to get recommendations.", "info")
            return redirect(url_for("movies.index"))
    return render_template("auth/signup.html", form=form)


@bp.route("/login", methods=("GET", "POST"))
def login() -> Response | str:
    form = LoginForm()
    if form.validate_on_submit():
        user = _check_password(form.username.data, form.password.data)
        if user is not None:
            _start_session(user)
            return redirect(safe_next(request.args.get("next")) or url_for("movies.index"))
        flash(BAD_LOGIN, "error")
    return render_template("auth/login.html", form=form)


@bp.post("/logout")
def logout() -> Response:
    # A POST, so that CSRFProtect guards it: a link elsewhere cannot log anyone out.
    logout_user()
    session.clear()
    flash("You are logged out.", "info")
    return redirect(url_for("movies.index"))


def _check_password(username: str, password: str) -> CurrentUser | None:
    """The user when ``password`` is theirs; None for any failure, told apart to no one."""
    db, hashing = get_session(), passwords()
    user = user_by_name(db, username)
    stored = user.password_hash if user is not None and user.password_hash else None
    try:
        hashing.hasher.verify(stored or hashing.dummy_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None or stored is None:
        return None
    if hashing.hasher.check_needs_rehash(stored):
        set_password_hash(db, user.id, hashing.hasher.hash(password))
        commit()
    return CurrentUser(user.id, user.username)


def _start_session(user: CurrentUser) -> None:
    # A fresh session on every login, so that nothing set before it (by anyone who could plant
    # a cookie) carries over into the logged-in session.
    session.clear()
    login_user(user)


def safe_next(target: str | None) -> str | None:
    """``target`` if it is a path on this site, else None (no open redirects)."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return None
    # Browsers read "/\\host" as "//host" and drop tabs and newlines before doing so.
    if "\\" in target or any(ch.isspace() or ord(ch) < 32 for ch in target):
        return None
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else None
