"""The web caches: bounds, policies, and what the site serves from them (real PostgreSQL,
stand-in recommender on a real socket)."""

from __future__ import annotations

import re
import threading
import time
from contextlib import contextmanager

import pytest
from flask import Flask, jsonify, request
from flask.sessions import SecureCookieSessionInterface
from sqlalchemy import event
from support.clock import Clock
from werkzeug.serving import make_server

from movierec.web import changes, picks
from movierec.web.ai_client import AIClient
from movierec.web.bounded_cache import BoundedCache, approx_size
from movierec.web.cache import CHANGED, EXTENSION, TASTE, Recommended, caches
from movierec.web.catalog import MovieItem
from movierec.web.picks import Picks

CSRF_FIELD = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


@contextmanager
def counted_queries(app):
    """Statements the app sends to its database while the block runs."""
    engine = app.extensions["movierec.db"].primary
    seen: list[str] = []

    def count(conn, cursor, statement, *args):
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def listening(app) -> changes.ChangeLog:
    """The app's change log, once its listener is connected."""
    log = app.extensions[changes.EXTENSION].started()
    wait_until(lambda: log.listening)
    return log


def wait_until(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def hits_and_misses(client, cache: str) -> tuple[int, int]:
    text = client.get("/metrics").get_data(as_text=True)

    def value(name: str) -> int:
        match = re.search(rf'^{name}{{[^}}]*cache="{cache}"[^}}]*}} (\d+)', text, re.M)
        assert match, f"{name} for {cache} not in /metrics:\n{text}"
        return int(match.group(1))

    return value("movierec_cache_hits_total"), value("movierec_cache_misses_total")


# --- BoundedCache -------------------------------------------------------------------------------


def test_the_cache_stays_within_its_byte_bound():
    value = "x" * 1000
    per_entry = approx_size(value)
    cache = BoundedCache("t", "lru", max_entries=1000, max_bytes=10 * per_entry)
    for key in range(100):
        assert cache.put(key, value)
    stats = cache.stats()
    assert stats.bytes <= 10 * per_entry
    assert 5 <= stats.entries < 10 and stats.evictions == 100 - stats.entries
    assert cache.get(99) == value and cache.get(0) is None  # the oldest went first
    assert not cache.put("huge", "y" * 20 * per_entry)  # bigger than the whole cache: not kept
    assert cache.get("huge") is None


def test_picks_count_their_movies_once_for_every_cache_that_keeps_them():
    movies = tuple(
        MovieItem(id=i, title=f"Movie {i}" * 5, year=1990, genres=("Drama",)) for i in range(24)
    )
    picks = Picks(movies, "v1")
    assert picks.approx_bytes >= approx_size(movies) > 24 * len("Movie 0" * 5)
    # What holds them (a cache entry, a page) adds the count it keeps, with no new traversal.
    holder = Recommended("v1", (1,), picks)
    assert approx_size(holder) < picks.approx_bytes + 1000
    picks.__dict__["approx_bytes"] = 10**6
    assert 10**6 < approx_size(holder) < 10**6 + 1000


def test_the_cache_stays_within_its_entry_bound():
    cache = BoundedCache("t", "lru", max_entries=3, max_bytes=10**6)
    for key in range(5):
        cache.put(key, key)
    assert cache.stats().entries == 3 and cache.get(1) is None and cache.get(4) == 4


def test_replacing_an_entry_keeps_its_expiry():
    now = [0.0]
    cache = BoundedCache("t", "lru", max_entries=10, max_bytes=10**6, ttl=600, clock=lambda: now[0])
    assert not cache.replace("k", "v")  # nothing to replace
    cache.put("k", "made")
    now[0] = 590
    assert cache.replace("k", "restamped") and cache.get("k") == "restamped"
    now[0] = 601
    assert cache.get("k") is None  # 600 s after it was made, not after it was restamped
    assert not cache.replace("k", "late")


def test_lfu_keeps_what_is_used_often_and_touch_counts_as_use():
    cache = BoundedCache("t", "lfu", max_entries=3, max_bytes=10**6)
    for key in ("viewed", "searched", "other"):
        cache.put(key, key)
    cache.get("viewed")
    cache.touch(["searched", "searched-but-not-cached"])
    cache.put("new", "new")
    assert [cache.peek(k) for k in ("viewed", "searched", "other", "new")] == [
        "viewed",
        "searched",
        None,
        "new",
    ]


def test_entries_expire_after_their_ttl_and_invalid_ones_are_misses():
    clock = Clock()
    cache = BoundedCache("t", "lru", max_entries=10, max_bytes=10**6, ttl=30, clock=clock)
    cache.put("a", 1)
    clock.now = 29
    assert cache.get("a") == 1
    assert cache.get("a", valid=lambda v: v == 2) is None  # stale: dropped
    cache.put("a", 1)
    clock.now = 60
    assert cache.get("a") is None
    assert (cache.stats().hits, cache.stats().misses, cache.stats().entries) == (1, 2, 0)


def test_get_many_counts_and_uses_each_key_as_get_does():
    clock = Clock()
    cache = BoundedCache("t", "lfu", max_entries=3, max_bytes=10**6, ttl=30, clock=clock)
    cache.put("old", 0)
    clock.now = 20
    for key in ("a", "b"):
        cache.put(key, key)
    clock.now = 40  # "old" expired; "a" and "b" not
    assert cache.get_many(["a", "old", "absent"]) == {"a": "a"}
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.entries) == (1, 2, 2)
    cache.put("c", "c")
    cache.put("d", "d")  # the least used goes: "b" (or "c"), never "a", which was looked up
    assert cache.peek("a") == "a"


