"""HTML and JSON made from cached values, kept while those values live: each movie's HTML in
lists, a cached list's HTML or JSON, and a user's whole "for you" page.

A cached list is the same object on every hit, so what is made from it is looked up by its
identity (:func:`derived`). A whole page also holds what it shows besides the list: the user's
name and admin flag, and the session's CSRF token signed into its forms. It is used only while
all of them are what they were (:func:`cached_page`), and dropped well before the token
expires (:data:`movierec.web.cache.PAGE_TTL`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Hashable
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Protocol, TypeVar, cast

from flask import get_template_attribute, session
from flask_login import current_user
from markupsafe import Markup

from movierec.web import catalog, stars
from movierec.web.bounded_cache import approx_size
from movierec.web.cache import caches

FLASHES = "_flashes"  # Flask's session key for messages not yet shown
CSRF = "csrf_token"  # Flask-WTF's session key for the raw CSRF token

T = TypeVar("T", bound=str | bytes)


class Listing(Protocol):
    """A cached list of movies (a user's picks): the same object on every hit, so what is
    made from it is kept by its identity."""

    @property
    def movies(self) -> tuple[catalog.MovieItem, ...]: ...


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


# What every list showing a movie shares of its HTML: each field but the score (not shown)
# and the user's predicted stars (filled in per list). An attrgetter rather than
# dataclasses.replace(movie, score=None), which cost ten times as much.
_SHARED = attrgetter(
    *(f.name for f in fields(catalog.MovieItem) if f.name not in ("score", "predicted"))
)
# Where the predicted stars go in a movie's kept HTML (a comment: nothing else writes one).
STARS_SLOT = Markup("<!--stars-->")


def movies_html(
    movies: tuple[catalog.MovieItem, ...], dismiss_form: str | None, stars_later: bool = False
) -> list[Markup]:
    """Each movie as the ``movie_item`` macro renders it, the user's predicted stars in it;
    with ``stars_later``, a place the page's script puts them in (:func:`stars_later_slot`).

    A movie's HTML is kept once for every list that shows it, around a slot for the stars
    (:data:`STARS_SLOT`), which each list fills from the few badges :func:`stars.badge`
    keeps. With the stars inside, the kept HTML was nearly never the same for two users
    (their stars differ) and a cold "for you" page rendered its ten movies again: keeping
    them apart took 5 % off such a page's web CPU (B/A 0.952 in-process, BENCHMARKS.md,
    "Three trees, alternating").
    """
    store = caches().movie_html
    keys = [(_SHARED(movie), dismiss_form) for movie in movies]
    found = store.get_many(keys)
    html = []
    for movie, key in zip(movies, keys, strict=True):
        parts = found.get(key)
        if parts is None:
            macro = get_template_attribute("_macros.html", "movie_item")
            before, after = Markup(macro(movie, dismiss_form, STARS_SLOT)).split(STARS_SLOT)
            parts = found[key] = (before, after)
            store.put(key, parts, size=2 * (sys.getsizeof(before) + sys.getsizeof(after)))
        before, after = parts
        if stars_later:
            badge = stars_later_slot(movie.id)
        else:
            badge = stars.badge(movie.predicted) if movie.predicted else ""
        html.append(before + badge + after)
    return html


def stars_later_slot(movie_id: int) -> Markup:
    """Where ``static/stars.js`` puts the user's predicted stars of ``movie_id``, asked for
    after the page (:func:`movierec.web.movies.stars_badges`)."""
    return Markup(f'<span data-stars-for="{int(movie_id)}"></span>')
