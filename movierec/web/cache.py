"""The site's in-memory caches: which there are, how big, what each keeps and until when it
is still true; the read-through lookups of movies and searches; and :class:`UserLists`, the
one object that says whether a user's kept recommendations may still be shown.

Each gunicorn worker process has its own caches (``create_app`` runs once per worker, after the
fork); nothing is shared between workers or instances. Each is a
:class:`~movierec.web.bounded_cache.BoundedCache` (bounded by entries and bytes, counting its
hits and misses for ``GET /metrics``); what is rendered from cached values is kept by
:mod:`movierec.web.fragments`.

Staleness, cache by cache:

* ``movies`` (a movie with its rating count and average, by id; LFU, 60 s TTL): kept by how
  often a movie is viewed *and* how often it shows up in search results. A rating drops the
  movie here at once on the worker that took it; elsewhere the average is at most a TTL old.
* ``searches`` (one page of results per query; 30 s TTL): the catalogue changes rarely.
* ``listings`` (a movie as lists show it: title, year, genres, links; LFU, 60 s TTL): what a
  recommendations miss needs besides the recommender's answer, so that it asks the database
  only for movies no recent list showed.
* ``similar`` (a movie's similar movies, per model version; LRU, 10 min TTL).
* ``predictions`` (per user, the predicted stars of the movies their pages showed; LRU,
  10 min TTL): kept and checked exactly as ``recommendations`` are (:class:`UserLists`, one
  entry per user), so a new rating shows new stars on the next page; a "for you" list's
  stars come with the list and live in ``recommendations``. The model version compared is
  the one ``/health`` reports, the ranking model's when there is one: a rating model
  promoted alone shows its stars within the TTL.
* ``recommendations`` (per user, LRU by activity): valid only while both the model version
  (from the AI servers' ``/health``, checked at most every few seconds) and the user's *taste
  version* are what they were when the entry was made. The taste version (number of ratings,
  newest rating time, preferences' update time, number and newest time of "not interested"
  movies) changes with anything the recommendations depend on. A hit asks the database
  nothing while the worker's change listener (:mod:`movierec.web.changes`) has heard of no
  change of that user since the entry was stamped; otherwise, and for API-token requests,
  the taste version is read from the primary (index lookups) and compared. That is what makes
  a rating taken by worker A, or by another instance, refresh the list that worker B serves.
  The worker that took the rating also drops the entry at once (:meth:`UserLists.forget`),
  and the user's session is marked so that their next request, on any worker, compares
  versions.
* ``pages`` (a user's whole "for you" page; LRU, 5 min TTL): valid while it shows the same
  cached list object, user name and CSRF token, and no message waits to be shown.
* ``users`` (the logged-in user as pages see it, by user and session id; LRU): the user
  loader's answer, used while the change listener has heard of no change of that user (a
  new session generation, a deleted account) since it was read.
* ``fragments`` (a cached list's HTML or JSON; LRU): lives as long as the list.
* ``movie_html`` (one movie's HTML in such a list, keyed by the movie's fields; LFU, 10 min
  TTL): what a new list is put together from. A movie changed by an import is a new key once
  ``listings`` has the new row.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, Generic, NamedTuple, TypeVar, cast

from flask import Flask, current_app, session
from flask_login import current_user
from markupsafe import Markup
from sqlalchemy import Connection

from movierec.config import Settings
from movierec.db import ShardUnavailable
from movierec.web import catalog, changes
from movierec.web.bounded_cache import BoundedCache
from movierec.web.db import read_session

EXTENSION = "movierec.caches"
# Session key: CHANGED after the user changed their taste in this session (no digest equals
# it), then a digest of the taste version their lists were last compared with; absent before
# the first change. See UserLists.
TASTE = "taste"
CHANGED = "changed"
MiB = 1024 * 1024
# A cached page holds CSRF tokens signed when it was rendered: it must be dropped well before
# they expire (Flask-WTF's WTF_CSRF_TIME_LIMIT, an hour by default).
PAGE_TTL = 300.0

V = TypeVar("V")
X = TypeVar("X")


@dataclass(frozen=True)
class Recommended(Generic[V]):
    """A user's recommendations and the versions they were computed for; ``stamp`` is the
    change listener's epoch when the taste version was read (see :mod:`~movierec.web.changes`)."""

    model_version: str | None
    taste_version: tuple
    picks: V
    stamp: int = -1


