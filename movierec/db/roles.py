"""The database roles each part of movierec connects as (made by migration 0007).

* The owner (the URL migrations and the admin CLI use) owns every table.
* :data:`WEB_ROLE` (the site): reads and writes users' rows, reads movies; no DDL, no
  TRUNCATE, no changes to movies, the partition registry or the history.
* :data:`AI_ROLE` (the recommender servers): reads users' ratings, preferences and searches.

The roles are made without a password. Where the server asks for one, an admin sets it
(``ALTER ROLE movierec_web PASSWORD '...'``) and puts it in the URL the site is given.
"""

from __future__ import annotations

from sqlalchemy.engine import make_url

WEB_ROLE = "movierec_web"
AI_ROLE = "movierec_ai"


def url_as(url: str, role: str, password: str | None = None) -> str:
    """``url`` with ``role`` (and ``password``, when given) as its user; no password else."""
    return make_url(url).set(username=role, password=password).render_as_string(hide_password=False)
