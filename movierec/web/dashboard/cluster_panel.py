"""The cluster panel: each web and AI instance's health, cache hit rate, requests, request
rate and latency, from their own ``/health`` and ``/metrics``.

Which instances: the local cluster's record when this site runs in one (the library call
behind ``movierec cluster status``), else this web instance and the AI instances it is
configured with. Each instance is read on its own with a short timeout; one that does not
answer is shown as such and the others stand. The request rate is the change since the
previous look at the panel from this worker (the counters are totals since each worker
started), so the first look shows none.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import requests
from flask import current_app, request

from movierec.errors import MovierecError
from movierec.web import picks
from movierec.web.dashboard import prom
from movierec.web.db import database
from movierec.web.metrics import own_text

TIMEOUT = 2.0
LATENCY = "movierec_http_request_duration_seconds"
_SEEN = "movierec.dashboard.seen"  # app extension: url -> (monotonic time, requests)
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Instance:
    name: str
    role: str  # web or ai
    url: str
    health: str  # ok, down, HTTP 503, ...
    requests: float | None = None
    rate: float | None = None  # requests/s since the previous look
    mean_ms: float | None = None
    p99_ms: float | None = None  # the histogram bucket's bound (web only)
    hit_rate: float | None = None
    detail: str = ""


def gather() -> list[Instance]:
    """Every instance's figures, web ones first."""
    settings = database().settings
    members = _cluster_members(settings)
    if members is not None:
        return [_read(name, role, url, settings.ai_key) for name, role, url in members]
    # Not in a local cluster: this instance (its own worker, read in-process) and its AIs.
    own = request.host_url.rstrip("/")
    found = [_web(settings.instance_name or "this instance", own, "ok", prom.parse(own_text()))]
    for i, ai in enumerate(picks.ai_client().stats()):
        found.append(_read(f"ai-{i + 1}", "ai", ai.url, settings.ai_key))
    return found


def _cluster_members(settings) -> list[tuple[str, str, str]] | None:
    from movierec import cluster  # when used, as the registry (see models_panel)

    try:
        record, _ = cluster.status(settings)
    except MovierecError:
        return None  # not in a local cluster
    return [
        (m.name, m.role, f"http://127.0.0.1:{m.port}")
        for m in sorted(record.members, key=lambda m: (m.role != "web", m.name))
        if m.role in ("web", "ai")
    ]


def _read(name: str, role: str, url: str, ai_key: str | None) -> Instance:
    health = _health(url, "/healthz" if role == "web" else "/health")
    headers = {"Authorization": f"Bearer {ai_key}"} if role == "ai" and ai_key else {}
    try:
        answer = requests.get(f"{url}/metrics", headers=headers, timeout=TIMEOUT)
        answer.raise_for_status()
    except requests.RequestException as exc:
        return Instance(name, role, url, health, detail=f"no /metrics ({type(exc).__name__})")
    samples = prom.parse(answer.text)
    if role == "web":
        return _web(name, url, health, samples)
    return _ai(name, url, health, samples)


def _web(name: str, url: str, health: str, samples: list[prom.Sample]) -> Instance:
    count = prom.total(samples, f"{LATENCY}_count")
    seconds = prom.total(samples, f"{LATENCY}_sum")
    p99 = prom.quantile(samples, LATENCY, 0.99)
    hits = prom.total(samples, "movierec_cache_hits_total")
    lookups = hits + prom.total(samples, "movierec_cache_misses_total")
    pids = {s.labels.get("pid") for s in samples if "pid" in s.labels}
    return Instance(
        name, "web", url, health, requests=count, rate=_rate(url, count),
        mean_ms=1000 * seconds / count if count else None,
        p99_ms=None if p99 is None else 1000 * p99,
        hit_rate=hits / lookups if lookups else None,
        detail=f"worker {', '.join(sorted(p for p in pids if p))} answered",
    )  # fmt: skip


def _ai(name: str, url: str, health: str, samples: list[prom.Sample]) -> Instance:
    count = prom.total(samples, "movierec_recommender_requests_total")
    seconds = prom.total(samples, "movierec_recommender_request_seconds_total")
    hits = prom.total(samples, "movierec_recommender_cache_hits_total", cache="recommend")
    misses = prom.total(samples, "movierec_recommender_cache_misses_total", cache="recommend")
    models = sorted(
        f"{s.labels.get('kind')} {s.labels.get('version')}"
        for s in samples
        if s.name == "movierec_recommender_model_info"
    )
    return Instance(
        name, "ai", url, health, requests=count, rate=_rate(url, count),
        mean_ms=1000 * seconds / count if count else None,
        hit_rate=hits / (hits + misses) if hits + misses else None,
        detail="; ".join(models) or "no model loaded",
    )  # fmt: skip


def _health(url: str, path: str) -> str:
    try:
        answer = requests.get(f"{url}{path}", timeout=TIMEOUT)
    except requests.RequestException:
        return "down"
    return "ok" if answer.status_code == 200 else f"HTTP {answer.status_code}"


def _rate(url: str, count: float) -> float | None:
    now = time.monotonic()
    with _LOCK:
        seen = current_app.extensions.setdefault(_SEEN, {})
        before = seen.get(url)
        seen[url] = (now, count)
    if before is None or now <= before[0] or count < before[1]:
        return None  # first look, or the worker restarted (counters start again)
    return (count - before[1]) / (now - before[0])
