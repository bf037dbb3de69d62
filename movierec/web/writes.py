"""What follows a user's write that changes their recommendations: one helper, so that no view
forgets a step."""

from __future__ import annotations

from flask_login import current_user

from movierec.web.cache import caches
from movierec.web.db import commit, wrote


def commit_taste_change(rated: int | None = None) -> None:
    """Commit the current user's change of what their recommendations depend on (a rating
    of the movie ``rated`` or its removal, a "not interested" or its undo, their genres),
    send their reads to the primary for the next seconds (:func:`movierec.web.db.wrote`),
    and drop what this worker keeps that it changed: the user's lists and predicted stars
    (the session carries the change to the other workers) and the rated movie's rating
    statistics.

    Raises :class:`DatabaseUnavailable` when the commit fails; then nothing else is done.
    """
    commit()
    if not current_user.via_token:  # a token client keeps no session cookie to carry it
        wrote()
    store = caches()
    store.lists.forget(current_user.id)
    store.stars.forget(current_user.id)
    if rated is not None:
        store.movies.pop(rated)
