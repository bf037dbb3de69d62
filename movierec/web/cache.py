"""The site's in-memory caches: hot movies, search results, and the latest active users'
recommendations.

Each gunicorn worker process has its own caches (``create_app`` runs once per worker, after the
fork); nothing is shared between workers or instances. Each cache is bounded twice, by entries
and by bytes (an estimate of the Python objects' size, see :func:`approx_size`), and counts its
hits and misses for ``GET /metrics``.

Staleness, cache by cache:

* ``movies`` (a movie with its rating count and average, by id; LFU, 60 s TTL): kept by how
  often a movie is viewed *and* how often it shows up in search results. A rating drops the
  movie here at once on the worker that took it; elsewhere the average is at most a TTL old.
* ``searches`` (one page of results per query; 30 s TTL): the catalogue changes rarely.
* ``listings`` (a movie as lists show it: title, year, genres, links; LFU, 60 s TTL): what a
  recommendations miss needs besides the recommender's answer, so that it asks the database
  only for movies no recent list showed.
* ``similar`` (a movie's similar movies, per model version; LRU, 10 min TTL).
* ``recommendations`` (per user, LRU by activity): valid only while both the model version
  (from the AI servers' ``/health``, checked at most every few seconds) and the user's *taste
  version* are what they were when the entry was made. The taste version (number of ratings,
  newest rating time, preferences' update time, number and newest time of "not interested"
  movies) changes with anything the recommendations depend on. A hit asks the database
  nothing while the worker's change listener (:mod:`movierec.web.changes`) has heard of no
  change of that user since the entry was stamped; otherwise, and for API-token requests,
  the taste version is read from the primary (index lookups) and compared. That is what makes
  a rating taken by worker A, or by another instance, refresh the list that worker B serves.
  The worker that took the rating also drops the entry at once (:func:`after_rating`,
  :func:`after_taste_change`), and the user's session is marked so that their next request, on
  any worker, compares versions (see :mod:`movierec.web.picks`).
* ``pages`` (a user's whole "for you" page; LRU, 5 min TTL): valid while it shows the same
  cached list object, user name and CSRF token, and no message waits to be shown.
* ``users`` (the logged-in user as pages see it, by id; LRU): the user loader's answer, used
  while the change listener has heard of no change of that user (a new session generation,
  a deleted account) since it was read.
* ``fragments`` (a cached list's HTML or JSON; LRU): lives as long as the list.
* ``movie_html`` (one movie's HTML in such a list, keyed by the movie's fields; LFU, 10 min
  TTL): what a new list is put together from. A movie changed by an import is a new key once
  ``listings`` has the new row.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Collection, Hashable, Mapping
from dataclasses import dataclass, field, fields, replace
from operator import attrgetter
from typing import Any, Generic, Protocol, TypeVar, cast

import cachetools
from flask import Flask, current_app, get_template_attribute, session
from flask_login import current_user
from markupsafe import Markup
from sqlalchemy import Connection

from movierec.config import Settings
from movierec.db import ShardUnavailable
from movierec.web import catalog
from movierec.web.db import read_session

EXTENSION = "movierec.caches"
# Session key: CHANGED after the user changed their taste in this session (no digest equals
# it), then a digest of the taste version their lists were last compared with; absent before
# the first change. See movierec.web.picks.
TASTE = "taste"
CHANGED = "changed"
MiB = 1024 * 1024
FLASHES = "_flashes"  # Flask's session key for messages not yet shown
CSRF = "csrf_token"  # Flask-WTF's session key for the raw CSRF token
# A cached page holds CSRF tokens signed when it was rendered: it must be dropped well before
# they expire (Flask-WTF's WTF_CSRF_TIME_LIMIT, an hour by default).
PAGE_TTL = 300.0

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
T = TypeVar("T", bound=str | bytes)
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


class Listing(Protocol):
    """A cached list of movies (a user's picks): the same object on every hit, so what is
    made from it is kept by its identity."""

    @property
    def movies(self) -> tuple[catalog.MovieItem, ...]: ...


@dataclass(frozen=True)
class Recommended(Generic[V]):
    """A user's recommendations and the versions they were computed for; ``stamp`` is the
    change listener's epoch when the taste version was read (see :mod:`~movierec.web.changes`)."""

    model_version: str | None
    taste_version: tuple
    picks: V
    stamp: int = -1


@dataclass(frozen=True)
class Stamped(Generic[V]):
    """A value read from the database at the change listener's epoch ``stamp``."""

    value: V
    stamp: int


@dataclass
class WebCaches:
    """The caches of one web worker process."""

    movies: BoundedCache[int, catalog.MovieItem]
    searches: BoundedCache[catalog.SearchQuery, catalog.SearchPage]
    listings: BoundedCache[int, catalog.MovieItem]
    similar: BoundedCache[tuple[int, int, str | None], Any]
    # Keyed by (user id, k); the k in use are few (the page's, the API's), kept in ``ks`` so
    # that a user's entries can be dropped without a scan.
    recommendations: BoundedCache[tuple[int, int], Recommended]
    # What is derived from a cached value (a list's HTML, a JSON body), by its identity and
    # the kind of derivation; see derived().
    fragments: BoundedCache[tuple[int, Hashable], tuple[object, Any]]
    # One movie's HTML in lists, by the movie (without its score) and the dismiss form's id.
    movie_html: BoundedCache[tuple[catalog.MovieItem, str | None], Markup]
    # The whole "for you" page of a user (see cached_page), by user id.
    pages: BoundedCache[int, Page]
    users: BoundedCache[int, Stamped]
    ks: set[int] = field(default_factory=set)

    @classmethod
    def sized(cls, megabytes: int, clock: Callable[[], float] = time.monotonic) -> WebCaches:
        """Caches sharing ``megabytes`` (0: every cache off): a quarter for recommendations,
        an eighth each for movies, searches, the lists' HTML and whole pages, a sixteenth
        each for listings, similar movies, each movie's HTML and users."""
        total = megabytes * MiB
        on = 1 if megabytes > 0 else 0
        return cls(
            movies=BoundedCache("movies", "lfu", on * 50_000, total // 8, 60.0, clock),
            searches=BoundedCache("searches", "lru", on * 5_000, total // 8, 30.0, clock),
            listings=BoundedCache("listings", "lfu", on * 100_000, total // 16, 60.0, clock),
            similar=BoundedCache("similar", "lru", on * 20_000, total // 16, 600.0, clock),
            pages=BoundedCache("pages", "lru", on * 20_000, total // 8, PAGE_TTL, clock),
            recommendations=BoundedCache("recommendations", "lru", on * 20_000, total // 4, None),
            fragments=BoundedCache("fragments", "lru", on * 20_000, total // 8, None),
            movie_html=BoundedCache("movie_html", "lfu", on * 50_000, total // 16, 600.0, clock),
            users=BoundedCache("users", "lru", on * 50_000, total // 16, None),
        )

    def all(self) -> tuple[BoundedCache, ...]:
        return (
            self.movies,
            self.searches,
            self.listings,
            self.similar,
            self.recommendations,
            self.fragments,
            self.movie_html,
            self.pages,
            self.users,
        )


def init_app(app: Flask, settings: Settings) -> None:
    app.extensions[EXTENSION] = WebCaches.sized(settings.web_cache_mb)


def caches() -> WebCaches:
    return cast(WebCaches, current_app.extensions[EXTENSION])


def movie(movie_id: int) -> catalog.MovieItem:
    """The movie with its rating statistics; aborts with 404 when there is none. With a shard
    down the statistics are unknown (``ratings`` None): the movie is shown all the same, and
    read again next time.

    Raises :class:`DatabaseUnavailable` on a miss when no database answers.
    """
    hot = caches().movies
    found = hot.get(movie_id)
    if found is None:
        try:
            with read_session() as session:
                movie = catalog.movie_or_404(session, movie_id)
                found = catalog.with_rating_stats(session, movie)
            hot.put(movie_id, found)
        except ShardUnavailable:  # some ratings are out of reach: the movie without its stats
            with read_session() as session:
                found = replace(catalog.movie_or_404(session, movie_id), ratings=None)
    return found


def search(query: catalog.SearchQuery) -> catalog.SearchPage:
    """One page of results for ``query``. Raises :class:`DatabaseUnavailable` on a miss."""
    store = caches()
    page = store.searches.get(query)
    if page is None:
        with read_session() as session:
            page = catalog.search(session, query)
        store.searches.put(query, page)
    # Movies people find are hot too: keep them in the movie cache longer.
    store.movies.touch([m.id for m in page.movies])
    return page


def listed_movies(conn: Connection, ids: set[int]) -> dict[int, catalog.MovieItem]:
    """:func:`catalog.movie_rows` through the ``listings`` cache: only the movies not in it
    are read from the database."""
    listings = caches().listings
    found = listings.get_many(ids)
    missing = ids - found.keys()
    if missing:
        read = catalog.movie_rows(conn, missing)
        for movie_id, movie in read.items():
            listings.put(movie_id, movie)
        found |= read
    return found


def movie_list_html(picks: Listing, dismiss_form: str | None = None) -> Markup:
    """``picks.movies`` as the ``movie_list`` macro renders them, once per cached picks
    (see :func:`derived`). A new list is put together from each movie's HTML
    (:func:`movie_html`), which many users' lists share. ``dismiss_form`` is the id of the
    page's "not interested" form that each movie's button submits (the HTML holds no CSRF
    token, which would expire while the entry lives).
    """

    def render() -> Markup:
        macro = get_template_attribute("_macros.html", "movie_list")
        return Markup(macro(picks.movies, items=movies_html(picks.movies, dismiss_form)))

    return derived(picks, ("movie_list", dismiss_form), render)


def derived(source: object, kind: Hashable, make: Callable[[], T]) -> T:
    """``make()``, a string derived from ``source`` (a list's HTML, its JSON), computed once
    per ``kind`` while ``source`` lives.

    ``source`` is a cached value: the same object on every hit, so what is derived from it
    is looked up by its identity (kept in the entry, so that the id cannot be reused while
    the entry lives). ``source`` counts towards this cache's size too: the entry keeps it
    alive after its own cache has let it go.
    """
    fragments = caches().fragments
    key = (id(source), kind)
    found = fragments.get(key, valid=lambda entry: entry[0] is source)
    if found is not None:
        return cast(T, found[1])
    made = make()
    fragments.put(key, (source, made), size=sys.getsizeof(made) + approx_size(source))
    return made


@dataclass(frozen=True)
class Page:
    """A user's whole "for you" page and what its HTML depends on besides the request."""

    picks: Listing  # the cached picks it shows (compared by identity)
    name: str  # the user's name and admin flag, shown in the navigation
    is_admin: bool
    csrf: str | None  # the session's raw CSRF token, signed into the page's forms
    html: str


def cached_page(picks: Listing, render: Callable[[], str]) -> str:
    """The current user's "for you" page showing ``picks`` (their cached picks): as last
    rendered for this session if nothing else it shows has changed (the user's name and
    admin flag, the CSRF token), else ``render()``, kept for next time. Never when messages
    wait to be shown: they appear once, on the next page."""
    if FLASHES in session:
        return render()
    pages = caches().pages
    page = pages.get(current_user.id, valid=lambda p: _shows(p, picks))
    if page is not None:
        return page.html
    html = render()  # may give the session its CSRF token
    page = Page(picks, current_user.name, current_user.is_admin, session.get(CSRF), html)
    # The picks too: the page keeps them alive after the recommendations cache lets them go.
    pages.put(current_user.id, page, size=sys.getsizeof(html) + approx_size(picks))
    return html


def _shows(page: Page, picks: Listing) -> bool:
    return (
        page.picks is picks
        and page.name == current_user.name
        and page.is_admin == current_user.is_admin
        and page.csrf == session.get(CSRF)
    )


# What the movie_item macro shows of a movie: every field but the score. An attrgetter
# rather than dataclasses.replace(movie, score=None), which cost ten times as much.
_SHOWN = attrgetter(*(f.name for f in fields(catalog.MovieItem) if f.name != "score"))


def movies_html(movies: tuple[catalog.MovieItem, ...], dismiss_form: str | None) -> list[Markup]:
    """Each movie as the ``movie_item`` macro renders it; the same for every list that shows
    it (the score, which differs per user, is not shown)."""
    store = caches().movie_html
    keys = [(_SHOWN(movie), dismiss_form) for movie in movies]
    found = store.get_many(keys)
    html = []
    for movie, key in zip(movies, keys, strict=True):
        one = found.get(key)
        if one is None:
            macro = get_template_attribute("_macros.html", "movie_item")
            one = found[key] = Markup(macro(movie, dismiss_form))
            store.put(key, one, size=sys.getsizeof(one) * 2)  # key ~ value
        html.append(one)
    return html


def after_rating(user_id: int, movie_id: int) -> None:
    """The current user rated (or unrated) a movie: drop what this worker knows that it
    changed, and mark the session (see :func:`after_taste_change`)."""
    after_taste_change(user_id)
    caches().movies.pop(movie_id)


def after_taste_change(user_id: int) -> None:
    """The current user changed what their recommendations depend on (a rating, a "not
    interested", their genres): drop their lists here.

    Other workers hear of it from the change listener a moment later; until then, the mark
    left in the user's session makes their next request compare taste versions with the
    database, whichever worker serves it.
    """
    store = caches()
    for k in tuple(store.ks):
        store.recommendations.pop((user_id, k))
    if not current_user.via_token:  # a token client has no session to carry the mark
        session[TASTE] = CHANGED
