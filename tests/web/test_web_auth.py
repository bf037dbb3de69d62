"""Sign up, log in, log out; CSRF on every form; safe redirects after login."""

from __future__ import annotations

import pytest
from argon2 import Type
from sqlalchemy import select

from movierec.db import Rating, User
from movierec.web.auth import BAD_LOGIN, HASHER, safe_next


def test_signup_login_rate_logout_flow_with_csrf_on(make_app, seed, database, helpers):
    client = make_app(WTF_CSRF_ENABLED=True).test_client()

    token = helpers.csrf_token(client, "/auth/signup")
    form = {"username": "carol", "password": "long enough pw", "confirm": "long enough pw"}
    assert client.post("/auth/signup", data=form).status_code == 400  # no token
    response = client.post("/auth/signup", data={**form, "csrf_token": token})
    assert response.status_code == 302
    assert "Log out carol" in client.get("/").get_data(as_text=True)

    token = helpers.csrf_token(client, f"/movies/{seed.heat}")
    response = client.post(f"/movies/{seed.heat}/rating", data={"rating": "2.5"})
    assert response.status_code == 400  # the rate form needs its token too
    response = client.post(
        f"/movies/{seed.heat}/rating", data={"rating": "2.5", "csrf_token": token}
    )
    assert response.status_code == 302

    assert client.post("/auth/logout").status_code == 400
    token = helpers.csrf_token(client, "/")
    client.post("/auth/logout", data={"csrf_token": token})
    assert "Log in" in client.get("/").get_data(as_text=True)

    token = helpers.csrf_token(client, "/auth/login")
    response = helpers.log_in(client, "carol", "long enough pw", token=token)
    assert response.status_code == 302
    assert "Log out carol" in client.get("/").get_data(as_text=True)
    with database.session() as s:
        carol = s.scalar(select(User).where(User.username == "carol"))
        assert carol.password_hash.startswith("$argon2id$")
        assert s.scalar(select(Rating.rating).where(Rating.user_id == carol.id)) == 2.5


def test_apps_hash_with_argon2ids_default_costs_unless_configured(make_app):
    default = make_app(ARGON2_PARAMETERS=None).extensions[HASHER].hasher
    assert default.type is Type.ID
    assert (default.time_cost, default.memory_cost) == (3, 65536)


def test_wrong_password_and_unknown_user_get_the_same_generic_error(client, seed, helpers):
    for username, password in (("ann", "wrong password"), ("nobody", helpers.password)):
        response = helpers.log_in(client, username, password)
        assert response.status_code == 200
        page = response.get_data(as_text=True)
        assert BAD_LOGIN in page
        assert "Log out" not in page
    assert client.get("/for-you").status_code == 302  # still anonymous


def test_user_without_a_password_cannot_log_in(client, database, helpers):
    with database.session() as s:
        s.add(User(username="imported", password_hash=None))
    # The second is the password of the hash checked for users who have none.
    for password in ("anything at all", "not a password anyone has"):
        page = helpers.log_in(client, "imported", password).get_data(as_text=True)
        assert BAD_LOGIN in page
        assert "Log out" not in page


def test_signup_rejects_short_passwords_taken_names_and_mismatches(client, seed):
    def signup(username, password, confirm=None):
        data = {"username": username, "password": password, "confirm": confirm or password}
        return client.post("/auth/signup", data=data).get_data(as_text=True)

    assert "at least 10" in signup("dave", "short")
    assert "That username is taken." in signup("ann", "long enough pw")
    assert "Passwords differ." in signup("dave", "long enough pw", "other password")
    assert "Use letters" in signup("<b>dave</b>", "long enough pw")


def test_login_redirects_to_next_only_on_this_site(client, seed, helpers):
    def login_next(target):
        client.post("/auth/logout")
        response = client.post(
            "/auth/login",
            query_string={"next": target},
            data={"username": "ann", "password": helpers.password},
        )
        assert response.status_code == 302
        return response.headers["Location"]

    assert login_next("/account?page=2") == "/account?page=2"
    assert login_next("https://evil.example/") == "/"
    assert login_next("//evil.example/") == "/"


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/movies/1", "/movies/1"),
        ("/search?q=heat", "/search?q=heat"),
        (None, None),
        ("", None),
        ("movies/1", None),
        ("http://evil.example/", None),
        ("//evil.example", None),
        ("/\\evil.example", None),
        ("/\t/evil.example", None),
        ("javascript:alert(1)", None),
    ],
)
def test_safe_next(target, expected):
    assert safe_next(target) == expected


def test_login_required_pages_send_anonymous_users_to_login(client):
    response = client.get("/for-you")
    assert response.status_code == 302
    assert response.headers["Location"] == "/auth/login?next=/for-you"


def test_login_starts_a_fresh_session(client, seed, helpers):
    with client.session_transaction() as session:
        session["planted"] = "by someone else"
    helpers.log_in(client)
    with client.session_transaction() as session:
        assert "planted" not in session
        assert session["_user_id"] == str(seed.ann)


def test_logout_ends_the_session(client, seed, helpers):
    helpers.log_in(client)
    assert client.get("/account").status_code == 200
    client.post("/auth/logout")
    assert client.get("/account").status_code == 302
