"""A bounded, thread-safe, in-memory cache: the mechanism under every cache of the site
(:mod:`movierec.web.cache` says which there are and what each keeps).

Each cache is bounded twice, by entries and by bytes (an estimate of the Python objects' size,
see :func:`approx_size`), may expire entries after a time, and counts its hits and misses for
``GET /metrics``. It knows nothing of Flask or of what it holds.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Collection, Hashable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

import cachetools

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
_POLICIES = {"lru": cachetools.LRUCache, "lfu": cachetools.LFUCache}
# Per entry, beyond the value: the key, the entry record, the cachetools bookkeeping.
_ENTRY_OVERHEAD = 200


_LEAVES = frozenset({str, bytes, int, float, complex, bool, type(None)})
_SEQUENCES = frozenset({tuple, list, set, frozenset})


def approx_size(value: object) -> int:
    """Bytes held by ``value`` and everything it refers to (each object counted once).

    Follows tuples, lists, sets, dicts and dataclass / plain objects; strings, numbers and
    other leaves count their ``sys.getsizeof``; an object with an ``approx_bytes`` attribute
    counts that (a value several caches keep can count itself once). An estimate, good to
    bound a cache's memory; it runs on every cache write, so it dispatches on exact types
    first.
    """
    getsizeof = sys.getsizeof
    seen: set[int] = set()
    total = 0
    stack = [value]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        total += getsizeof(obj)
        kind = type(obj)
        if kind in _LEAVES:
            continue
        if kind in _SEQUENCES:
            stack.extend(obj)  # type: ignore[call-overload]
        elif kind is dict:
            stack.extend(obj.keys())  # type: ignore[attr-defined]
            stack.extend(obj.values())  # type: ignore[attr-defined]
        elif isinstance(obj, str | bytes | int | float):
            continue  # subclasses (Markup, IntEnum, ...)
        elif isinstance(obj, Mapping):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, tuple | list | set | frozenset):
            stack.extend(obj)
        else:
            known = getattr(obj, "approx_bytes", None)
            if isinstance(known, int):  # an object that keeps its own count
                total += known
                continue
            attrs = getattr(obj, "__dict__", None)
            if attrs is not None:
                total += getsizeof(attrs)
                stack.extend(attrs.values())
            for slot in getattr(kind, "__slots__", ()):
                if hasattr(obj, slot):
                    stack.append(getattr(obj, slot))
    return total


@dataclass(frozen=True)
class CacheStats:
    name: str
    policy: str
    hits: int
    misses: int
    entries: int
    bytes: int
    max_entries: int
    max_bytes: int
    evictions: int
    ttl: float | None

    @property
    def hit_rate(self) -> float | None:
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else None


@dataclass(frozen=True)
class _Entry(Generic[V]):
    value: V
    expires: float
    size: int


class BoundedCache(Generic[K, V]):
    """A thread-safe cache bounded by ``max_entries`` and ``max_bytes``, with optional TTL.

    ``policy`` chooses what goes first when a bound is reached: ``lru`` (least recently used)
    or ``lfu`` (least frequently used). Entries older than ``ttl`` seconds count as misses.
    A value bigger than ``max_bytes`` is not kept. ``max_entries=0`` turns the cache off.
    """

    def __init__(
        self,
        name: str,
        policy: str,
        max_entries: int,
        max_bytes: int,
        ttl: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        if policy not in _POLICIES:
            raise ValueError(f"policy {policy!r}: choose one of {', '.join(_POLICIES)}")
        self.name, self.policy, self.ttl = name, policy, ttl
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._data: cachetools.Cache = _POLICIES[policy](
            maxsize=max(max_bytes, 1), getsizeof=lambda entry: entry.size
        )
        self.hits = self.misses = self.evictions = 0

    def get(self, key: K, valid: Callable[[V], bool] | None = None) -> V | None:
        """The value for ``key``, or None (a miss) when absent, expired or not ``valid``.

        An expired or invalid entry is dropped.
        """
        with self._lock:
            entry = self._current(key, self._clock(), valid)
            if entry is None:
                self.misses += 1
                return None
            self.hits += 1
            return cast(V, entry.value)

    def get_many(self, keys: Collection[K]) -> dict[K, V]:
        """The fresh values of those of ``keys`` that are cached, each lookup counted as
        :meth:`get` counts it: a list's two dozen movies under one lock and one clock read."""
        found: dict[K, V] = {}
        with self._lock:
            now = self._clock()
            for key in keys:
                entry = self._current(key, now)
                if entry is not None:
                    found[key] = entry.value
            self.hits += len(found)
            self.misses += len(keys) - len(found)
        return found

    def _current(
        self, key: K, now: float, valid: Callable[[V], bool] | None = None
    ) -> _Entry[V] | None:
        """The entry for ``key`` if fresh at ``now`` and ``valid``, else None (an expired or
        invalid one is dropped). Under the lock."""
        entry = self._data.get(key)  # counts as a use for LRU and LFU
        if entry is not None and (
            entry.expires < now or (valid is not None and not valid(entry.value))
        ):
            del self._data[key]
            return None
        return entry

    def peek(self, key: K) -> V | None:
        """The value for ``key`` if fresh, without counting a lookup or a use."""
        with self._lock:
            if key not in self._data:
                return None
            # The base class's lookup: LRU and LFU subclasses would count it as a use.
            entry = cachetools.Cache.__getitem__(self._data, key)
            if entry.expires < self._clock():
                return None
            return cast(V, entry.value)

    def put(self, key: K, value: V, size: int | None = None) -> bool:
        """Keep ``value`` under ``key``; False when it is too big (or the cache is off).

        ``size`` is the bytes the entry holds when the caller knows them better (or more
        cheaply) than :func:`approx_size` of key and value."""
        if self.max_entries <= 0:
            return False
        if size is None:
            size = approx_size(value) + approx_size(key)
        size += _ENTRY_OVERHEAD
        if size > self.max_bytes:
            return False
        expires = self._clock() + self.ttl if self.ttl is not None else float("inf")
        with self._lock:
            before = len(self._data)
            if key not in self._data:
                before += 1
                # Make room first: after inserting, LFU would evict the newcomer itself.
                while len(self._data) >= self.max_entries:
                    self._data.popitem()
            self._data[key] = _Entry(value, expires, size)
            self.evictions += before - len(self._data)
        return True

    def replace(self, key: K, value: V, size: int | None = None) -> bool:
        """Put ``value`` in place of ``key``'s fresh entry, keeping its expiry; False when
        there is none (or ``value`` is too big). For the same thing restamped or grown: a
        TTL bounds how long what an entry was made from may change unseen, and :meth:`put`
        would start it again (kept stars outlived a rating model promoted alone that way,
        each page of the user's putting them back)."""
        if size is None:
            size = approx_size(value) + approx_size(key)
        size += _ENTRY_OVERHEAD
        with self._lock:
            entry = self._current(key, self._clock())
            if entry is None or size > self.max_bytes:
                return False
            before = len(self._data)
            self._data[key] = _Entry(value, entry.expires, size)
            self.evictions += before - len(self._data)
        return True

    def pop(self, key: K) -> bool:
        """Drop ``key``; False when it was not there."""
        with self._lock:
            return self._data.pop(key, None) is not None

    def touch(self, keys: list[K]) -> None:
        """Count a use of each of ``keys`` that is cached (LFU: they are kept longer)."""
        with self._lock:
            for key in keys:
                if key in self._data:
                    self._data[key]  # noqa: B018 - the lookup is the use

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(
                self.name,
                self.policy,
                self.hits,
                self.misses,
                len(self._data),
                int(self._data.currsize),
                self.max_entries,
                self.max_bytes,
                self.evictions,
                self.ttl,
            )
