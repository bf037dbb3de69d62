"""The database roles each part of movierec connects as (made by migration 0007).

* The owner (the URL migrations and the admin CLI use) owns every table.
* :data:`WEB_ROLE` (the site): reads and writes users' rows, reads movies; no DDL, no
  TRUNCATE, no changes to movies or the partition registry.
* :data:`AI_ROLE` (the recommender servers): reads users' ratings, preferences and searches.

What each may do to the change history (:mod:`movierec.db.history`, migration 0010):

* The owner writes it (through the definer functions that sign each row), reads it, rolls
  back, prunes, and may switch per-row recording off for a bulk load.
* :data:`WEB_ROLE` may not read, insert, change or delete a history row. Its writes to the
  tracked tables are recorded by the trigger, which runs as the owner; it may name the site
  user it writes for (``movierec.actor = user:<id>``) and nothing else (another claim is
  recorded as a claim; a bulk or change-set setting is ignored). It may execute
  ``movierec_forget_account`` (:func:`movierec.db.accounts.delete_account`): delete an
  account and purge that account's rows from the history, which is what "delete my account"
  on the site does. The site could already delete any account; forgetting makes that
  deletion one no rollback undoes (a backup still can).
* :data:`AI_ROLE` has no access to the history.

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
