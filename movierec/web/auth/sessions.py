"""Who is asking: the login session (a cookie) or a personal API token (a Bearer header).

A login session (the signed cookie) holds the user's id, their *session generation*, a random
session id, when the user logged in and when the session was last seen. The user loader
accepts it only

* while the generation still matches the database: raising it (log out everywhere, a new
  password, a deleted account) ends every session of the user at once, wherever its cookie is;
* while its id is not among the ``ended_sessions``: logging out records it there, so a copy
  of the cookie taken before is refused too (until it would have expired anyway, when the row
  may go);
* for ``session_idle_minutes`` after it was last seen and ``session_lifetime_hours`` after
  the login, whatever happens. Both times are in the signed cookie, which only the server can
  write; "last seen" is rewritten at most every eighth of the idle time, so that most pages
  send no new cookie.

Each worker keeps the sessions it has checked while the database's change notifications say
nothing of their user (movierec.web.changes; an ended session notifies its user): another
worker may still accept an ended session for the milliseconds until the notification reaches
it, and while the listener is down every request asks the database. A cached session costs a
request nothing more than before; on a miss, whether the session ended is read with the
user's row, in the same statement.

Under /api/, a request with ``Authorization: Bearer <token>`` is authenticated by that token
alone: the session cookie is ignored for it, and so it needs no CSRF token (a cross-site page
can neither read the token nor make a browser add the header). Every other state-changing
request must carry the CSRF token of its session.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import urlsplit

from flask import Flask, abort, current_app, flash, g, jsonify, redirect, request, session, url_for
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from sqlalchemy import Row, Select, bindparam, delete, exists, func, select, true, update
from sqlalchemy.dialects.postgresql import insert
from werkzeug.wrappers import Response

from movierec.db.history import act_as_user
from movierec.db.schema import ApiToken, EndedSession, User
from movierec.web import cache, changes
from movierec.web.auth import tokens
from movierec.web.db import commit, connection, get_session

login_manager = LoginManager()
login_manager.login_message = "Log in to see that page."
GENERATION = "_generation"  # session key beside flask-login's _user_id
SESSION_ID = "_sid"  # random, new at every login: what logging out records as ended
LOGGED_IN_AT = "_auth"  # Unix time of the login: the absolute lifetime counts from it
SEEN_AT = "_seen"  # Unix time the session was last seen, to an eighth of the idle timeout
LOGIN_KEYS = ("_user_id", "_fresh", "_id", GENERATION, SESSION_ID, LOGGED_IN_AT, SEEN_AT)
IDLE = "SESSION_IDLE_SECONDS"  # Flask config, from session_idle_minutes
LIFETIME = "SESSION_LIFETIME_SECONDS"  # Flask config, from session_lifetime_hours
BEARER = "Bearer "
# What a login to an account an administrator locked (``movierec users lock``) is told.
LOCKED = "This account is locked; ask the site's administrators."
# The g key of the session's user as this request found or read them: (user id, session
# id), user.
SESSION_USER = "session_user"


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


_USER_COLUMNS = (
    User.id, User.username, User.display_name, User.is_admin, User.session_generation,
    exists().where(EndedSession.session_id == bindparam("session_id")).label("session_ended"),
    User.locked_at.isnot(None).label("locked"),
)  # fmt: skip
_USER = select(*_USER_COLUMNS).where(User.id == bindparam("user_id"))


class WithUser:
    """A statement on ``:user_id`` to read in the same round trip as the session user's row,
    when that row must come from the database (:func:`read_with_user`). It must give exactly
    one row (an aggregate, say); the user's row never depends on it (an outer join)."""

    def __init__(self, statement: Select, params: Mapping[str, Any]):
        self.params = dict(params)
        along = statement.lateral("along")
        # The user's columns, then the statement's, whose labels the caller may read.
        self.joined = (
            select(*_USER_COLUMNS, *along.c)
            .join_from(User, along, true(), isouter=True)
            .where(User.id == bindparam("user_id"))
        )


