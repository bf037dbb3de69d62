"""The database roles each part of movierec connects as (made by migration 0007).

* The owner (the URL migrations and the admin CLI use) owns every table.
* :data:`WEB_ROLE` (the site): reads and writes users' rows, reads movies; no DDL, no
  TRUNCATE, no changes to movies, the partition registry or the history.
* :data:`AI_ROLE` (the recommender servers): reads users' ratings, preferences and searches.

The roles are made without a password. On a server movierec runs (the local cluster, the
tests), :meth:`movierec.db.local_server.LocalPostgres.give_passwords` sets generated ones and
the cluster puts them in the URLs it gives each server; elsewhere an admin sets them
(``ALTER ROLE movierec_web PASSWORD ...``, or psql's ``\\password``) and puts it in the URL.
"""

from __future__ import annotations

from sqlalchemy.engine import make_url

WEB_ROLE = "movierec_web"
AI_ROLE = "movierec_ai"
APP_ROLES = (WEB_ROLE, AI_ROLE)


def url_as(url: str, role: str, password: str | None = None) -> str:
    """``url`` with ``role`` (and ``password``, when given) as its user; no password else."""
    return make_url(url).set(username=role, password=password).render_as_string(hide_password=False)


def masked(url: str) -> str:
    """``url`` with its password shown as ``***``: the form to print or log."""
    return make_url(url).render_as_string(hide_password=True)
