"""``GET /metrics``: Prometheus text format for this web worker process.

Cache hits, misses, entries and bytes; requests and their latency per endpoint; calls, errors
and circuit state per AI instance. The numbers are the answering worker's own (gunicorn runs
several per instance and each has its own caches and counters): every series carries
``instance`` (the ``instance_name`` setting) and ``pid``, so a scraper sees which one it got.
Only loopback clients may read it (behind the director: the client as the director saw it).
"""

from __future__ import annotations

import bisect
import ipaddress
import os
import threading
import time
from collections.abc import Iterable
from typing import cast

from flask import Blueprint, Flask, Response, abort, current_app, g, request

from movierec.web import cache, picks
from movierec.web.ai_client import AIClient
from movierec.web.bounded_cache import BoundedCache

EXTENSION = "movierec.metrics"
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Any token is a valid HTTP method to werkzeug: others are counted as "other", so that a client
# inventing methods cannot grow the series without bound.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

bp = Blueprint("metrics", __name__)


class RequestMetrics:
    """Request counts and a latency histogram per (endpoint, method, status)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # key -> [count, sum of seconds, bucket counts...]
        self._series: dict[tuple[str, str, str], list[float]] = {}

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        key = (endpoint, method, str(status))
        slot = bisect.bisect_left(BUCKETS, seconds)
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = [0.0] * (2 + len(BUCKETS))
            series[0] += 1
            series[1] += seconds
            if slot < len(BUCKETS):
                series[2 + slot] += 1

    def snapshot(self) -> dict[tuple[str, str, str], list[float]]:
        with self._lock:
            return {key: list(values) for key, values in self._series.items()}


def init_app(app: Flask) -> None:
    """Time every request and serve ``/metrics``. Register before other request hooks so that
    their time is counted too."""
    app.extensions[EXTENSION] = RequestMetrics()
    app.before_request(_start_timer)
    app.teardown_request(_observe)
    app.register_blueprint(bp)


def _start_timer() -> None:
    g.metrics_started = time.perf_counter()


def _observe(_exc: BaseException | None) -> None:
    started = g.get("metrics_started")
    if started is None:
        return
    rule = request.url_rule
    endpoint = request.endpoint if rule is not None and request.endpoint else "unmatched"
    status = g.get("metrics_status", 500 if _exc is not None else 200)
    method = request.method if request.method in METHODS else "other"
    _metrics().observe(endpoint, method, status, time.perf_counter() - started)


@bp.after_app_request
def _remember_status(response: Response) -> Response:
    g.metrics_status = response.status_code
    return response


def _metrics() -> RequestMetrics:
    return cast(RequestMetrics, current_app.extensions[EXTENSION])


@bp.get("/metrics")
def metrics() -> Response:
    if not is_loopback(request.remote_addr):
        abort(404)
    return Response(own_text(), content_type=CONTENT_TYPE)


def own_text() -> str:
    """This worker's metrics as Prometheus text (what ``/metrics`` answers; the dashboard
    reads its own worker's without a request to itself)."""
    settings = current_app.extensions["movierec.settings"]
    base = {"instance": settings.instance_name or "web", "pid": str(os.getpid())}
    return "".join(render(base, cache.caches().all(), _metrics(), picks.ai_client()))


def is_loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _labels(labels: dict[str, str]) -> str:
    def escape(value: str) -> str:
        return value.replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n")

    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in labels.items()) + "}"


def _family(name: str, kind: str, help_text: str, samples: Iterable[tuple[dict, float]]) -> str:
    lines = [f"# HELP {name} {help_text}\n", f"# TYPE {name} {kind}\n"]
    for labels, value in samples:
        number = repr(float(value)) if isinstance(value, float) else str(value)
        lines.append(f"{name}{_labels(labels)} {number}\n")
    return "".join(lines)


def render(
    base: dict[str, str],
    caches: Iterable[BoundedCache],
    requests: RequestMetrics,
    ai: AIClient | None = None,
) -> list[str]:
    """The metric families as Prometheus text, every sample labelled with ``base``."""
    stats = [c.stats() for c in caches]

    def per_cache(attr: str) -> list[tuple[dict, float]]:
        return [({**base, "cache": s.name}, getattr(s, attr)) for s in stats]

    out = [
        _family("movierec_cache_hits_total", "counter", "Lookups answered by the cache.",
                per_cache("hits")),
        _family("movierec_cache_misses_total", "counter",
                "Lookups not answered (absent, expired or stale).", per_cache("misses")),
        _family("movierec_cache_evictions_total", "counter",
                "Entries dropped to stay within the bounds.", per_cache("evictions")),
        _family("movierec_cache_entries", "gauge", "Entries held.", per_cache("entries")),
        _family("movierec_cache_bytes", "gauge", "Estimated bytes held.", per_cache("bytes")),
        _family("movierec_cache_max_entries", "gauge", "Entry bound.", per_cache("max_entries")),
        _family("movierec_cache_max_bytes", "gauge", "Byte bound.", per_cache("max_bytes")),
    ]  # fmt: skip
    series = requests.snapshot()
    counts, sums, buckets = [], [], []
    for (endpoint, method, status), values in sorted(series.items()):
        labels = {**base, "endpoint": endpoint, "method": method, "status": status}
        counts.append((labels, int(values[0])))
        sums.append((labels, values[1]))
        running = 0
        for bound, count in zip(BUCKETS, values[2:], strict=True):
            running += int(count)
            buckets.append(({**labels, "le": repr(bound)}, running))
        buckets.append(({**labels, "le": "+Inf"}, int(values[0])))
    out.append(_family("movierec_http_requests_total", "counter", "Requests answered.", counts))
    out.append(
        "# HELP movierec_http_request_duration_seconds Time to answer a request.\n"
        "# TYPE movierec_http_request_duration_seconds histogram\n"
        + "".join(
            f"movierec_http_request_duration_seconds_bucket{_labels(labels)} {value}\n"
            for labels, value in buckets
        )
        + "".join(
            f"movierec_http_request_duration_seconds_sum{_labels(labels)} {value!r}\n"
            f"movierec_http_request_duration_seconds_count{_labels(labels)} {int(count)}\n"
            for (labels, value), (_, count) in zip(sums, counts, strict=True)
        )
    )
    instances = ai.stats() if ai is not None else []
    if instances:

        def per_instance(attr: str) -> list[tuple[dict, float]]:
            return [
                ({**base, "ai": i.url, "shard": str(i.shard)}, getattr(i, attr)) for i in instances
            ]

        out += [
            _family("movierec_ai_calls_total", "counter", "Calls to an AI instance.",
                    per_instance("calls")),
            _family("movierec_ai_failures_total", "counter",
                    "Calls that failed (timeout, refused, 5xx, malformed).",
                    per_instance("failures")),
            _family("movierec_ai_in_flight", "gauge", "Calls waiting for an answer.",
                    per_instance("in_flight")),
            _family("movierec_ai_circuit_open", "gauge",
                    "1 while the instance is skipped after repeated failures.",
                    per_instance("circuit_open")),
        ]  # fmt: skip
    return out