@dataclass(frozen=True)
class ReadWithUser:
    """What a :class:`WithUser` statement read, and the change stamp taken before."""

    user_id: int
    stamp: int
    values: tuple  # the statement's columns
    named: Mapping[str, Any]  # the whole row's by label (the statement's and the user's)


def read_with_user(statement: WithUser) -> ReadWithUser | None:
    """Read ``statement`` for this request's session user in one statement with the user's
    own row, when the user loader would have to read that row from the database (a worker's
    first request of the user, a change of theirs heard of since, the change listener down):
    an explicit prefetch, which saves such a request a round trip. None when the loader
    needs no statement (the user is known here) or nobody is logged in with a session; the
    caller reads what it needs itself then.

    A view calls it first thing, before anything asks for ``current_user``, and checks the
    login itself after it; the loader then takes the user read here (and refuses a session
    past its time, as ever).
    """
    user_id, session_id = session.get("_user_id"), session.get(SESSION_ID)
    if not (isinstance(user_id, str) and user_id.isdigit() and isinstance(session_id, str)):
        return None
    if _cached_user(int(user_id), session_id) is not None or bearer_token() is not None:
        return None
    stamp = changes.now()
    params = {**statement.params, "user_id": int(user_id), "session_id": session_id}
    row = connection().execute(statement.joined, params).one_or_none()
    if row is None:
        return None
    _remember(int(user_id), session_id, row, stamp)
    return ReadWithUser(int(user_id), stamp, tuple(row[len(_USER_COLUMNS) :]), row._mapping)


@login_manager.user_loader
def load_user(user_id: str) -> CurrentUser | None:
    if bearer_token() is not None or not user_id.isdigit():
        return None
    session_id = _live_session_id()
    user = None if session_id is None else _known_user(int(user_id), session_id)
    if user is not None and session.get(GENERATION) != user.generation:
        # The session may be newer than this worker's copy (a password set a moment ago,
        # on this worker or another, before the change notification arrived): ask the database.
        user = _known_user(int(user_id), session_id, cached=False)
    if user is None or session.get(GENERATION) != user.generation:
        # Idle or too old, logged out, from before "log out everywhere", or of a deleted
        # user: it ends here.
        for key in LOGIN_KEYS:
            session.pop(key, None)
        return None
    _seen_now()
    return user


def _live_session_id() -> str | None:
    """The session's id while it is within its idle timeout and its lifetime, else None
    (so is a session from before sessions had ids)."""
    session_id, logged_in, seen = (session.get(k) for k in (SESSION_ID, LOGGED_IN_AT, SEEN_AT))
    if not (isinstance(session_id, str) and isinstance(logged_in, int) and isinstance(seen, int)):
        return None
    now = time.time()
    config = current_app.config
    if now - logged_in > config[LIFETIME] or now - seen > config[IDLE]:
        return None
    return session_id


def _seen_now() -> None:
    now = int(time.time())
    if now - session[SEEN_AT] >= current_app.config[IDLE] // 8:
        session[SEEN_AT] = now


def _known_user(user_id: int, session_id: str, cached: bool = True) -> CurrentUser | None:
    """The user of a session that was not logged out: this worker's copy while the change
    listener heard of no change of theirs (a new session generation, a deleted account, a
    session logged out), or the one read in this request; else read from the database."""
    if cached:
        found = _cached_user(user_id, session_id)
        if found is not None:
            return found
    stamp = changes.now()
    params = {"user_id": user_id, "session_id": session_id}
    # Core, on the request's autocommit connection: the ORM's identity-map load and execute
    # machinery, and a transaction's BEGIN and ROLLBACK, cost more than the query itself.
    row = connection().execute(_USER, params).one_or_none()
    return _remember(user_id, session_id, row, stamp)


