"""Fixtures for the site: apps on the per-test database, seeded rows, a stand-in AI server,
and for logins: the site on a real socket, two real OpenID Connect providers, a browser.

The stand-in answers the recommender's JSON shapes from a real loopback socket, so the AI
client is exercised over HTTP exactly as in production, without a trained model. It reads its
requests and is held to its answers by the wire contract (support/contract.py); the real
server against the real client is tests/ai/test_ai_contract.py.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace

import argon2
import pytest
from flask import Flask, abort, g, jsonify, request
from sqlalchemy import delete
from support.contract import held_to_the_contract
from support.oidc import OIDCClient, OIDCProvider, start_oidc_provider
from werkzeug.serving import make_server

from movierec.db import Identity, Movie, Rating, User
from movierec.db.local_server import free_port
from movierec.db.roles import WEB_ROLE
from movierec.db.schema import MovieArrival, OAuthToken
from movierec.processes import Child
from movierec.web import close_app, create_app
from movierec.web.auth import Passwords

PASSWORD = "correct horse battery"
# argon2id is slow on purpose; tests use its cheapest costs (the app too, via
# ARGON2_PARAMETERS), and test_web_auth checks that real apps keep the default ones.
TEST_ARGON2 = argon2.profiles.CHEAPEST
PASSWORD_HASH = Passwords(TEST_ARGON2).hasher.hash(PASSWORD)
CSRF_FIELD = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


@dataclass
class StandInAI:
    """What the stand-in recommender will answer; tests set the fields they need."""

    url: str = ""
    recommendations: dict[int, list[tuple[int, float]]] = field(default_factory=dict)
    fallback: bool = False
    # movie id -> the movie it is recommended because of (``because`` in /recommend items)
    because: dict[int, int] = field(default_factory=dict)
    similar: dict[int, list[tuple[int, float]]] = field(default_factory=dict)
    status: int = 200  # anything else: every endpoint answers this status
    delay: float = 0.0
    body: str | None = None  # a raw body instead of the JSON answer
    calls: list[str] = field(default_factory=list)
    contexts: dict[int, dict] = field(default_factory=dict)  # user -> the context POSTed last
    get_only: bool = False  # a recommender from before POST /recommend
    # user -> movie -> predicted stars (/predictions, and /recommend's stars=1)
    stars: dict[int, dict[int, float]] = field(default_factory=dict)

    def reset(self) -> None:
        # In place: the running stand-in app holds this very object.
        self.__dict__.update(StandInAI(url=self.url).__dict__)


def _stand_in_app(state: StandInAI) -> Flask:
    app = Flask("stand_in_ai")

    @app.before_request
    def misbehave():
        state.calls.append(request.full_path)
        if state.get_only and request.method != "GET":
            abort(405)
        time.sleep(state.delay)
        g.misbehaving = state.status != 200 or state.body is not None
        if state.status != 200:
            return jsonify(error="stand-in failure"), state.status
        if state.body is not None:
            return state.body, 200, {"Content-Type": "application/json"}
        return None

    @app.route("/recommend", methods=["GET", "POST"])
    def recommend():
        user, k = g.args["user"], g.args["k"]
        if request.method == "POST":
            state.contexts[user] = request.get_json()["context"]
        # Like the real server: excluded ("not interested") movies never appear.
        exclude = set(g.args["exclude"])
        ranked = [(m, s) for m, s in state.recommendations.get(user, []) if m not in exclude]
        items = []
        for m, s in ranked[:k]:
            item = {"movie_id": m, "score": s}
            if m in state.because:
                item["because"] = state.because[m]
            if g.args["stars"] == "1" and m in state.stars.get(user, {}):
                item["stars"] = state.stars[user][m]
            items.append(item)
        return jsonify(
            user=user,
            k=k,
            model_version="stand-in-1",
            fallback=state.fallback,
            reason="new user" if state.fallback else None,
            items=items,
        )

    @app.route("/predictions", methods=["GET", "POST"])
    def predictions():
        user = g.args["user"]
        if request.method == "POST":
            state.contexts[user] = request.get_json()["context"]
        mine = state.stars.get(user, {})
        items = [{"movie_id": m, "stars": mine[m]} for m in g.args["movies"] if m in mine]
        return jsonify(user=user, model_version="stand-in-1", items=items)

    @app.get("/similar")
    def similar():
        movie, k = g.args["movie"], g.args["k"]
        if movie not in state.similar:
            return jsonify(error=f"unknown movie {movie}"), 404
        return jsonify(
            movie=movie,
            k=k,
            model_version="stand-in-1",
            items=[{"movie_id": m, "score": s} for m, s in state.similar[movie][:k]],
        )

    @app.get("/health")
    def health():
        return jsonify(status="ok", model_version="stand-in-1")

    return held_to_the_contract(app)


@pytest.fixture(scope="session")
def _ai_servers() -> Iterator[list[StandInAI]]:
    """Two stand-in recommenders for the whole session; tests get them reset."""
    states, servers, threads = [], [], []
    for _ in range(2):
        state = StandInAI()
        server = make_server("127.0.0.1", 0, _stand_in_app(state), threaded=True)
        state.url = f"http://127.0.0.1:{server.server_port}"
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        states.append(state)
        servers.append(server)
        threads.append(thread)
    yield states
    for server, thread in zip(servers, threads, strict=True):
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def ai(_ai_servers) -> StandInAI:
    for state in _ai_servers:
        state.reset()
    return _ai_servers[0]


@pytest.fixture
def ai2(_ai_servers, ai) -> StandInAI:
    return _ai_servers[1]


@pytest.fixture
def dead_url() -> str:
    """An http URL on which nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def make_app(settings, ai, as_role):
    """Build apps on the test database, connected as the site's own role (what it may do
    there is what a deployed site may do); lower-case keys override settings, upper-case are
    Flask config. CSRF is off unless a test turns it on."""
    apps = []

    def make(**config) -> Flask:
        base = {
            **settings.as_dict(),
            "database_url": as_role(settings.database_url, WEB_ROLE),
            "ai_urls": (ai.url,),
            "ai_timeout": 1.0,
        }
        flask_config = {
            "TESTING": True,
            "WTF_CSRF_ENABLED": False,
            "ARGON2_PARAMETERS": TEST_ARGON2,
        }
        app = create_app({**base, **flask_config, **config})
        apps.append(app)
        return app

    yield make
    for app in apps:
        close_app(app)


