"""One look at the whole database: servers and replication lag, partitions, last backup,
change-history size. Each part is gathered on its own: one that fails (a server down, no
backups set up) says why and leaves the others standing.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from movierec.config import Settings
from movierec.db.backup import BackupSet, backup_config, list_backups
from movierec.db.partitions.catalog import Partition, primary
from movierec.db.partitions.listing import list_partitions
from movierec.db.replicas import ReplicaStatus, replication_status
from movierec.errors import MovierecError, first_line

NO_BACKUPS = "no backups configured"


@dataclass(frozen=True)
class HistorySize:
    rows: int
    bytes: int  # change_history with all its partitions and indexes, plus change_sets
    change_sets: int


@dataclass(frozen=True)
class DatabaseStatus:
    """What ``movierec db status`` shows. A ``*_error`` is set when its part is unknown."""

    servers: tuple[ReplicaStatus, ...]
    servers_error: str | None
    partitions: tuple[Partition, ...]
    partitions_error: str | None
    last_backup: BackupSet | None
    backups_error: str | None  # NO_BACKUPS when backups are not set up
    history: HistorySize | None
    history_error: str | None


def database_status(settings: Settings) -> DatabaseStatus:
    """Gather the status. Raises :class:`ConfigError` without a database URL and
    :class:`DatabaseUnavailable` when the primary does not answer (there is no status to
    show then, and a script must not read success); any other part that cannot be read
    says why in its ``*_error``."""
    settings.require("database_url")
    with primary(settings) as conn:
        conn.execute("SELECT 1")
    servers, servers_error = _attempt(lambda: tuple(replication_status(settings)))
    partitions, partitions_error = _attempt(lambda: tuple(list_partitions(settings)))
    last_backup, backups_error = _last_backup(settings)
    history, history_error = _attempt(lambda: history_size(settings))
    return DatabaseStatus(
        servers or (),
        servers_error,
        partitions or (),
        partitions_error,
        last_backup,
        backups_error,
        history,
        history_error,
    )


def history_size(settings: Settings) -> HistorySize:
    """Rows and bytes of the change history. Raises :class:`DatabaseUnavailable`."""
    with primary(settings) as conn:
        rows = conn.execute("SELECT count(*) FROM change_history").fetchone()[0]
        size, sets = conn.execute(
            "SELECT (SELECT coalesce(sum(pg_total_relation_size(relid)), 0) "
            "        FROM pg_partition_tree('change_history')) "
            "     + pg_total_relation_size('change_sets'), "
            "       (SELECT count(*) FROM change_sets)"
        ).fetchone()
    return HistorySize(int(rows), int(size), int(sets))


def _last_backup(settings: Settings) -> tuple[BackupSet | None, str | None]:
    config = backup_config(settings)
    if not config.conf_file.exists():
        return None, NO_BACKUPS
    backups, error = _attempt(lambda: list_backups(config))
    if error:
        return None, error
    if not backups:
        return None, "no backup made yet"
    return max(backups, key=lambda b: b.stop), None


def _attempt(read):
    try:
        return read(), None
    except MovierecError as exc:
        return None, str(exc)
    except psycopg.Error as exc:
        return None, first_line(exc)