def _cached_user(user_id: int, session_id: str) -> CurrentUser | None:
    """The session's user as this request or this worker knows them, if either does."""
    read = g.get(SESSION_USER)
    if read is not None and read[0] == (user_id, session_id):
        return cast(CurrentUser, read[1])
    found = cache.caches().users.get(
        (user_id, session_id), valid=lambda known: changes.fresh(user_id, known.stamp)
    )
    if found is None:
        return None
    g.setdefault(SESSION_USER, ((user_id, session_id), found.value))
    return cast(CurrentUser, found.value)


def _remember(user_id: int, session_id: str, row: Row | None, stamp: int) -> CurrentUser | None:
    """The user of ``row`` (read at ``stamp``), kept for this request and this worker; None
    for no row, a session that was logged out or a locked account (``movierec users lock``:
    its generation was raised too, but a lock must hold even against a login made since)."""
    if row is None or row.session_ended or row.locked:
        return None
    user = CurrentUser.of(row)
    cache.caches().users.put((user_id, session_id), cache.Stamped(user, stamp))
    setattr(g, SESSION_USER, ((user_id, session_id), user))
    return user


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
    now = int(time.time())
    session[GENERATION] = user.generation
    session[SESSION_ID] = secrets.token_urlsafe(24)
    session[LOGGED_IN_AT] = now
    session[SEEN_AT] = now


def logged_in_at() -> int | None:
    """When this session's user logged in (Unix time), for actions that want a fresh login."""
    found = session.get(LOGGED_IN_AT)
    return found if isinstance(found, int) else None


def end_session(revoke: bool = True) -> None:
    """Log out of this session. With ``revoke`` (log out), its id is recorded as ended
    first, so that a copy of its cookie is refused too; without (the whole account's
    sessions ended, or the account deleted), the cookie is only cleared.

    Raises :class:`DatabaseUnavailable` when the end cannot be recorded: then nothing is
    cleared and the user can try again."""
    session_id, logged_in = session.get(SESSION_ID), logged_in_at()
    user = current_user._get_current_object() if current_user.is_authenticated else None
    if revoke and user is not None and isinstance(session_id, str) and logged_in is not None:
        lifetime = current_app.config[LIFETIME]
        expires = datetime.fromtimestamp(logged_in + lifetime, UTC)
        db = get_session()
        # The ids of sessions that have expired anyway need not be kept.
        db.execute(delete(EndedSession).where(EndedSession.expires_at < func.now()))
        db.execute(
            insert(EndedSession)
            .values(session_id=session_id, user_id=user.id, expires_at=expires)
            .on_conflict_do_nothing()
        )
        commit()
        forget_user(user.id)
    logout_user()
    session.clear()


def end_all_sessions(user_id: int) -> int:
    """End every login session of the user (this one too) and revoke every API token of
    theirs; the new generation.

    Whoever ends all sessions (a new password, "log out everywhere") suspects someone else
    has a way in: a token made from a stolen session is one. The caller commits. Other
    workers hear of it from the change listener; this one forgets its copy now, so a copied
    cookie is refused here from the next request on.
    """
    forget_user(user_id)
    db = get_session()
    act_as_user(db, user_id)
    db.execute(delete(ApiToken).where(ApiToken.user_id == user_id))
    return db.scalar(
        update(User)
        .where(User.id == user_id)
        .values(session_generation=User.session_generation + 1)
        .returning(User.session_generation)
    )


def forget_user(user_id: int) -> None:
    """Make this worker's cached sessions of the user stale, after a change they must not
    outlive (the other workers hear of it from the change notification)."""
    changes.changed_here(user_id)


def safe_next(target: str | None) -> str | None:
    """``target`` if it is a path on this site, else None (no open redirects)."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return None
    # Browsers read "/\\host" as "//host" and drop tabs and newlines before doing so.
    if "\\" in target or any(ch.isspace() or ord(ch) < 32 for ch in target):
        return None
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else None
