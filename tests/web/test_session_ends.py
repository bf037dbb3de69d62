"""Sessions and API tokens end (issue 19, items 5 and 6): logging out revokes the session
server-side, sessions time out idle and at an absolute lifetime, tokens expire, a new
password or "log out everywhere" revokes every token, and making a token asks who you are.

Two apps on one database stand for two gunicorn workers, each with its own cache of the
sessions it has checked and its own change listener.
"""

from __future__ import annotations

import re
import time
from datetime import timedelta

from sqlalchemy import func, select, update
from test_auth_accounts import as_user
from test_cache import listening, wait_until

from movierec.db.schema import ApiToken, EndedSession
from movierec.web.auth import sessions

NEW_TOKEN = re.compile(r'<code id="new-token">([^<]+)</code>')


def copy_of(client):
    """Another browser holding a copy of ``client``'s session cookie (a stolen one)."""
    thief = client.application.test_client()
    thief.set_cookie("session", client.get_cookie("session").value)
    return thief


def test_a_cookie_copied_before_log_out_is_refused_after_it(client, seed, helpers, database):
    helpers.log_in(client, "ann")
    thief = copy_of(client)
    assert thief.get("/account").status_code == 200

    assert client.post("/auth/logout").status_code == 302

    assert thief.get("/account").status_code == 302  # to the login page
    assert thief.get("/api/ratings").status_code == 401
    with database.session() as s:
        assert s.scalar(select(func.count()).select_from(EndedSession)) == 1
    helpers.log_in(client, "ann")  # logging in again makes a new session, which works
    assert client.get("/account").status_code == 200


def test_log_out_on_one_worker_ends_the_session_another_worker_had_cached(make_app, seed, helpers):
    worker_a, worker_b = make_app().test_client(), make_app().test_client()
    helpers.log_in(worker_a, "ann")
    stolen = copy_of(worker_a)
    log = listening(worker_b.application)
    worker_b.set_cookie("session", stolen.get_cookie("session").value)
    assert worker_b.get("/account").status_code == 200
    stamp = log.now()
    assert worker_b.get("/account").status_code == 200  # from B's cache now

    assert worker_a.post("/auth/logout").status_code == 302

    wait_until(lambda: not log.fresh(seed.ann, stamp))
    assert worker_b.get("/account").status_code == 302


def test_logging_out_one_session_leaves_the_users_other_sessions(make_app, seed, helpers):
    phone, laptop = make_app().test_client(), make_app().test_client()
    helpers.log_in(phone, "ann")
    helpers.log_in(laptop, "ann")
    phone.post("/auth/logout")
    assert laptop.get("/account").status_code == 200


def _shift(client, **seconds_ago: int) -> None:
    """Move the session's login or last-seen time into the past, as time passing would."""
    now = int(time.time())
    keys = {"logged_in": sessions.LOGGED_IN_AT, "seen": sessions.SEEN_AT}
    with client.session_transaction() as session:
        for name, ago in seconds_ago.items():
            session[keys[name]] = now - ago


def test_an_idle_session_ends(make_app, seed, helpers):
    client = make_app(session_idle_minutes=30).test_client()
    helpers.log_in(client, "ann")
    _shift(client, seen=29 * 60)
    assert client.get("/account").status_code == 200  # and it is seen again now
    _shift(client, seen=31 * 60)
    assert client.get("/account").status_code == 302
    assert client.get("/account").status_code == 302  # for good: the login is gone


def test_an_active_session_is_seen_again_without_a_new_cookie_on_every_page(
    make_app, seed, helpers
):
    client = make_app(session_idle_minutes=30).test_client()
    helpers.log_in(client, "ann")
    client.get("/account")  # its forms put a CSRF token into the session
    assert "Set-Cookie" not in client.get("/account").headers  # seen a moment ago
    _shift(client, seen=20 * 60)
    assert "Set-Cookie" in client.get("/account").headers
    with client.session_transaction() as session:
        assert time.time() - session[sessions.SEEN_AT] < 5


def test_a_session_ends_at_its_absolute_lifetime_however_active(make_app, seed, helpers):
    client = make_app(session_lifetime_hours=12).test_client()
    helpers.log_in(client, "ann")
    _shift(client, logged_in=11 * 3600, seen=10)
    assert client.get("/account").status_code == 200
    _shift(client, logged_in=12 * 3600 + 60, seen=10)
    assert client.get("/account").status_code == 302