@dataclass(frozen=True)
class Taste(Generic[X]):
    """A user's taste version as read from the primary, the change listener's epoch taken
    before it was read, and what was read with it (what a new list needs: ``read_with``)."""

    user_id: int
    version: tuple
    stamp: int
    read_with: X


class Found(NamedTuple):
    """What :meth:`UserLists.find` found: the list to show, or (``picks`` None) the taste
    it read, which a new list is made for and kept under (:meth:`UserLists.keep`). A tuple:
    one is made on every "for you" page, a warm one's 0.4 ms included."""

    user_id: int
    k: int
    model_version: str | None
    picks: Any = None
    taste: Taste | None = None


class UserLists:
    """Each user's recommendations, per k, and the one place that decides whether a kept
    list may still be shown: while the model version and the user's taste version are those
    it was made for (see the module docstring).

    A list is shown without asking the database while nothing says the user changed since
    its taste version was read: not their session (after a change it made, it carries a mark
    until a comparison), not the change listener (which must be listening), and the request
    is not an API token's (no session to carry the mark). Otherwise the taste version is read
    and compared; a list still current is stamped anew.
    """

    def __init__(self, entries: BoundedCache[tuple[int, int], Recommended]):
        self.entries = entries
        # The k in use are few (the page's, the API's): a user's lists go without a scan.
        self._ks: set[int] = set()

    def find(
        self,
        user_id: int,
        k: int,
        model_version: str | None,
        read_taste: Callable[[], Taste],
    ) -> Found:
        """The user's current list of ``k``, or the taste ``read_taste()`` read when there
        is none. One lookup is counted either way. Raises what ``read_taste`` raises."""
        key = (user_id, k)
        entry = self.entries.peek(key)
        if entry is not None and entry.model_version == model_version:
            if _unchanged_since(user_id, entry):
                hit = self.entries.get(key, valid=lambda found: found is entry)
                if hit is not None:  # else replaced or dropped just now: compare as below
                    return Found(user_id, k, model_version, picks=hit.picks)
        # Read before the recommender is asked: a rating made meanwhile makes the new entry
        # look older than it is (refreshed next time), never newer.
        taste = read_taste()
        _compared(taste.version)

        def current(found: Recommended) -> bool:
            return found.taste_version == taste.version and found.model_version == model_version

        entry = self.entries.get(key, valid=current)
        if entry is not None:
            self.entries.replace(key, replace(entry, stamp=taste.stamp))
            return Found(user_id, k, model_version, picks=entry.picks)
        return Found(user_id, k, model_version, taste=taste)

    def keep(self, found: Found, picks: object) -> None:
        """Keep ``picks``, made for the taste ``found`` read, as the user's list of its k."""
        assert found.taste is not None, "keep() takes what find() found missing"
        self._ks.add(found.k)
        entry = Recommended(found.model_version, found.taste.version, picks, found.taste.stamp)
        self.entries.put((found.user_id, found.k), entry)

    def extend(self, user_id: int, k: int, kept: object, picks: object) -> None:
        """Replace the user's current value of ``k``, if it is still ``kept`` (what
        :meth:`find` found), by ``picks`` made for the same versions: more of the same, as
        when a page needs stars of movies the kept ones lack."""
        entry = self.entries.peek((user_id, k))
        if entry is not None and entry.picks is kept:
            self.entries.replace((user_id, k), replace(entry, picks=picks))

    def forget(self, user_id: int) -> None:
        """The current user changed what their lists depend on (a rating, a "not
        interested", their genres): drop their lists here.

        Other workers hear of it from the change listener a moment later; until then, the
        mark left in the user's session makes their next request compare taste versions with
        the database, whichever worker serves it.
        """
        for k in tuple(self._ks):
            self.entries.pop((user_id, k))
        if not current_user.via_token:  # a token client has no session to carry the mark
            session[TASTE] = CHANGED