@pytest.fixture
def app(make_app) -> Flask:
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def seed(database) -> SimpleNamespace:
    """Five movies, users ann and bob (password PASSWORD), a few ratings. Heat is the most
    rated; ann rated Heat and The Godfather, bob Heat, The Shining and Alien."""
    with database.session() as s:
        movies = {
            "shining": Movie(
                id=1,
                title="The Shining",
                year=1980,
                genres=["Horror", "Thriller"],
                imdb_id="0081505",
                tmdb_id=694,
            ),
            "heat": Movie(id=2, title="Heat", year=1995, genres=["Action", "Crime", "Thriller"]),
            "toy": Movie(
                id=3,
                title="Toy Story",
                year=1995,
                genres=["Adventure", "Animation", "Children", "Comedy"],
            ),
            "godfather": Movie(id=4, title="The Godfather", year=1972, genres=["Crime", "Drama"]),
            "alien": Movie(id=5, title="Alien", year=1979, genres=["Horror", "Sci-Fi"]),
        }
        ann = User(username="ann", password_hash=PASSWORD_HASH)
        bob = User(username="bob", password_hash=PASSWORD_HASH)
        s.add_all([*movies.values(), ann, bob])
        s.flush()
        s.add_all(
            [
                Rating(user_id=ann.id, movie_id=2, rating=4.0),
                Rating(user_id=ann.id, movie_id=4, rating=5.0),
                Rating(user_id=bob.id, movie_id=2, rating=5.0),
                Rating(user_id=bob.id, movie_id=1, rating=3.0),
                Rating(user_id=bob.id, movie_id=5, rating=4.0),
            ]
        )
        # The catalogue, not new arrivals (as after a data set's first load): no "New this
        # week" slot unless a test adds movies (tests/web/test_new_movies.py).
        s.execute(delete(MovieArrival))
    return SimpleNamespace(ann=ann.id, bob=bob.id, **{k: m.id for k, m in movies.items()})


@pytest.fixture
def oauth_only(database):
    """carol: made by a provider login, no password, one linked identity and its token."""
    with database.session() as s:
        carol = User(username="carol", display_name="Carol C", email="carol@example.test")
        s.add(carol)
        s.flush()
        s.add(Identity(user_id=carol.id, provider="oidc", subject="c-1", email=carol.email))
        s.add(OAuthToken(user_id=carol.id, provider="oidc", token={"access_token": "t"}))
    return carol.id


def log_in(client, username: str = "ann", password: str = PASSWORD, token: str | None = None):
    data = {"username": username, "password": password}
    if token is not None:
        data["csrf_token"] = token
    return client.post("/auth/login", data=data)


