"""Reading the Prometheus text the web and AI instances serve at ``/metrics`` into the few
figures the dashboard's cluster panel shows. Only the sample lines are read (no HELP/TYPE),
which is all the instances write."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def parse(text: str) -> list[Sample]:
    """The samples of a Prometheus text exposition; malformed lines are skipped."""
    found = []
    for line in text.splitlines():
        match = _SAMPLE.match(line.strip())
        if not match or line.startswith("#"):
            continue
        try:
            value = float(match.group(3))
        except ValueError:
            continue
        found.append(Sample(match.group(1), dict(_LABEL.findall(match.group(2) or "")), value))
    return found


def total(samples: Iterable[Sample], name: str, **where: str) -> float:
    """The sum of ``name``'s samples whose labels include ``where``."""
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in where.items())
    )


def quantile(samples: Iterable[Sample], histogram: str, q: float) -> float | None:
    """The upper bound of the bucket holding the ``q`` quantile of a histogram summed over
    all its series (what the buckets can tell); None without observations."""
    by_bound: dict[float, float] = {}
    for s in samples:
        if s.name == f"{histogram}_bucket" and "le" in s.labels:
            bound = math.inf if s.labels["le"] == "+Inf" else float(s.labels["le"])
            by_bound[bound] = by_bound.get(bound, 0.0) + s.value
    if not by_bound or by_bound.get(math.inf, 0.0) == 0.0:
        return None
    wanted = q * by_bound[math.inf]
    for bound in sorted(by_bound):
        if by_bound[bound] >= wanted:
            return bound
    return math.inf
