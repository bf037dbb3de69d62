"""Recording what the site recommended, for online evaluation (:mod:`movierec.db.online_eval`).

Called when a user's list is computed (a cache miss, which already asked the recommender),
never for a kept copy: a list shown again unchanged tells nothing new, and the cost stays one
INSERT per fresh list of a sampled user (``impression_sample``), on the request's autocommit
connection to the primary. Recording is best effort: a failure is logged and the page is
served as if nothing had been asked.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy.exc import SQLAlchemyError

from movierec.db.online_eval import record, sampled
from movierec.errors import MovierecError
from movierec.web.db import connection, database

log = logging.getLogger(__name__)


FALLBACK = "popular (fallback)"


def shown(
    user_id: int, model_version: str | None, movie_ids: Sequence[int], fallback: bool = False
) -> None:
    """Record that ``movie_ids`` were recommended to the user by ``model_version``, if the
    user is sampled and there is something to score (a model answered, a non-empty list).
    The recommender's own fallback (popular movies, for a user it cannot score) is recorded
    as :data:`FALLBACK`: a yardstick beside the model versions, not part of their figures."""
    if not movie_ids or not model_version:
        return
    if not sampled(user_id, database().settings.impression_sample):
        return
    try:
        record(connection(), user_id, FALLBACK if fallback else model_version, movie_ids)
    except (MovierecError, SQLAlchemyError) as exc:
        log.warning("impression not recorded (%s)", type(exc).__name__)
