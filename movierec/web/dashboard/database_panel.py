"""The database panel: servers and replication lag, partitions and where each lives, sizes,
the latest backups and whether the last verify covered them, and the change history, with
its rollback in two clicks (a dry run, then the same window applied).

Every figure and action comes from the library calls the CLI makes (``movierec db status``,
``backup list``, ``db history list`` and ``db history rollback``), run with the owner's URL
(:mod:`movierec.web.dashboard.owner`); without it the panel says how to turn it on.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from flask_login import current_user
from sqlalchemy import text
from sqlalchemy.orm import Session

from movierec.db import Database
from movierec.db.backup import BackupSet, VerifyRecord, backup_config, last_verify, list_backups
from movierec.db.history import Change, RollbackReport, list_changes, rollback, set_actor
from movierec.db.status import DatabaseStatus, database_status
from movierec.errors import MovierecError
from movierec.redact import redact
from movierec.web.dashboard.owner import NOT_CONFIGURED, configured, owner_settings

CHANGES = 15
BACKUPS = 5


@dataclass(frozen=True)
class Sizes:
    database: int
    tables: tuple[tuple[str, int], ...]  # the largest, with their partitions and indexes


@dataclass(frozen=True)
class DatabasePanel:
    error: str | None = None  # the whole panel (not configured, primary down)
    status: DatabaseStatus | None = None
    sizes: Sizes | None = None
    backups: tuple[BackupSet, ...] = ()
    verify: VerifyRecord | None = None
    changes: tuple[Change, ...] = ()
    changes_error: str | None = None
    notes: list[str] = field(default_factory=list)


def gather() -> DatabasePanel:
    """The panel's figures; a part that cannot be read says why, the rest stand."""
    if not configured():
        return DatabasePanel(error=NOT_CONFIGURED)
    settings = owner_settings()
    try:
        status = database_status(settings)
    except MovierecError as exc:
        return DatabasePanel(error=redact(str(exc)))
    config = backup_config(settings)
    backups: tuple[BackupSet, ...] = ()
    if status.last_backup is not None:
        try:
            backups = tuple(sorted(list_backups(config), key=lambda b: b.stop)[-BACKUPS:])
        except MovierecError:
            backups = (status.last_backup,)
    changes, changes_error, sizes = (), None, None
    try:
        with owner_session(readonly=True) as session:
            changes = tuple(list_changes(session, limit=CHANGES))
            sizes = _sizes(session)
    except MovierecError as exc:
        changes_error = redact(str(exc))
    return DatabasePanel(
        status=status, sizes=sizes, backups=tuple(reversed(backups)),
        verify=last_verify(config), changes=changes, changes_error=changes_error,
    )  # fmt: skip


def _sizes(session: Session) -> Sizes:
    """The database's size and its largest tables, partitions counted with their parent."""
    total = session.execute(text("SELECT pg_database_size(current_database())")).scalar()
    rows = session.execute(
        text(
            "SELECT c.relname, (SELECT coalesce(sum(pg_total_relation_size(t.relid)), 0) "
            "                   FROM pg_partition_tree(c.oid) t) AS bytes "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') "
            "  AND NOT c.relispartition "
            "ORDER BY bytes DESC LIMIT 8"
        )
    ).all()
    return Sizes(int(total or 0), tuple((name, int(size)) for name, size in rows))


@contextmanager
def owner_session(readonly: bool = False) -> Iterator[Session]:
    """A session as the owner, with the changes it makes blamed on the logged-in admin
    (``admin:web:<username>``: the CLI records ``admin:<OS user>``). Raises
    :class:`ConfigError` when not configured, :class:`DatabaseUnavailable`."""
    database = Database(owner_settings())
    try:
        with database.session(readonly=readonly) as session:
            if not readonly:
                set_actor(session, f"admin:web:{current_user.username}")
            yield session
    finally:
        database.dispose()


def dry_run(to_id: int, table: str | None) -> RollbackReport:
    """What a rollback to ``to_id`` would revert (``db history rollback --dry-run``)."""
    with owner_session() as session:
        return rollback(session, to_id=to_id, table=table, dry_run=True)


def apply(to_id: int, through_id: int, table: str | None) -> RollbackReport:
    """Revert the window the dry run showed, capped at ``through_id`` as the CLI does after
    its confirmation: changes made since are not reverted. Raises :class:`RollbackConflict`
    (nothing changed) when a row was changed again since."""
    with owner_session() as session:
        return rollback(session, to_id=to_id, table=table, through_id=through_id)
