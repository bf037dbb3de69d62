"""Requests through a real HAProxy director to stand-in backends: balancing, failover, backup."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from director_support import get, start_director, statuses, wait_statuses

from movierec import director

pytestmark = pytest.mark.integration


def test_round_robin_spreads_requests_and_status_counts_them(director_settings, standins):
    a, b = standins("a", "b")
    state = start_director(director_settings, [a, b])
    wait_statuses(director_settings, {"a": "UP", "b": "UP"})
    served = [get(state.port) for _ in range(20)]
    assert Counter(served) == {(200, "a"): 10, (200, "b"): 10}
    report = director.status(director_settings, "d1")
    assert report.running and report.pid == director.running_pid(
        director.director_files(director_settings, "d1")
    )
    assert {x.name: x.requests for x in report.backends} == {"a": 10, "b": 10}


def test_forwarding_headers_reach_the_backend(director_settings, standins):
    (a,) = standins("a")
    state = start_director(director_settings, [a])
    first = json.loads(get(state.port, "/headers")[1])
    second = json.loads(get(state.port, "/headers")[1])
    assert first["x-forwarded-for"] == "127.0.0.1"
    assert len(first["x-request-id"]) == 36 and first["x-request-id"] != second["x-request-id"]
    kept = json.loads(get(state.port, "/headers", {"X-Request-ID": "abc-123"})[1])
    assert kept["x-request-id"] == "abc-123"


def test_killed_backend_costs_no_request(director_settings, standins):
    a, b = standins("a", "b")
    state = start_director(director_settings, [a, b])
    wait_statuses(director_settings, {"a": "UP", "b": "UP"})
    a.kill()
    # At once: the first requests meet a refused connection and are retried on b.
    during = [get(state.port) for _ in range(200)]
    assert set(during) == {(200, "b")}
    # Within ~1 s the health check marks a DOWN; the status says so.
    wait_statuses(director_settings, {"a": "DOWN", "b": "UP"}, timeout=3)
    after = [get(state.port) for _ in range(200)]
    assert set(after) == {(200, "b")}
    checks = {x.name: x.check for x in director.status(director_settings).backends}
    assert checks["a"].startswith("L4")  # the connection is refused, not a bad answer
    # A reload hands the measured health to the new worker: a stays DOWN from the start.
    director.reload(director_settings, "d1")
    assert statuses(director_settings) == {"a": "DOWN", "b": "UP"}


def test_backup_serves_only_when_every_primary_is_down(director_settings, standins):
    a, b, spare = standins("a", "b", "spare")
    state = start_director(director_settings, [a, b], backups=[spare])
    wait_statuses(director_settings, {"a": "UP", "b": "UP", "spare": "UP"})
    assert {get(state.port)[1] for _ in range(20)} == {"a", "b"}
    a.set_healthy(False)  # /healthz answers 503, as a web instance whose database is down
    wait_statuses(director_settings, {"a": "DOWN"})
    assert {get(state.port)[1] for _ in range(10)} == {"b"}
    b.set_healthy(False)
    wait_statuses(director_settings, {"a": "DOWN", "b": "DOWN"})
    assert {get(state.port) for _ in range(20)} == {(200, "spare")}
    assert director.status(director_settings).backends[0].check == "L7STS"
    a.set_healthy(True)
    wait_statuses(director_settings, {"a": "UP"})
    assert {get(state.port)[1] for _ in range(10)} == {"a"}
