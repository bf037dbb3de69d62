"""The recommender server's counters, rendered as Prometheus text on ``GET /metrics``.

Counters are per process: gunicorn runs several workers per AI instance and each counts what
it answered, with ``pid`` (and ``instance``, the ``instance_name`` setting) as labels, so a
scraper summing over series gets the instance's totals. Models count into the same process-wide
:data:`COUNTERS` (cache hits of the popularity lists, ANN or exact scoring), so a model swap
does not reset them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

PREFIX = "movierec_recommender_"
HELP = {
    PREFIX + "requests_total": ("counter", "Requests answered, by endpoint and status."),
    PREFIX + "request_seconds_total": ("counter", "Time spent answering, by endpoint."),
    PREFIX + "cache_hits_total": ("counter", "Cache lookups that found an entry."),
    PREFIX + "cache_misses_total": ("counter", "Cache lookups that did not."),
    PREFIX + "cache_entries": ("gauge", "Entries held now."),
    PREFIX + "scored_total": ("counter", "Top-k computations, by method (exact or ann)."),
    PREFIX + "model_info": ("gauge", "The model answering, as labels (always 1)."),
}


class Counters:
    """Thread-safe named counters with labels."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def add(self, name: str, value: float = 1.0, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + value

    def get(self, name: str, **labels: str) -> float:
        with self._lock:
            return self._values.get((name, tuple(sorted(labels.items()))), 0.0)

    def snapshot(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        with self._lock:
            return dict(self._values)


COUNTERS = Counters()


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _line(name: str, labels: Mapping[str, str], value: float) -> str:
    inner = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
    number = repr(float(value)) if value != int(value) else str(int(value))
    return f"{name}{{{inner}}} {number}\n"


def render(
    base: Mapping[str, str],
    gauges: Iterable[tuple[str, Mapping[str, str], float]] = (),
    counters: Counters = COUNTERS,
) -> str:
    """Prometheus text: every counter, then ``gauges``, each series labelled with ``base``."""
    series: dict[str, list[tuple[Mapping[str, str], float]]] = {}
    for (name, labels), value in sorted(counters.snapshot().items()):
        series.setdefault(name, []).append((dict(labels), value))
    for name, labels, value in gauges:
        series.setdefault(name, []).append((labels, value))
    out = []
    for name, rows in series.items():
        kind, text = HELP.get(name, ("untyped", name))
        out.append(f"# HELP {name} {text}\n# TYPE {name} {kind}\n")
        out.extend(_line(name, {**base, **labels}, value) for labels, value in rows)
    return "".join(out)


def base_labels(instance: str) -> dict[str, str]:
    return {"instance": instance, "pid": str(os.getpid())}