def test_a_zero_size_turns_the_caches_off(make_app, seed):
    app = make_app(web_cache_mb=0)
    client = app.test_client()
    for _ in range(2):
        assert client.get(f"/api/movies/{seed.heat}").status_code == 200
    assert hits_and_misses(client, "movies") == (0, 2)


# --- what the site serves from the caches --------------------------------------------------------


def test_a_movie_hit_does_not_touch_the_database(app, client, seed):
    with counted_queries(app) as first:
        assert client.get(f"/api/movies/{seed.heat}").get_json()["ratings"] == 2
    with counted_queries(app) as second:
        again = client.get(f"/api/movies/{seed.heat}")
    assert first and second == []
    assert again.get_json()["title"] == "Heat"
    assert hits_and_misses(client, "movies") == (1, 1)


def test_a_search_hit_does_not_touch_the_database(app, client, seed):
    client.get("/search?q=heat")
    with counted_queries(app) as queries:
        page = client.get("/search?q=heat")
    assert queries == [] and "Heat" in page.get_data(as_text=True)
    assert hits_and_misses(client, "searches") == (1, 1)


def test_a_recommendations_hit_asks_neither_the_recommender_nor_the_database(
    app, client, seed, ai, helpers
):
    listening(app)
    ai.recommendations[seed.ann] = [(seed.alien, 4.9), (seed.toy, 4.1)]
    helpers.log_in(client, "ann")
    assert helpers.titles(client.get("/for-you")) == ["Alien", "Toy Story"]
    calls = len(ai.calls)
    with counted_queries(app) as queries:
        assert helpers.titles(client.get("/for-you")) == ["Alien", "Toy Story"]
    assert len(ai.calls) == calls  # not even /health: the version was checked a moment ago
    # Neither the login session's user nor the user's taste version: the change listener
    # has heard of no change of ann's since both were read.
    assert queries == []
    assert hits_and_misses(client, "recommendations") == (1, 1)
    assert hits_and_misses(client, "pages") == (1, 1)  # the whole page, too
    assert hits_and_misses(client, "fragments") == (0, 1)  # so its list was not looked up
    assert hits_and_misses(client, "users")[0] >= 1


def test_without_the_change_listener_a_hit_compares_taste_versions(app, client, seed, ai, helpers):
    ai.recommendations[seed.ann] = [(seed.alien, 4.9)]
    helpers.log_in(client, "ann")
    client.get("/for-you")
    listening(app)
    app.extensions[changes.EXTENSION].log.connected(False)  # as when the primary is away
    with counted_queries(app) as queries:
        assert helpers.titles(client.get("/for-you")) == ["Alien"]
    # The login session's user with the user's taste version, in one statement (the worker
    # does not trust its copy of the user either); not the catalogue.
    assert len(queries) == 1 and "FROM users LEFT OUTER JOIN LATERAL" in queries[0]
    assert "FROM movies" not in queries[0]
    assert hits_and_misses(client, "recommendations") == (1, 1)


