"""AIClient over several stand-in recommenders on real sockets: balancing on calls in flight,
the circuit breaker, timeouts, and fan-out over movie shards. The stand-ins read requests and
are held to their answers by the wire contract (support/contract.py)."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pytest
from flask import Flask, g, jsonify, request
from support.contract import held_to_the_contract
from werkzeug.serving import make_server

from movierec.errors import NotFound
from movierec.web.ai_client import AIAnswer, AIClient, AIUnavailable, Scored, merge


@dataclass
class Recommender:
    """A stand-in that scores a fixed catalogue; asked for shard i of n it scores only the
    movies with ``movie_id % n == i``, as a sharded server would."""

    scores: dict[int, dict[int, float]] = field(default_factory=dict)  # user -> movie -> score
    similar: dict[int, dict[int, float]] = field(default_factory=dict)
    serves_shard: int | None = None  # None: the whole catalogue
    status: int = 200
    delay: float = 0.0
    version: str = "v1"
    calls: int = 0
    url: str = ""

    def top(self, table: dict[int, float], k: int) -> list[dict]:
        shard = g.args["shard"]
        if self.serves_shard is not None:
            assert shard is not None and shard[0] == self.serves_shard, "sent to the wrong shard"
        movies = [(m, s) for m, s in table.items() if shard is None or m % shard[1] == shard[0]]
        movies.sort(key=lambda pair: (-pair[1], pair[0]))
        return [{"movie_id": m, "score": s} for m, s in movies[:k]]


def _app(state: Recommender) -> Flask:
    app = Flask("stand_in_recommender")

    @app.before_request
    def misbehave():
        if request.path != "/health":
            state.calls += 1
        time.sleep(state.delay)
        g.misbehaving = state.status != 200
        if state.status != 200:
            return jsonify(error="stand-in failure"), state.status
        return None

    @app.get("/recommend")
    def recommend():
        user, k = g.args["user"], g.args["k"]
        return jsonify(
            user=user, k=k, model_version=state.version, fallback=False, reason=None,
            items=state.top(state.scores[user], k),
        )  # fmt: skip

    @app.get("/similar")
    def similar():
        movie, k = g.args["movie"], g.args["k"]
        if movie not in state.similar:
            return jsonify(error="unknown movie"), 404
        items = state.top(state.similar[movie], k)
        return jsonify(movie=movie, k=k, model_version=state.version, items=items)

    @app.get("/health")
    def health():
        return jsonify(status="ok", model_version=state.version)

    return held_to_the_contract(app)


@pytest.fixture
def recommenders():
    """Start stand-in recommenders on loopback: ``recommenders(n)`` gives n fresh ones."""
    servers = []

    def start(n: int, **fields) -> list[Recommender]:
        started = []
        for _ in range(n):
            state = Recommender(**fields)
            server = make_server("127.0.0.1", 0, _app(state), threaded=True)
            state.url = f"http://127.0.0.1:{server.server_port}"
            thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
            thread.start()
            servers.append((server, thread))
            started.append(state)
        return started

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def clients():
    made = []

    def make(*args, **kwargs) -> AIClient:
        client = AIClient(*args, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


CATALOGUE = {1: {m: float(s) for m, s in enumerate(np.random.default_rng(3).random(300), start=1)}}


def test_sequential_calls_spread_evenly(recommenders, clients):
    four = recommenders(4, scores=CATALOGUE)
    client = clients([r.url for r in four], 1.0)
    for _ in range(40):
        client.recommend(1, 5)
    calls = [r.calls for r in four]
    assert sum(calls) == 40 and min(calls) >= 5, calls


def test_concurrent_calls_avoid_the_busy_instance(recommenders, clients):
    slow, fast = recommenders(2, scores=CATALOGUE)
    slow.delay = 0.3
    client = clients([slow.url, fast.url], 2.0)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: client.recommend(1, 5), range(24)))
    assert all(len(a.items) == 5 for a in answers)
    # While the slow one holds a call, every new one goes to the idle fast one.
    assert fast.calls >= 3 * slow.calls, (slow.calls, fast.calls)


def test_a_dead_instance_is_skipped_then_probed_after_the_cooldown(recommenders, clients):
    sick, well = recommenders(2, scores=CATALOGUE)
    sick.status = 503
    client = clients([sick.url, well.url], 1.0, failure_threshold=2, cooldown=0.5)
    for _ in range(6):  # every call is answered, by failover while the circuit still closes
        assert len(client.recommend(1, 3).items) == 3
    assert sick.calls == 2  # then its circuit opened
    assert [s.circuit_open for s in client.stats()] == [1, 0]
    for _ in range(10):
        client.recommend(1, 3)
    assert sick.calls == 2

    sick.status = 200
    time.sleep(0.6)
    for _ in range(10):
        client.recommend(1, 3)
    assert sick.calls >= 2 + 4  # probed once, closed, then back in the rotation
    assert [s.circuit_open for s in client.stats()] == [0, 0]


def test_a_failed_probe_opens_the_circuit_again(recommenders, clients):
    sick, well = recommenders(2, scores=CATALOGUE)
    sick.status = 500
    client = clients([sick.url, well.url], 1.0, failure_threshold=1, cooldown=0.3)
    client.recommend(1, 3)
    client.recommend(1, 3)
    assert sick.calls == 1
    time.sleep(0.35)
    for _ in range(5):
        client.recommend(1, 3)
    assert sick.calls == 2  # one probe, which failed: skipped again


def test_a_timeout_moves_the_call_to_the_next_instance(recommenders, clients):
    slow, fast = recommenders(2, scores=CATALOGUE)
    slow.delay = 1.0
    client = clients([slow.url, fast.url], 0.2)
    started = time.monotonic()
    answer = client.recommend(1, 3)
    assert time.monotonic() - started < 0.8
    assert len(answer.items) == 3 and (slow.calls, fast.calls) == (1, 1)


def test_with_every_circuit_open_calls_fail_at_once(recommenders, clients, dead_url):
    (sick,) = recommenders(1, scores=CATALOGUE)
    sick.status = 503
    client = clients([sick.url, dead_url], 1.0, failure_threshold=1, cooldown=60)
    with pytest.raises(AIUnavailable):
        client.recommend(1, 3)
    started = time.monotonic()
    with pytest.raises(AIUnavailable, match="circuit open"):
        client.recommend(1, 3)
    assert time.monotonic() - started < 0.05 and sick.calls == 1


@pytest.mark.parametrize("k", [1, 10, 100])
def test_fan_out_over_shards_merges_to_the_unsharded_top_n(recommenders, clients, k):
    (whole,) = recommenders(1, scores=CATALOGUE)
    shards = [recommenders(2, scores=CATALOGUE, serves_shard=i) for i in range(3)]
    unsharded = clients([whole.url], 1.0).recommend(1, k)
    sharded = clients(shards=[[r.url for r in group] for group in shards], timeout=1.0)
    merged = sharded.recommend(1, k)
    assert merged.items == unsharded.items and len(merged.items) == k
    assert merged.model_version == "v1" and not merged.partial
    assert all(sum(r.calls for r in group) == 1 for group in shards)


def test_fan_out_answers_partially_when_a_shard_is_down(recommenders, clients, dead_url):
    (shard0,) = recommenders(1, scores=CATALOGUE, serves_shard=0)
    client = clients(shards=[[shard0.url], [dead_url]], timeout=0.5)
    answer = client.recommend(1, 5)
    assert answer.partial and len(answer.items) == 5
    assert all(item.movie_id % 2 == 0 for item in answer.items)


def test_fan_out_similar_merges_shards_that_know_the_movie(recommenders, clients):
    table = {7: {2: 0.9, 3: 0.8, 4: 0.7, 5: 0.6}}
    owner = recommenders(1, similar=table, serves_shard=0)[0]
    other = recommenders(1, similar=table, serves_shard=1)[0]
    client = clients(shards=[[owner.url], [other.url]], timeout=1.0)
    assert client.similar(7, 3).items == (Scored(2, 0.9), Scored(3, 0.8), Scored(4, 0.7))
    with pytest.raises(NotFound):
        client.similar(8, 3)


def test_the_model_version_is_asked_at_most_every_few_seconds(recommenders, clients):
    (one,) = recommenders(1, scores=CATALOGUE)
    client = clients([one.url], 1.0, version_check=0.3)
    assert client.model_version() == "v1"
    one.version = "v2"
    assert client.model_version() == "v1"
    time.sleep(0.35)
    assert client.model_version() == "v2"
    one.status = 503
    time.sleep(0.35)
    assert client.model_version() == "v2"  # unknown now: the last known one stays


def test_a_connection_closed_as_it_is_reused_is_retried_on_the_same_instance(clients):
    """A server whose keep-alive runs out as the next request arrives closes the connection
    without an answer: the call is made again on a new connection, not failed over, and the
    instance is not counted as failing."""
    body = b'{"model_version": "v1", "items": [{"movie_id": 4, "score": 1.0}]}'
    answer = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    listener = socket.create_server(("127.0.0.1", 0))
    connections = []

    def serve():  # every connection: one answer, then the next request is read and dropped
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            connections.append(conn)
            conn.recv(65536)
            conn.sendall(answer)
            conn.recv(65536)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        client = clients([f"http://127.0.0.1:{listener.getsockname()[1]}"], 1.0)
        for _ in range(3):
            assert client.recommend(1, 1).items == (Scored(4, 1.0),)
        assert len(connections) == 3  # calls 2 and 3 each met a dropped connection
        assert [(s.calls, s.failures) for s in client.stats()] == [(3, 0)]
    finally:
        listener.close()


def test_merge_keeps_demoted_movies_last_whatever_their_score():
    shard_a = AIAnswer(items=(Scored(2, 0.9), Scored(4, 0.95, demoted=True)))
    shard_b = AIAnswer(items=(Scored(1, 0.5), Scored(3, 0.99, demoted=True)))
    merged = merge([shard_a, shard_b], 4)
    assert [s.movie_id for s in merged.items] == [2, 1, 3, 4]
