"""The first visit's rating form, read once: one ``rating-<movie id>`` field per movie shown,
empty for "not seen" (the default), else 0.5 to 5 in half stars."""

from __future__ import annotations

from collections.abc import Mapping

from movierec.errors import BadInput
from movierec.wire.params import MAX_ID, Integer, Problem, whole_number
from movierec.wire.site import stars

PREFIX = "rating-"
MAX_FIELDS = 50  # a page shows 12; more is no form of ours
RATE_PAGE = Integer("page", "Page of movies to rate.", default=1, high=50)


def read_ratings(form: Mapping[str, str]) -> dict[int, float]:
    """``{movie_id: stars}`` of the fields that hold a rating. Raises :class:`BadInput`
    naming every malformed field (a bad id, a value that is not a half star)."""
    fields = [(k, v) for k, v in form.items() if k.startswith(PREFIX)]
    if len(fields) > MAX_FIELDS:
        raise BadInput(f"at most {MAX_FIELDS} ratings at once")
    found, problems = {}, []
    for key, raw in fields:
        value = raw.strip()
        try:
            movie_id = whole_number(key[len(PREFIX) :], "a rating's movie id", 1, MAX_ID)
            if value:
                found[movie_id] = stars(_half_stars(value))
        except (Problem, BadInput) as exc:
            problems.append(str(exc))
    if problems:
        raise BadInput("; ".join(problems))
    return found


def _half_stars(value: str) -> float:
    # The form's values are "0.5" ... "5"; "4e0", "nan" or "٤" (which float() takes) are not.
    if not value.replace(".", "", 1).isascii() or not value.replace(".", "", 1).isdigit():
        raise BadInput(f"rating {value[:20]!r} is not from 0.5 to 5 in steps of 0.5")
    return float(value)