def test_a_workers_first_list_for_a_user_reads_the_user_with_the_taste_version(
    app, client, seed, ai, helpers
):
    listening(app)
    ai.recommendations[seed.ann] = [(seed.alien, 4.9)]
    helpers.log_in(client, "ann")

    def first_request(path: str) -> list[str]:
        with app.app_context():
            caches().users.clear()  # as on a worker that has not served ann yet
        with counted_queries(app) as queries:
            assert client.get(path).status_code == 200
        # The user's reads; not "New this week"'s list of new movies, which counts ratings
        # but is read once a minute per worker for everybody (movierec/web/new_movies.py).
        return [
            q
            for q in queries
            if ("FROM users" in q or "FROM ratings" in q) and "movie_arrivals" not in q
        ]

    for path in ("/for-you", "/api/recommendations?k=1"):
        reads = first_request(path)
        assert len(reads) == 1 and "FROM users LEFT OUTER JOIN LATERAL" in reads[0], path
    # A movie page: the user, the taste their stars are kept under and their ratings (their
    # own of this movie among them), all in one.
    client.get(f"/movies/{seed.heat}")  # the movie's own row and statistics, kept
    with app.app_context():
        caches().predictions.clear()
    reads = first_request(f"/movies/{seed.heat}")
    assert len(reads) == 1 and "FROM users LEFT OUTER JOIN LATERAL" in reads[0]
    assert "You rated it <strong>4</strong>" in client.get(f"/movies/{seed.heat}").get_data(
        as_text=True
    )
    # A search page is everyone's: the user's row alone; its stars' request reads the rest.
    client.get("/search?q=alien")  # the search's results, kept
    reads = first_request("/search?q=alien")
    assert len(reads) == 1 and "LATERAL" not in reads[0]
    with app.app_context():
        caches().predictions.clear()
    reads = first_request(f"/stars?movies={seed.alien}")
    assert len(reads) == 1 and "FROM users LEFT OUTER JOIN LATERAL" in reads[0]
    # A page that does not start with the user's taste has the user read alone.
    reads = first_request("/account")
    assert "FROM users" in reads[0] and "ratings" not in reads[0]
    assert not any("LATERAL" in q for q in reads)


def test_a_recommendations_miss_reads_only_movies_no_recent_list_showed(
    app, client, seed, ai, helpers
):
    ai.recommendations[seed.ann] = [(seed.alien, 4.9), (seed.toy, 4.1)]
    helpers.log_in(client, "ann")
    client.get("/api/recommendations?k=2")
    ai.recommendations[seed.ann] = [(seed.alien, 4.9), (seed.heat, 4.5), (seed.toy, 4.1)]
    with counted_queries(app) as queries:
        got = client.get("/api/recommendations?k=3").get_json()["items"]
    assert [m["title"] for m in got] == ["Alien", "Heat", "Toy Story"]
    movie_reads = [q for q in queries if "FROM movies" in q and "not_interested" not in q]
    assert len(movie_reads) == 1  # Heat's row; Alien and Toy Story came from the listings
    assert hits_and_misses(client, "listings") == (2, 3)


def test_a_new_list_reuses_the_html_of_movies_other_lists_showed(app, client, seed, ai, helpers):
    ai.recommendations[seed.ann] = [(seed.alien, 4.9), (seed.toy, 4.1)]
    ai.recommendations[seed.bob] = [(seed.toy, 3.9), (seed.heat, 3.5), (seed.alien, 3.0)]
    helpers.log_in(client, "ann")
    client.get("/for-you")
    assert hits_and_misses(client, "movie_html") == (0, 2)
    client.post("/logout")
    helpers.log_in(client, "bob")
    assert helpers.titles(client.get("/for-you")) == ["Toy Story", "Heat", "Alien"]
    assert hits_and_misses(client, "movie_html") == (2, 3)  # only Heat was rendered


