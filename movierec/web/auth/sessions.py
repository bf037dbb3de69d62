"""Who is asking: the login session (a cookie) or a personal API token (a Bearer header).

A login session holds the user's id and their *session generation*; the user loader accepts it
only while the generation still matches the database, so raising it (log out everywhere, a new
password, a deleted account) ends every session at once, wherever its cookie is. Each worker
keeps the users it has loaded while the database's change notifications say nothing of them
(movierec.web.changes): another worker may still accept an ended session for the milliseconds
until the notification reaches it, and while the listener is down every request asks the
database.

Under /api/, a request with ``Authorization: Bearer <token>`` is authenticated by that token
alone: the session cookie is ignored for it, and so it needs no CSRF token (a cross-site page
can neither read the token nor make a browser add the header). Every other state-changing
request must carry the CSRF token of its session.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from flask import Flask, abort, current_app, flash, g, jsonify, redirect, request, session, url_for
from flask_login import LoginManager, UserMixin, login_user, logout_user
from sqlalchemy import Row, Select, bindparam, select, true, update
from werkzeug.wrappers import Response

from movierec.db.history import act_as_user
from movierec.db.schema import User
from movierec.web import cache, changes
from movierec.web.auth import tokens
from movierec.web.db import commit, connection, get_session

login_manager = LoginManager()
login_manager.login_message = "Log in to see that page."
GENERATION = "_generation"  # session key beside flask-login's _user_id
BEARER = "Bearer "
READ_ALONG = "read_along"  # the attribute of a view function that @read_along sets
View = TypeVar("View", bound=Callable[..., Any])


@dataclass(frozen=True)
class CurrentUser(UserMixin):
    """The logged-in user as pages see it; holds no database session."""

    id: int
    username: str
    display_name: str | None = None
    is_admin: bool = False
    generation: int = 0
    via_token: bool = False

    @property
    def name(self) -> str:
        """What to call the user on pages: the provider's name for them, else the username."""
        return self.display_name or self.username

    @classmethod
    def of(cls, user: User | Row, via_token: bool = False) -> CurrentUser:
        """From a ``User`` or a row with its columns of the same names."""
        return cls(
            user.id,
            user.username,
            user.display_name,
            bool(user.is_admin),
            user.session_generation,
            via_token,
        )


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    # CSRFProtect's own check is switched off (WTF_CSRF_CHECK_DEFAULT) in favour of this one,
    # which knows that Bearer requests are not made with cookies.
    app.before_request(_authenticate_token_or_check_csrf)


def bearer_token() -> str | None:
    """The API token of this request: only under /api/, only from the Authorization header."""
    header = request.headers.get("Authorization", "")
    if request.path.startswith("/api/") and header.startswith(BEARER):
        return header[len(BEARER) :].strip()
    return None


def _authenticate_token_or_check_csrf() -> None:
    token = bearer_token()
    if token is not None:
        user = tokens.user_for_token(get_session(), token)
        if user is None:
            refused = jsonify(error="invalid or revoked API token")
            refused.status_code = 401
            refused.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
            abort(refused)
        g.token_user = CurrentUser.of(user, via_token=True)
        commit()  # the token's last_used_at, whatever the view goes on to do
        return
    config = current_app.config
    if not config.get("WTF_CSRF_ENABLED", True):
        return
    if request.method not in config.get("WTF_CSRF_METHODS", ("POST", "PUT", "PATCH", "DELETE")):
        return
    current_app.extensions["csrf"].protect()


_USER_COLUMNS = (User.id, User.username, User.display_name, User.is_admin, User.session_generation)
_USER = select(*_USER_COLUMNS).where(User.id == bindparam("user_id"))


class ReadAlong:
    """A statement on ``:user_id`` that a view runs first thing, to be run in the same round
    trip as the logged-in user's row when that must come from the database: on a worker's
    first request of the user, as for every cold "for you" page of the serving bench, whose
    three statements became two (see :func:`read_along`). It must give exactly one row (an
    aggregate, say); the user's row never depends on it (an outer join)."""

    def __init__(self, statement: Select, params: Mapping[str, Any]):
        self.params = dict(params)
        along = statement.lateral("along")
        # The user's columns, then the statement's, whose labels the view's code may read.
        self.joined = (
            select(*_USER_COLUMNS, *along.c)
            .join_from(User, along, true(), isouter=True)
            .where(User.id == bindparam("user_id"))
        )


