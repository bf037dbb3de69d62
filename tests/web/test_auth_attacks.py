"""Attacks that must fail: missing CSRF tokens, session fixation, login brute force, open
redirects, SQL injection, XSS, reading someone else's data through the API.

(Forged and replayed OAuth callbacks: test_oauth_browser.py and test_auth_oauth.py.)
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest
from sqlalchemy import func, select

from movierec.db import Movie, Rating, User
from movierec.db.local_server import free_port
from movierec.web.auth.limits import TOO_MANY
from movierec.web.auth.tokens import create_token


@pytest.fixture
def csrf_client(make_app):
    return make_app(WTF_CSRF_ENABLED=True).test_client()


def logged_in(client, helpers, username="ann"):
    token = helpers.csrf_token(client, "/auth/login")
    assert helpers.log_in(client, username, token=token).status_code == 302
    return helpers.csrf_token(client, "/account")


FORM_POSTS = (
    "/auth/logout",
    "/account/genres",
    "/account/password",
    "/account/tokens",
    "/account/tokens/1/revoke",
    "/account/logout-everywhere",
    "/account/delete",
    "/account/identities/oidc/unlink",
    "/movies/2/rating",
    "/movies/2/rating/delete",
)


def test_every_form_post_without_its_csrf_token_is_refused(csrf_client, seed, helpers):
    token = logged_in(csrf_client, helpers)
    form = {"confirm": "ann", "password": "a new long password", "name": "x", "rating": "3"}
    for path in FORM_POSTS:
        response = csrf_client.post(path, data=form)
        assert response.status_code == 400, path
        assert "CSRF" in response.get_data(as_text=True), path
        wrong = csrf_client.post(path, data={**form, "csrf_token": token[:-4] + "AAAA"})
        assert wrong.status_code == 400, path
    assert csrf_client.get("/account").status_code == 200  # still logged in, nothing done


def test_deleting_an_account_without_csrf_token_deletes_nothing(
    csrf_client, seed, helpers, database
):
    logged_in(csrf_client, helpers)
    assert csrf_client.post("/account/delete", data={"confirm": "ann"}).status_code == 400
    with database.session() as s:
        assert s.get(User, seed.ann) is not None


def test_session_fixation_a_planted_session_is_not_the_logged_in_one(client, seed, helpers):
    client.get("/auth/login")
    with client.session_transaction() as session:
        session["planted"] = "by the attacker"
    planted = client.get_cookie("session").value

    helpers.log_in(client)

    logged_in_cookie = client.get_cookie("session").value
    assert logged_in_cookie != planted
    with client.session_transaction() as session:
        assert "planted" not in session
    # The attacker still holding the planted cookie is not logged in as ann.
    attacker = client.application.test_client()
    attacker.set_cookie("session", planted)
    assert attacker.get("/account").status_code == 302
    victim = client.application.test_client()
    victim.set_cookie("session", logged_in_cookie)
    assert victim.get("/account").status_code == 200


def test_log_out_everywhere_ends_a_copied_session_cookie(client, seed, helpers):
    helpers.log_in(client)
    stolen = client.application.test_client()
    stolen.set_cookie("session", client.get_cookie("session").value)
    assert stolen.get("/account").status_code == 200

    assert client.post("/account/logout-everywhere").status_code == 302

    assert stolen.get("/account").status_code == 302
    assert client.get("/account").status_code == 302
    helpers.log_in(client)  # a new login works, with the new generation
    assert client.get("/account").status_code == 200


def test_login_brute_force_is_slowed_per_account_from_any_address(make_app, seed, helpers):
    client = make_app(login_free_failures=5, login_delay_max=300).test_client()
    for n in range(6):  # the free failures, then one more that sets the first delay
        attacker = {"REMOTE_ADDR": f"10.0.0.{n}"}  # a new address for every try
        response = client.post(
            "/auth/login",
            data={"username": "ann", "password": f"guess {n}"},
            environ_base=attacker,
        )
        assert response.status_code == 200
    # Now the next try waits, from any unknown address, even with the right password.
    response = client.post(
        "/auth/login",
        data={"username": "ann", "password": helpers.password},
        environ_base={"REMOTE_ADDR": "10.0.1.1"},
    )
    assert response.status_code == 429
    assert TOO_MANY in response.get_data(as_text=True)
    assert 0 < int(response.headers["Retry-After"]) <= 300
    # Another account is not slowed by ann's attacker.
    assert helpers.log_in(client, "bob").status_code == 302


def test_login_brute_force_is_limited_per_ip_and_says_nothing_about_accounts(make_app, seed):
    client = make_app(ratelimit_login="5 per minute").test_client()
    for n in range(5):
        response = client.post("/auth/login", data={"username": f"user{n}", "password": "guess"})
        assert response.status_code == 200
    answers = [
        client.post("/auth/login", data={"username": name, "password": "guess"})
        for name in ("ann", "nobody-at-all")
    ]
    assert [a.status_code for a in answers] == [429, 429]
    assert answers[0].get_data() == answers[1].get_data()  # exists or not: the same answer


def test_successful_logins_are_not_counted(make_app, seed, helpers):
    client = make_app(ratelimit_login="3 per minute").test_client()
    for _ in range(5):
        assert helpers.log_in(client).status_code == 302
        client.post("/auth/logout")


def test_signups_are_limited_per_ip(make_app):
    client = make_app(ratelimit_signup="2 per hour").test_client()
    codes = [
        client.post(
            "/auth/signup",
            data={"username": f"new{n}", "password": "a long passphrase", "confirm": "x"},
        ).status_code
        for n in range(3)
    ]
    assert codes == [200, 200, 429]


EVIL_NEXT = (
    "https://evil.example/",
    "//evil.example/",
    "/\\evil.example",
    "\\\\evil.example",
    "/\t/evil.example",
    "/\r\n/evil.example",
    "http:/evil.example",
    "javascript:alert(1)",
    " //evil.example",
)


def test_open_redirect_via_next_is_refused(client, seed, helpers):
    for target in EVIL_NEXT:
        client.post("/auth/logout")
        response = client.post(
            "/auth/login",
            query_string={"next": target},
            data={"username": "ann", "password": helpers.password},
        )
        assert response.status_code == 302, target
        assert response.headers["Location"] == "/", target


def test_open_redirect_via_next_on_the_login_page_forms(oauth_app, seed):
    client = oauth_app.test_client()
    page = client.get("/auth/login", query_string={"next": "//evil.example"}).get_data(True)
    assert "evil" not in page
    page = client.get("/auth/login", query_string={"next": "/movies/2"}).get_data(True)
    assert 'action="/auth/oauth/oidc?next=/movies/2"' in page


INJECTIONS = (
    "' OR 1=1 --",
    "heat' OR 'a'='a",
    "x'; DROP TABLE movies; --",
    "%' UNION SELECT id, username, 1, '{}', NULL, NULL FROM users --",
    "\\'; SELECT pg_sleep(5); --",
)


def test_sql_injection_in_search_finds_nothing_and_changes_nothing(client, seed, helpers, database):
    for q in INJECTIONS:
        page = client.get("/search", query_string={"q": q})
        assert page.status_code == 200, q
        assert "ann" not in helpers.titles(page), q
        api = client.get("/api/search", query_string={"q": q})
        assert api.status_code == 200, q
        assert all(m["title"] != "ann" for m in api.get_json()["results"]), q
    with database.session() as s:
        assert s.scalar(select(func.count()).select_from(Movie)) == 5
        assert s.scalar(select(func.count()).select_from(User)) == 2


def test_sql_injection_in_search_filters_is_a_400(client, seed):
    for args in ({"year": "1995 OR 1=1"}, {"genre": "Crime' OR '1'='1"}, {"page": "1;--"}):
        assert client.get("/search", query_string=args).status_code == 400
        assert client.get("/api/search", query_string=args).status_code == 400


XSS = "<script>alert(1)</script><img src=x onerror=alert(2)>"


def test_xss_in_a_movie_title_is_escaped(client, seed, database, helpers):
    with database.session() as s:
        s.add(Movie(id=99, title=f"Heat {XSS}", year=2001, genres=["Drama"]))
    helpers.log_in(client)
    client.post("/movies/99/rating", data={"rating": "4.0"})
    for path in ("/search?q=heat", "/movies/99", "/account"):
        page = client.get(path).get_data(as_text=True)
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page, path
        assert "<script>" not in page and "<img src=x" not in page, path
    assert client.get("/api/movies/99").get_json()["title"] == f"Heat {XSS}"  # JSON: data


def test_xss_in_a_user_name_is_escaped(client, seed, database, helpers):
    with database.session() as s:
        s.get_one(User, seed.ann).display_name = XSS
    helpers.log_in(client, "ann")
    for path in ("/", "/account"):
        page = client.get(path).get_data(as_text=True)
        assert "Log out &lt;script&gt;" in page
        assert "<script>" not in page and "<img src=x" not in page


def test_another_users_ratings_are_not_reachable_through_the_api(client, seed, helpers, database):
    with database.session() as s:
        ann_token = create_token(s, seed.ann, "ann's script")
    bearer = {"Authorization": f"Bearer {ann_token}"}
    bob_only = {seed.shining, seed.alien}

    for args in ({}, {"user": seed.bob}, {"user_id": seed.bob}, {"page": "1"}):
        mine = client.get("/api/ratings", query_string=args, headers=bearer).get_json()
        assert {r["movie_id"] for r in mine["ratings"]} == {seed.heat, seed.godfather}
    for path in (f"/api/users/{seed.bob}/ratings", f"/api/ratings/{seed.bob}"):
        assert client.get(path, headers=bearer).status_code in (404, 405)
    assert client.get("/api/admin/users", headers=bearer).status_code == 403

    helpers.log_in(client, "ann")  # the session cookie: the same answer
    mine = client.get("/api/ratings", query_string={"user_id": seed.bob}).get_json()
    assert not bob_only & {r["movie_id"] for r in mine["ratings"]}
    # Rating through the API only ever writes the caller's own rating.
    client.post("/api/ratings", json={"movie_id": seed.alien, "rating": 1, "user_id": seed.bob})
    with database.session() as s:
        bob_alien = s.scalar(
            select(Rating.rating).where(Rating.user_id == seed.bob, Rating.movie_id == seed.alien)
        )
    assert bob_alien == 4.0


def test_bearer_requests_skip_csrf_but_session_requests_do_not(
    csrf_client, seed, helpers, database
):
    with database.session() as s:
        token = create_token(s, seed.ann, "script")
    rating = {"movie_id": seed.toy, "rating": 3.5}

    response = csrf_client.post(
        "/api/ratings", json=rating, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers  # no session is made for a script

    logged_in(csrf_client, helpers, "bob")
    refused = csrf_client.post("/api/ratings", json=rating)
    assert refused.status_code == 400  # the session cookie alone is not enough
    # A made-up Bearer header does not unlock the session: the token alone decides.
    bogus = csrf_client.post("/api/ratings", json=rating, headers={"Authorization": "Bearer x"})
    assert bogus.status_code == 401
    assert bogus.headers["WWW-Authenticate"].startswith("Bearer")
    with database.session() as s:
        rated = s.scalars(select(Rating.user_id).where(Rating.movie_id == seed.toy)).all()
    assert rated == [seed.ann]


def test_a_bearer_header_on_a_page_is_ignored(csrf_client, seed, helpers, database):
    with database.session() as s:
        token = create_token(s, seed.ann, "script")
    response = csrf_client.post(
        "/account/logout-everywhere", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 400  # CSRF check, as for any page POST
    assert (
        csrf_client.get("/account", headers={"Authorization": f"Bearer {token}"}).status_code == 302
    )


def test_pages_forbid_framing_and_sniffing(client):
    headers = client.get("/auth/login").headers
    assert headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in headers  # plain HTTP: HSTS would be a lie


def test_secure_sites_send_secure_cookies_and_hsts(make_app, seed, helpers):
    client = make_app(web_secure_cookies=True).test_client()
    response = helpers.log_in(client)
    assert "Secure" in response.headers["Set-Cookie"]
    assert "HttpOnly" in response.headers["Set-Cookie"]
    assert "SameSite=Lax" in response.headers["Set-Cookie"]
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


@pytest.fixture
def redis_url(tmp_path):
    """A private redis-server on a free loopback port (the Debian package's binary)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)


def test_workers_sharing_a_redis_count_failed_logins_together(make_app, seed, redis_url):
    """Two apps stand for two gunicorn workers; memory:// would give each its own count."""
    config = {"ratelimit_storage_uri": redis_url, "ratelimit_login": "4 per minute"}
    workers = [make_app(**config).test_client(), make_app(**config).test_client()]
    for n in range(4):
        attempt = {"username": "ann", "password": f"guess {n}"}
        assert workers[n % 2].post("/auth/login", data=attempt).status_code == 200
    for worker in workers:
        attempt = {"username": "ann", "password": "another guess"}
        assert worker.post("/auth/login", data=attempt).status_code == 429