def test_a_session_from_before_sessions_had_ids_is_refused(client, seed, helpers):
    """A cookie signed by the old code (user id and generation only): its lifetime cannot be
    told, so it ends."""
    with client.session_transaction() as session:
        session["_user_id"] = str(seed.ann)
        session[sessions.GENERATION] = 0
    assert client.get("/account").status_code == 302


def test_ended_sessions_are_kept_only_until_they_would_have_expired(
    client, seed, helpers, database
):
    with database.session() as s:
        s.add(EndedSession(session_id="old", user_id=seed.bob, expires_at=func.now()))
    helpers.log_in(client, "ann")
    client.post("/auth/logout")
    with database.session() as s:
        assert s.scalars(select(EndedSession.user_id)).all() == [seed.ann]


# --- API tokens ------------------------------------------------------------------------------


def make_token(client, password: str | None, **form) -> str | None:
    data = {"name": "script", **form}
    if password is not None:
        data["password"] = password
    page = client.post("/account/tokens", data=data).get_data(as_text=True)
    found = NEW_TOKEN.search(page)
    return found.group(1) if found else None


def works(app, token: str) -> bool:
    answer = app.test_client().get("/api/ratings", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code in (200, 401)
    return answer.status_code == 200


def test_making_a_token_asks_for_the_password(client, seed, helpers, database):
    helpers.log_in(client, "ann")
    assert make_token(client, None) is None
    assert make_token(client, "not my password") is None
    assert "Your password is not right" in client.get("/account").get_data(as_text=True)
    with database.session() as s:
        assert s.scalar(select(func.count()).select_from(ApiToken)) == 0
    token = make_token(client, helpers.password)
    assert token is not None and works(client.application, token)


def test_an_account_without_a_password_makes_tokens_only_right_after_logging_in(client, oauth_only):
    as_user(client, oauth_only, logged_in_ago=3600)
    assert make_token(client, None) is None
    assert "log in again" in client.get("/account").get_data(as_text=True)
    as_user(client, oauth_only, logged_in_ago=60)
    assert make_token(client, None) is not None


def test_tokens_expire(client, seed, helpers, database):
    helpers.log_in(client, "ann")
    token = make_token(client, helpers.password, days="7")
    with database.session() as s:
        made = s.scalar(select(ApiToken.expires_at - ApiToken.created_at))
        assert timedelta(days=7) - made < timedelta(minutes=1)
    assert works(client.application, token)
    with database.session() as s:
        s.execute(update(ApiToken).values(expires_at=func.now() - timedelta(seconds=1)))
    assert not works(client.application, token)


def test_a_token_gets_the_default_lifetime_and_no_more_than_the_maximum(
    make_app, seed, helpers, database
):
    client = make_app(api_token_days=30, api_token_max_days=60).test_client()
    helpers.log_in(client, "ann")
    assert make_token(client, helpers.password) is not None
    assert make_token(client, helpers.password, days="61") is None
    assert "1 to 60 days" in client.get("/account").get_data(as_text=True)
    with database.session() as s:
        lifetimes = s.scalars(select(ApiToken.expires_at - ApiToken.created_at)).all()
    assert len(lifetimes) == 1 and timedelta(days=30) - lifetimes[0] < timedelta(minutes=1)


def test_a_new_password_revokes_every_token(client, seed, helpers):
    helpers.log_in(client, "ann")
    token = make_token(client, helpers.password)
    assert "revokes your API tokens" in client.get("/account").get_data(as_text=True)
    form = {"current": helpers.password, "password": "a brand new passphrase"}
    client.post("/account/password", data={**form, "confirm": form["password"]})
    assert not works(client.application, token)


def test_log_out_everywhere_revokes_every_token_and_says_so(client, seed, helpers):
    helpers.log_in(client, "ann")
    assert "revokes all your API tokens" in client.get("/account").get_data(as_text=True)
    token = make_token(client, helpers.password)
    assert works(client.application, token)
    answer = client.post("/account/logout-everywhere", follow_redirects=True)
    assert "API tokens are revoked" in answer.get_data(as_text=True)
    assert not works(client.application, token)
