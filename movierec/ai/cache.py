"""The per-user result cache of ``/recommend``: bounded, expiring, per worker process.

A key holds everything the answer depends on: the model version (a swap or a promotion
changes it), the shard, the request (user, k, excluded movies, demoted genres) and the user's
signals fingerprint (:meth:`UserContext.fingerprint`: number of ratings, newest ``rated_at``,
a hash of the ratings, favourites and genres), read by the same database query the server
makes anyway. So a new rating or a model swap is never answered from the cache; the TTL only
bounds memory held by users who went away. The cache saves the scoring (the matrix-vector
product over the catalogue, or the EASE row sums), not the database read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable

from cachetools import TTLCache

from movierec.ai.base import Recommendations
from movierec.ai.stats import COUNTERS


class ResultCache:
    """``maxsize`` answers kept ``ttl`` seconds; either 0 turns the cache off."""

    def __init__(self, maxsize: int, ttl: float, clock: Callable[[], float] = time.monotonic):
        self._cache: TTLCache | None = (
            TTLCache(maxsize=maxsize, ttl=ttl, timer=clock) if maxsize > 0 and ttl > 0 else None
        )
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self._cache is not None

    def get(self, key: Hashable) -> Recommendations | None:
        if self._cache is None:
            return None
        with self._lock:
            found = self._cache.get(key)
        outcome = "hits" if found is not None else "misses"
        COUNTERS.add(f"movierec_recommender_cache_{outcome}_total", cache="recommend")
        return found

    def put(self, key: Hashable, value: Recommendations) -> None:
        if self._cache is not None:
            with self._lock:
                self._cache[key] = value

    def __len__(self) -> int:
        if self._cache is None:
            return 0
        with self._lock:
            self._cache.expire()
            return len(self._cache)