def test_users_with_different_stars_share_a_movies_html_and_see_their_own_stars(
    app, client, seed, ai, helpers
):
    """Each user's predicted stars differ: kept inside a movie's HTML, they made every cold
    list render its movies again (BENCHMARKS.md, "Serving")."""
    ai.recommendations[seed.ann] = [(seed.alien, 4.9), (seed.toy, 4.1)]
    ai.recommendations[seed.bob] = [(seed.toy, 3.9), (seed.alien, 3.0)]
    ai.stars[seed.ann] = {seed.alien: 4.24, seed.toy: 3.61}
    ai.stars[seed.bob] = {seed.toy: 2.18}
    helpers.log_in(client, "ann")
    page = client.get("/for-you").get_data(as_text=True)
    assert "≈ 4.2 ★" in page and "≈ 3.6 ★" in page
    client.post("/logout")
    helpers.log_in(client, "bob")
    answer = client.get("/for-you")
    assert helpers.titles(answer) == ["Toy Story", "Alien"]
    page = answer.get_data(as_text=True)
    assert "≈ 2.2 ★" in page and "≈ 4.2 ★" not in page and "≈ 3.6 ★" not in page
    assert page.count("you'd rate it") == 1  # Alien has no stars of bob's
    assert hits_and_misses(client, "movie_html") == (2, 2)  # bob's list rendered no movie


def test_the_api_and_the_page_keep_their_own_k_and_a_rating_drops_both(
    app, client, seed, ai, helpers
):
    ai.recommendations[seed.ann] = [(seed.alien, 4.9), (seed.toy, 4.1), (seed.shining, 3.0)]
    helpers.log_in(client, "ann")
    client.get("/for-you")
    assert [m["id"] for m in client.get("/api/recommendations?k=2").get_json()["items"]] == [
        seed.alien,
        seed.toy,
    ]
    assert hits_and_misses(client, "recommendations") == (0, 2)
    store = app.extensions[EXTENSION].recommendations
    assert store.peek((seed.ann, 24)) and store.peek((seed.ann, 2))
    client.post("/api/ratings", json={"movie_id": seed.alien, "rating": 3})
    assert store.peek((seed.ann, 24)) is None and store.peek((seed.ann, 2)) is None


def test_a_rating_refreshes_the_users_recommendations(client, seed, ai, helpers):
    ai.recommendations[seed.ann] = [(seed.alien, 4.9)]
    helpers.log_in(client, "ann")
    assert helpers.titles(client.get("/for-you")) == ["Alien"]
    ai.recommendations[seed.ann] = [(seed.toy, 4.5)]
    assert helpers.titles(client.get("/for-you")) == ["Alien"]  # cached
    client.post("/api/ratings", json={"movie_id": seed.alien, "rating": 4.5})
    assert helpers.titles(client.get("/for-you")) == ["Toy Story"]


def test_a_rating_taken_by_another_worker_refreshes_this_workers_list(make_app, seed, ai, helpers):
    """Two apps on one database stand for two gunicorn workers (or two instances); one
    browser session, so each request may go to either."""
    worker_a, worker_b = make_app().test_client(), make_app().test_client()
    helpers.log_in(worker_a, "ann")
    worker_b.set_cookie("session", worker_a.get_cookie("session").value)
    listening(worker_b.application)
    # B hears nothing: the session alone must make B compare versions at once.
    worker_b.application.extensions[changes.EXTENSION].log.heard = lambda payload: None
    ai.recommendations[seed.ann] = [(seed.alien, 4.9)]
    assert helpers.titles(worker_b.get("/for-you")) == ["Alien"]
    ai.recommendations[seed.ann] = [(seed.toy, 4.5)]
    assert helpers.titles(worker_b.get("/for-you")) == ["Alien"]  # cached on B

    def on_b(response):
        worker_b.set_cookie("session", worker_a.get_cookie("session").value)
        return response

    assert (
        on_b(
            worker_a.post("/api/ratings", json={"movie_id": seed.shining, "rating": 2})
        ).status_code
        == 200
    )
    assert helpers.titles(worker_b.get("/for-you")) == ["Toy Story"]
    # Removing a rating changes the taste version too.
    ai.recommendations[seed.ann] = [(seed.alien, 4.0)]
    worker_a.set_cookie("session", worker_b.get_cookie("session").value)
    on_b(worker_a.post(f"/movies/{seed.shining}/rating/delete"))
    assert helpers.titles(worker_b.get("/for-you")) == ["Alien"]


