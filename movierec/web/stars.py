"""The logged-in user's predicted stars ("you'd rate it ≈ 4.1") beside the movies of a page.

They come from the recommender's rating model with the user's newest ratings folded in
(``/predictions``, :mod:`movierec.ai.rating_fold_in`), one call per page for all of its movies, and
are kept per user (:attr:`movierec.web.cache.WebCaches.stars`) exactly as long as the user's
recommendations are: until the model or the user's taste version changes. A "for you" list
gets its stars with the list itself (:func:`movierec.web.picks.for_user`); this module serves
the other pages: a movie's own page with its similar movies, and search results, whose script
asks for them after the page (:func:`movierec.web.movies.stars_badges`).

Stars are an extra: with no recommender, or no database to read the user's taste from, a
page shows none and is otherwise the same. Nobody logged in, no stars (and no call).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence

from flask import current_app, get_template_attribute
from flask_login import current_user
from markupsafe import Markup

from movierec.errors import DatabaseUnavailable
from movierec.web import cache, picks
from movierec.web.ai_client import AIUnavailable
from movierec.web.db import connection
from movierec.wire.recommender import MAX_PREDICT

log = logging.getLogger(__name__)

ENTRY = 0  # the "k" of a user's one entry in the stars' UserLists
BADGES = "movierec.star_badges"
MOST_KEPT = 2_000  # movies per user's entry: past it, the entry starts afresh

# movie id -> stars, or None: asked for, and there are none (rated, or unknown to the model)
Known = Mapping[int, float | None]


def for_movies(movie_ids: Iterable[int], taste: picks.Taste | None = None) -> dict[int, float]:
    """The current user's predicted stars of ``movie_ids`` (at most
    :data:`~movierec.wire.recommender.MAX_PREDICT` of them): only movies they have not
    rated and the model knows. Empty when nobody is logged in or stars are out of reach.
    ``taste``: the user's, when :func:`picks.taste_with_user` read it already."""
    if not current_user.is_authenticated:
        return {}
    user_id = current_user.id
    wanted = list(dict.fromkeys(movie_ids))[:MAX_PREDICT]
    store = cache.caches().stars
    client = picks.ai_client()
    known = taste if taste is not None and taste.user_id == user_id else None
    try:
        found = store.find(
            user_id,
            ENTRY,
            client.model_version(),
            lambda: known or picks.read_taste(connection(), user_id),
        )
    except DatabaseUnavailable as exc:
        log.info("no predicted stars for user %s: %s", user_id, exc)
        return {}
    kept: Known = found.picks if found.picks is not None else {}
    missing = [m for m in wanted if m not in kept]
    if missing:
        # A new entry has the user's context, read with the taste: sent along, so that the
        # recommender need not read it; a kept one's stars lack movies: it reads it itself.
        context = found.taste.read_with[1] if found.picks is None else None
        try:
            answer = client.predictions(user_id, missing, context)
        except AIUnavailable:
            return _shown(kept, wanted)
        made = {m: answer.stars.get(m) for m in missing}
        if found.picks is None:
            store.keep(found, made)
        else:
            more = made if len(kept) + len(made) > MOST_KEPT else {**kept, **made}
            store.extend(user_id, ENTRY, found.picks, more)
        kept = {**kept, **made}
    return _shown(kept, wanted)


def _shown(kept: Known, wanted: Sequence[int]) -> dict[int, float]:
    return {m: stars for m in wanted if (stars := kept.get(m)) is not None}


def badge(value: float) -> Markup:
    """The ``_stars.html`` badge for ``value`` (one decimal: 46 values at most), rendered
    once per app and value: a macro call per movie was a sixth of a warm search page's CPU.
    The templates' ``star_badge`` filter."""
    badges = current_app.extensions.setdefault(BADGES, {})
    html = badges.get(value)
    if html is None:
        macro = get_template_attribute("_stars.html", "star_badge")
        html = badges[value] = Markup(macro(value))
    return html