@dataclass(frozen=True)
class ReadAlongRow:
    """What a :class:`ReadAlong` statement read, and the change stamp taken before."""

    user_id: int
    stamp: int
    values: tuple  # the statement's columns
    named: Mapping[str, Any]  # the whole row's by label (the statement's and the user's)


def read_along(statement: ReadAlong) -> Callable[[View], View]:
    """Mark a view (under ``@login_required``) as reading ``statement`` first thing; it finds
    the row with :func:`read_along_row` when the user's row came with it."""

    def mark(view: View) -> View:
        setattr(view, READ_ALONG, statement)
        return view

    return mark


def read_along_row(user_id: int) -> ReadAlongRow | None:
    """The row the view's :class:`ReadAlong` statement gave with ``user_id``'s own in this
    request, once (None when the user came from this worker's cache)."""
    found = g.pop(READ_ALONG, None)
    return found if found is not None and found.user_id == user_id else None


@login_manager.user_loader
def load_user(user_id: str) -> CurrentUser | None:
    if bearer_token() is not None or not user_id.isdigit():
        return None
    user = _known_user(int(user_id))
    if user is not None and session.get(GENERATION) != user.generation:
        # The session may be newer than this worker's copy (a password set a moment ago,
        # on this worker or another, before the change notification arrived): ask the database.
        user = _known_user(int(user_id), cached=False)
    if user is None or session.get(GENERATION) != user.generation:
        # A session from before "log out everywhere" (or of a deleted user): it ends here.
        session.pop("_user_id", None)
        session.pop(GENERATION, None)
        return None
    return user


def _known_user(user_id: int, cached: bool = True) -> CurrentUser | None:
    """The user from this worker's cache while the change listener heard of no change of
    theirs (a new session generation, a deleted account), else from the database."""
    users = cache.caches().users
    if cached:
        found = users.get(user_id, valid=lambda known: changes.fresh(user_id, known.stamp))
        if found is not None:
            return cast(CurrentUser, found.value)
    stamp = changes.now()
    along = _view_reads_along()
    # Core, on the request's autocommit connection: the ORM's identity-map load and execute
    # machinery, and a transaction's BEGIN and ROLLBACK, cost more than the query itself.
    if along is None:
        row = connection().execute(_USER, {"user_id": user_id}).one_or_none()
    else:
        params = {**along.params, "user_id": user_id}
        row = connection().execute(along.joined, params).one_or_none()
        if row is not None:
            values = tuple(row[len(_USER_COLUMNS) :])
            setattr(g, READ_ALONG, ReadAlongRow(user_id, stamp, values, row._mapping))
    if row is None:
        return None
    user = CurrentUser.of(row)
    users.put(user_id, cache.Stamped(user, stamp))
    return user


def _view_reads_along() -> ReadAlong | None:
    view = current_app.view_functions.get(request.endpoint or "")
    return getattr(view, READ_ALONG, None)


@login_manager.request_loader
def load_token_user(_request: object) -> CurrentUser | None:
    return g.get("token_user")


@login_manager.unauthorized_handler
def unauthorized() -> Response:
    if request.path.startswith("/api/"):
        response = jsonify(error="log in first")
        response.status_code = 401
        return response
    flash(login_manager.login_message, "info")
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def start_session(user: CurrentUser) -> None:
    """Log ``user`` in on a fresh session.

    Nothing set before the login (by anyone who could plant a cookie) carries over, and the
    cookie's value changes: the session is rotated.
    """
    session.clear()
    login_user(user)
    session[GENERATION] = user.generation


def end_session() -> None:
    logout_user()
    session.clear()


def end_all_sessions(user_id: int) -> int:
    """Invalidate every login session of the user (this one too); the new generation.

    The caller commits. Other workers hear of it from the change listener; this one forgets
    its copy now, so a copied cookie is refused here from the next request on.
    """
    forget_user(user_id)
    act_as_user(get_session(), user_id)
    return get_session().scalar(
        update(User)
        .where(User.id == user_id)
        .values(session_generation=User.session_generation + 1)
        .returning(User.session_generation)
    )


def forget_user(user_id: int) -> None:
    """Drop this worker's cached copy of the user, after a change it must not outlive."""
    cache.caches().users.pop(user_id)


def safe_next(target: str | None) -> str | None:
    """``target`` if it is a path on this site, else None (no open redirects)."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return None
    # Browsers read "/\\host" as "//host" and drop tabs and newlines before doing so.
    if "\\" in target or any(ch.isspace() or ord(ch) < 32 for ch in target):
        return None
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else None