def test_only_a_session_that_changed_the_taste_carries_its_digest(app, client, seed, ai, helpers):
    """A first list leaves the cookie as it was (no rewrite for every new user); after a
    rating, the next list stores the taste digest that other workers compare their entries
    with (see the test above), once."""
    cookie = SecureCookieSessionInterface().get_signing_serializer(app)

    def taste() -> str | None:
        return cookie.loads(client.get_cookie("session").value).get(TASTE)

    ai.recommendations[seed.ann] = [(seed.alien, 4.9)]
    helpers.log_in(client, "ann")
    assert helpers.titles(client.get("/for-you")) == ["Alien"]
    assert taste() is None
    assert "Set-Cookie" not in client.get("/for-you").headers
    client.post("/api/ratings", json={"movie_id": seed.shining, "rating": 2})
    assert taste() == CHANGED
    client.get("/for-you")
    assert taste() not in (None, CHANGED)
    assert "Set-Cookie" not in client.get("/for-you").headers  # the digest is current


def test_a_rating_in_another_session_reaches_this_worker_by_notification(
    make_app, seed, ai, helpers
):
    """The user's other browser (its own session) on another worker: B's list is refreshed
    once B's change listener hears of the rating."""
    worker_a, worker_b = make_app().test_client(), make_app().test_client()
    for worker in (worker_a, worker_b):
        helpers.log_in(worker, "ann")
    log = listening(worker_b.application)
    ai.recommendations[seed.ann] = [(seed.alien, 4.9)]
    worker_b.get("/for-you")
    stamp = log.now()
    assert helpers.titles(worker_b.get("/for-you")) == ["Alien"]
    ai.recommendations[seed.ann] = [(seed.toy, 4.5)]
    worker_a.post("/api/ratings", json={"movie_id": seed.shining, "rating": 2})
    wait_until(lambda: not log.fresh(seed.ann, stamp))
    assert helpers.titles(worker_b.get("/for-you")) == ["Toy Story"]


def test_log_out_everywhere_ends_a_session_a_worker_had_cached(make_app, seed, helpers):
    worker_a, worker_b = make_app().test_client(), make_app().test_client()
    for worker in (worker_a, worker_b):
        helpers.log_in(worker, "ann")
    log = listening(worker_b.application)
    assert worker_b.get("/account").status_code == 200
    stamp = log.now()
    assert worker_b.get("/account").status_code == 200  # the user from B's cache
    assert worker_a.post("/account/logout-everywhere").status_code == 302
    wait_until(lambda: not log.fresh(seed.ann, stamp))
    assert worker_b.get("/account").status_code == 302


def test_other_users_entries_survive_a_rating(app, client, seed, ai, helpers):
    ai.recommendations[seed.bob] = [(seed.toy, 4.0)]
    bob = app.test_client()
    helpers.log_in(bob, "bob")
    bob.get("/for-you")
    helpers.log_in(client, "ann")
    client.post("/api/ratings", json={"movie_id": seed.alien, "rating": 4})
    bob.get("/for-you")
    assert hits_and_misses(client, "recommendations")[0] == 1


@pytest.fixture
def versioned_ai():
    """A recommender whose model version the test changes."""
    state = {"version": "v1", "items": [], "calls": 0}
    app = Flask("versioned_ai")

    @app.route("/recommend", methods=["GET", "POST"])
    def recommend():
        state["calls"] += 1
        items = [{"movie_id": m, "score": s} for m, s in state["items"]]
        return jsonify(model_version=state["version"], items=items[: int(request.args["k"])])

    @app.get("/health")
    def health():
        return jsonify(status="ok", model_version=state["version"])

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state["url"] = f"http://127.0.0.1:{server.server_port}"
    yield state
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_a_new_model_version_refreshes_every_users_recommendations(
    make_app, seed, versioned_ai, helpers
):
    app = make_app(ai_urls=(versioned_ai["url"],))
    app.extensions[picks.EXTENSION].close()
    app.extensions[picks.EXTENSION] = AIClient([versioned_ai["url"]], 1.0, version_check=0)
    client = app.test_client()
    helpers.log_in(client, "ann")
    versioned_ai["items"] = [(seed.alien, 4.0)]
    client.get("/for-you")
    versioned_ai["items"] = [(seed.toy, 4.0)]
    assert helpers.titles(client.get("/for-you")) == ["Alien"]
    assert versioned_ai["calls"] == 1
    versioned_ai["version"] = "v2"
    assert helpers.titles(client.get("/for-you")) == ["Toy Story"]
    assert versioned_ai["calls"] == 2
    entry = app.extensions[EXTENSION].recommendations.peek((seed.ann, 24))
    assert entry.model_version == "v2"


