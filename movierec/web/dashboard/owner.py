"""The owner's powers, for the dashboard's database panel and its history rollback only.

The site connects as ``movierec_web``, which may not read the change history, run a
rollback or look at replication (SECURITY.md: least privilege). Rather than grant the site's
role those powers, an operator who wants them on the dashboard sets ``admin_database_url``
(the owner's URL, as the CLI uses) on the instances that serve it. The dashboard then calls
the CLI's library functions with settings carrying that URL, so it can do exactly what
``movierec db status`` and ``movierec db history rollback`` can, and only from views that
are admin-only, CSRF-checked and audited. Unset (the default), those panels say how to turn
them on and no view holds more than the site's role.
"""

from __future__ import annotations

from movierec.config import Settings
from movierec.errors import ConfigError
from movierec.web.db import database

NOT_CONFIGURED = (
    "set admin_database_url (the owner's URL, as the CLI uses) on this web instance to see "
    "the database's servers, backups and change history here and to roll changes back"
)


def owner_settings() -> Settings:
    """The site's settings with the owner's URL as ``database_url`` (and no replica: the
    owner's reads go to the primary). Raises :class:`ConfigError` when not configured."""
    settings = database().settings
    if not settings.admin_database_url:
        raise ConfigError(NOT_CONFIGURED)
    return settings.replace(database_url=settings.admin_database_url, replica_url=None)


def configured() -> bool:
    return bool(database().settings.admin_database_url)