def _unchanged_since(user_id: int, entry: Recommended) -> bool:
    """Whether ``entry`` is current without asking the database: this is not an API-token
    request, the user's session has not changed their taste since it last compared (or
    never compared), and the change listener heard of no change since the entry's stamp."""
    if current_user.via_token:
        return False
    seen = session.get(TASTE)
    if seen is not None and seen != _digest(entry.taste_version):
        return False
    return changes.fresh(user_id, entry.stamp)


def _compared(taste_version: tuple) -> None:
    """Remember in the session the taste version this user's lists are now compared with,
    once the session carries a mark (a change it made, or an earlier comparison).

    A session that never changed the user's taste has nothing for other workers to catch up
    on (changes from elsewhere reach them by the change listener), so its cookie is left
    alone: before, every user's first list rewrote and re-signed it, 5 % of the web's CPU
    on a cold "for you" page."""
    if current_user.via_token:
        return
    seen = session.get(TASTE)
    if seen is not None and seen != (digest := _digest(taste_version)):
        session[TASTE] = digest


def _digest(taste_version: tuple) -> str:
    return hashlib.blake2b(repr(taste_version).encode(), digest_size=6).hexdigest()


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
    # Keyed by (user id, k); read and written through ``lists``.
    recommendations: BoundedCache[tuple[int, int], Recommended]
    # Keyed by (user id, 0); read and written through ``stars``.
    predictions: BoundedCache[tuple[int, int], Recommended]
    # What is derived from a cached value (a list's HTML, a JSON body), by its identity and
    # the kind of derivation; see fragments.derived().
    fragments: BoundedCache[tuple[int, Hashable], tuple[object, Any]]
    # One movie's HTML in lists, by the movie (without its score) and the dismiss form's id.
    movie_html: BoundedCache[tuple[catalog.MovieItem, str | None], Markup]
    # The whole "for you" page of a user (a fragments.Page), by user id.
    pages: BoundedCache[int, Any]
    users: BoundedCache[tuple[int, str], Stamped]

    @cached_property
    def lists(self) -> UserLists:
        """The users' recommendations, with the protocol that keeps them fresh."""
        return UserLists(self.recommendations)

    @cached_property
    def stars(self) -> UserLists:
        """The users' predicted stars, kept fresh as their lists are."""
        return UserLists(self.predictions)

    @classmethod
    def sized(cls, megabytes: int, clock: Callable[[], float] = time.monotonic) -> WebCaches:
        """Caches sharing ``megabytes`` (0: every cache off): three sixteenths for
        recommendations, an eighth each for movies, searches, the lists' HTML and whole
        pages, a sixteenth each for listings, similar movies, predicted stars, each movie's
        HTML and users."""
        total = megabytes * MiB
        on = 1 if megabytes > 0 else 0
        return cls(
            movies=BoundedCache("movies", "lfu", on * 50_000, total // 8, 60.0, clock),
            searches=BoundedCache("searches", "lru", on * 5_000, total // 8, 30.0, clock),
            listings=BoundedCache("listings", "lfu", on * 100_000, total // 16, 60.0, clock),
            similar=BoundedCache("similar", "lru", on * 20_000, total // 16, 600.0, clock),
            pages=BoundedCache("pages", "lru", on * 20_000, total // 8, PAGE_TTL, clock),
            recommendations=BoundedCache(
                "recommendations", "lru", on * 20_000, total * 3 // 16, None
            ),
            predictions=BoundedCache("predictions", "lru", on * 20_000, total // 16, 600.0, clock),
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
            self.predictions,
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