def test_limited_answers_are_not_cached(make_app, dead_url, seed, helpers):
    client = make_app(ai_urls=(dead_url,), ai_timeout=0.3).test_client()
    helpers.log_in(client, "ann")
    for _ in range(2):
        assert "temporarily limited" in client.get("/for-you").get_data(as_text=True)
    assert hits_and_misses(client, "recommendations") == (0, 2)


def test_metrics_show_requests_per_endpoint_and_only_to_loopback(app, client, seed):
    client.get(f"/api/movies/{seed.heat}")
    text = client.get("/metrics").get_data(as_text=True)
    assert re.search(
        r'^movierec_http_requests_total\{[^}]*endpoint="api.movie",method="GET",status="200"\} 1$',
        text,
        re.M,
    )
    assert "movierec_http_request_duration_seconds_bucket{" in text
    assert re.search(r"^movierec_ai_circuit_open\{[^}]*\} 0$", text, re.M)
    outside = client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert outside.status_code == 404


def test_a_cached_page_never_hides_a_message_and_holds_this_sessions_csrf_token(
    make_app, seed, ai, helpers
):
    app = make_app(WTF_CSRF_ENABLED=True)
    client = app.test_client()
    ai.recommendations[seed.ann] = [(seed.alien, 4.9), (seed.toy, 4.1)]
    helpers.log_in(client, "ann", token=helpers.csrf_token(client, "/auth/login"))
    first = client.get("/for-you").get_data(as_text=True)
    assert client.get("/for-you").get_data(as_text=True) == first
    assert hits_and_misses(client, "pages") == (1, 1)
    warned = client.get("/for-you?genre=Nope").get_data(as_text=True)
    assert "Filter not understood" in warned and "Alien" in warned
    assert "Filter not understood" not in client.get("/for-you").get_data(as_text=True)
    assert hits_and_misses(client, "pages") == (2, 1)  # the message's page was not kept

    # A new login is a new session with a new CSRF token: the page is rendered for it, and
    # its "not interested" form works.
    client.post("/auth/logout", data={"csrf_token": CSRF_FIELD.search(first).group(1)})
    helpers.log_in(client, "ann", token=helpers.csrf_token(client, "/auth/login"))
    again = client.get("/for-you").get_data(as_text=True)
    assert hits_and_misses(client, "pages") == (2, 2)
    token = CSRF_FIELD.search(again).group(1)
    answer = client.post(
        "/for-you/not-interested", data={"csrf_token": token, "movie_id": seed.toy}
    )
    assert answer.status_code == 302
    assert "You will not be shown Toy Story" in client.get("/for-you").get_data(as_text=True)


def test_an_api_hit_answers_the_json_kept_with_the_cached_list(client, seed, ai, helpers):
    ai.recommendations[seed.ann] = [(seed.alien, 4.9), (seed.toy, 4.1)]
    helpers.log_in(client, "ann")
    first = client.get("/api/recommendations?k=2")
    second = client.get("/api/recommendations?k=2")
    assert second.data == first.data and second.mimetype == "application/json"
    assert [m["title"] for m in second.get_json()["items"]] == ["Alien", "Toy Story"]
    assert hits_and_misses(client, "fragments") == (1, 1)
    ai.recommendations[seed.ann] = [(seed.toy, 4.1)]
    client.post("/api/ratings", json={"movie_id": seed.alien, "rating": 3})
    items = client.get("/api/recommendations?k=2").get_json()["items"]
    assert [m["title"] for m in items] == ["Toy Story"]  # not the JSON kept before