def csrf_token(client, path: str) -> str:
    """The CSRF token from the first form (or the API meta tag) on the page at ``path``."""
    page = client.get(path).get_data(as_text=True)
    match = CSRF_FIELD.search(page) or CSRF_META.search(page)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def titles(response) -> list[str]:
    """Movie titles linked on a page, in order."""
    return re.findall(r'<a href="/movies/\d+">([^<]*)</a>', response.get_data(as_text=True))


@pytest.fixture
def helpers() -> SimpleNamespace:
    return SimpleNamespace(
        log_in=log_in,
        csrf_token=csrf_token,
        titles=titles,
        password=PASSWORD,
    )


# --- logging in through real OpenID Connect providers ---------------------------------------


class LiveSite:
    """A loopback HTTP server for the whole session; each test puts its own app behind it.

    The port is known before any app exists, so the providers can be told the redirect URIs.
    """

    def __init__(self) -> None:
        self.app: Flask | None = None
        self.server = make_server("127.0.0.1", 0, self, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def __call__(self, environ, start_response):
        if self.app is None:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"no app"]
        return self.app(environ, start_response)

    def redirect_uri(self, provider: str) -> str:
        return f"{self.url}/auth/oauth/{provider}/authorized"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@dataclass
class Providers:
    """Two provider processes: one in the generic "oidc" slot, one in the "google" slot."""

    oidc: OIDCProvider
    google: OIDCProvider
    config: dict


@pytest.fixture(scope="session")
def live_site() -> Iterator[LiveSite]:
    site = LiveSite()
    yield site
    site.close()


@pytest.fixture(scope="session")
def providers(live_site) -> Iterator[Providers]:
    """The "google" slot is Google's, discovered from google_issuer: here, a second local
    provider (Google is an OpenID Connect issuer, so the same code path signs in with it)."""
    test_client = "http://localhost/auth/oauth/{}/authorized"  # Flask's test client
    started = []
    try:
        for name, secret in (("oidc", "op-secret"), ("google", "google-secret")):
            uris = [live_site.redirect_uri(name), test_client.format(name)]
            started.append(
                start_oidc_provider(clients=[OIDCClient(f"movierec-{name}", secret, uris)])
            )
        op, google = started
        config = {
            "oidc_issuer": op.issuer,
            "oidc_client_id": "movierec-oidc",
            "oidc_client_secret": "op-secret",
            "oidc_title": "Test OP",
            "google_issuer": google.issuer,
            "google_client_id": "movierec-google",
            "google_client_secret": "google-secret",
        }
        yield Providers(op, google, config)
    finally:
        for provider in started:
            provider.stop()


@pytest.fixture
def oauth_app(make_app, providers, monkeypatch) -> Flask:
    """An app with both providers configured and CSRF on, for Flask's test client."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # plain HTTP on loopback, tests only
    return make_app(WTF_CSRF_ENABLED=True, **providers.config)


@pytest.fixture
def site(make_app, providers, live_site, monkeypatch) -> Iterator[LiveSite]:
    """The live site serving a fresh app (this test's database) with both providers."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # plain HTTP on loopback, tests only
    live_site.app = make_app(WTF_CSRF_ENABLED=True, TESTING=False, **providers.config)
    yield live_site
    live_site.app = None


# --- the site under real gunicorn -----------------------------------------------------------


@pytest.fixture
def serve_web(settings, as_role, tmp_path):
    """``serve_web(workers=1, **env)``: the site under gunicorn (``movierec serve web``) on a
    free port, on this test's database as the site's role; its port. ``env`` adds or
    overrides environment variables (MOVIEREC_* settings)."""
    started: list[Child] = []

    def start(workers: int = 1, **env: str) -> int:
        port = free_port()
        base = {
            "MOVIEREC_DATABASE_URL": as_role(settings.database_url, WEB_ROLE),
            "MOVIEREC_SECRET_KEY": "served-test-secret",
            "MOVIEREC_AI_KEY": "served-test-key",
            "MOVIEREC_STATE_DIR": str(tmp_path / "state"),
        }
        args = ["serve", "web", "--port", str(port), "--workers", str(workers)]
        health = f"http://127.0.0.1:{port}/healthz"
        log = tmp_path / f"web-{port}.log"
        child = Child.start(f"web-{port}", args, log, health, {**base, **env})
        started.append(child)
        child.wait_healthy(60)
        return port

    yield start
    for child in started:
        child.stop()
