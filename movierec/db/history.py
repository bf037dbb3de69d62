"""Change history of users, movies, ratings and preferences, and rollback to an earlier point.

What is recorded
    Migration 0002 puts AFTER ROW triggers on the tracked tables (``users``, ``movies``,
    ``ratings``, ``preferences``; a later migration adds one with
    ``SELECT movierec_history_track('table')``). Every INSERT, DELETE and real UPDATE (one that
    changes a value) adds a ``change_history`` row: the table, the operation, the row's primary
    key as jsonb, the row before and after (``to_jsonb``), ``txid_current()``, the time the
    transaction began (``changed_at``: a transaction is never cut in two by a time), the
    account the row belongs to (``account_id``: the user's id for ``users``, the column
    referring to users elsewhere) and the actor.
    ``change_history`` is partitioned by month of ``changed_at``, with a DEFAULT partition so
    that no write ever fails for want of one; :func:`prune` (run it monthly) drops old months
    and creates the next ones.

Who writes it (migration 0010)
    Only the owner: the trigger function is SECURITY DEFINER (owned by the owner, with a fixed
    search_path) and hands each row to ``movierec_history_append``, which numbers it, stamps
    it and signs it: ``signature`` is an HMAC-SHA256 of the row's contents under a key in
    ``history_secret``, which only the owner may read. No app role may insert, change or
    delete history rows (:mod:`movierec.db.roles`). Markers (``BULK``, ``ROLLBACK``,
    ``TRUNCATE``, ``FORGET``) go through the same function.

Settings that change what is recorded
    ``movierec.actor`` (the site sets ``user:<id>`` for each write it makes for a user, the
    CLI ``admin:<os user>``, both through :func:`set_actor`), ``movierec.bulk_change_set`` and
    ``movierec.change_set`` are believed only when the *session* user may delete history rows
    (the owner, a superuser): inside definer functions (the trigger, the reference cascades)
    ``current_user`` is the owner, so it is the session user that is asked. Any other session
    may claim only ``user:<id>``; another claim of its is recorded as ``<session user>
    (claimed <claim>)``; with no claim the actor is the session user. Its bulk and change-set
    settings are ignored: its rows are recorded as usual, in no change set.

Credentials
    ``history_tables`` names each tracked table's private columns (``users.password_hash``,
    ``users.session_generation``). They are left out of the row images; ``private_changed``
    names those a change set or changed (a marker, never a value). A rollback never restores
    them: an update leaves them as they are, a re-inserted row gets ``private_restore``
    instead (no password; a session generation of the rollback's Unix time, above any an old
    cookie can carry).

Forgetting an account
    :func:`movierec.db.accounts.delete_account` deletes an account and purges every history
    row of it (``account_id``), leaving one ``FORGET`` marker with its id: no rollback brings
    a forgotten account back.

Bulk loads
    Per-row history would make a bulk load about 15 times slower. A loader (the owner) opens
    :func:`bulk_change_set` instead: one ``change_sets`` row (kind ``bulk``) plus one ``BULK``
    marker in the history per table it names, and ``movierec.bulk_change_set`` set for its
    transaction, which makes the triggers return at once. The rows themselves are not
    recorded, so a bulk load cannot be rolled back from the history: it is undone by
    restoring a backup to just before the change set's ``created_at`` (point-in-time recovery).
    :func:`rollback` refuses a window that contains a ``BULK`` marker rather than pretend.

Rollback
    :func:`rollback` brings every row the window (changes after an id or a time, optionally of
    one table) touched back to its state before the window, in one transaction, with
    set-based statements (:mod:`movierec.db.history_rollback`: one per step and table, joined
    on the key and filtered by the partition column, so only the partitions holding such rows
    are reached): deletions first (child tables before their parents), then updates, then
    re-insertions (parents first). It acts only on rows whose signature checks: a row that
    does not (a forgery, an edited row) is ignored and counted in the report; a window that
    reaches back before the history was signed (migration 0010) is refused. Before touching
    anything it locks the rows it will delete or update (nothing else: no table locks; a dry
    run locks nothing) and checks that each row is still as the last change in the window
    left it; a row changed in any other way (outside the history, or by a change after the
    window), or a revert that would cascade into a row outside the window (``--table``),
    raises :class:`RollbackConflict` and changes nothing. Changes committed while a rollback
    runs are not in its window (even when their ids are lower); on a row it reverts they are
    a conflict. The rollback is itself recorded: a ``change_sets`` row (kind ``rollback``), a
    ``ROLLBACK`` marker, and the restored rows as ordinary changes carrying the change set's
    id, so rolling back to the marker undoes the rollback.

What the history does not see, and how the product copes
    * TRUNCATE fires no row triggers. The app's database role gets no TRUNCATE privilege,
      and a statement-level trigger on every tracked and history table refuses TRUNCATE
      unless ``movierec.allow_truncate`` is set; an allowed TRUNCATE of a tracked table leaves
      a ``TRUNCATE`` marker that rollback refuses to cross (only a backup brings rows back).
    * Changes made directly on a shard server (a postgres_fdw partition's own server) run no
      trigger of the primary. Shard servers accept only the primary's fdw role; admins edit
      through the primary. Disabling triggers (``ALTER TABLE ... DISABLE TRIGGER``,
      ``session_replication_role = replica``) needs ownership or superuser, which the app
      role lacks.
    * ``identities``, ``searches``, ``not_interested`` and the token tables are not tracked:
      deleting a user by rollback cascades to them, and rolling that back does not bring
      them back.
    Detection: the rollback's conflict check compares each row with its last recorded state,
    so a change the history missed is found (and the rollback refused) exactly when it
    matters. Rows whose table gained a column after their history was written look changed
    too (the old images lack the column): roll back across a migration with a backup.
    Primary keys are assumed never to be updated.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from psycopg import sql
from sqlalchemy import ARRAY, BigInteger, DateTime, Text, column, select, table, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from movierec.db import history_rollback as engine
from movierec.db.history_rollback import ROW_OPS, RollbackConflict
from movierec.errors import BadInput, NotFound

__all__ = [
    "ROW_OPS", "Change", "PruneReport", "RollbackConflict", "RollbackReport", "act_as_user",
    "bulk_change_set", "ensure_partitions", "list_changes", "prune", "rollback", "set_actor",
    "show_change", "tracked_tables",
]  # fmt: skip
PREVIEW = 200  # changes a RollbackReport lists one by one; the counts cover them all
WORK_MEM = "256MB"  # for a rollback's transaction: its plan sorts every change in the window

_history = table(
    "change_history",
    column("id", BigInteger),
    column("table_name", Text),
    column("op", Text),
    column("row_key", JSONB),
    column("old_row", JSONB),
    column("new_row", JSONB),
    column("txid", BigInteger),
    column("changed_at", DateTime(timezone=True)),
    column("actor", Text),
    column("change_set", BigInteger),
    column("private_changed", ARRAY(Text)),
)


@dataclass(frozen=True)
class Change:
    """One ``change_history`` row. ``key`` is the primary key; rows are ``to_jsonb`` images
    without the table's private columns; ``private_changed`` names those the change set or
    changed."""

    id: int
    table: str
    op: str
    key: dict[str, Any]
    old_row: dict[str, Any] | None
    new_row: dict[str, Any] | None
    txid: int
    changed_at: datetime
    actor: str
    change_set: int | None
    private_changed: tuple[str, ...] = ()


@dataclass(frozen=True)
class RollbackReport:
    """What a rollback reverted (or, with ``dry_run``, would revert).

    ``changes`` counts the history rows in the window (``counts``: per table and operation;
    ``preview``: the newest :data:`PREVIEW` of them), ``rows`` the rows restored. After a real
    rollback, ``change_set`` is its change set and ``undo_to`` the id of its ``ROLLBACK``
    marker: ``rollback(session, to_id=undo_to)`` undoes it. ``ignored`` counts the rows of
    the window whose signature does not check (not written by the history's functions: a
    forgery, or an edit of a recorded row); none of them is acted on, ``first_ignored`` is
    the first.
    """

    dry_run: bool
    to_id: int | None
    to_time: datetime | None
    table: str | None
    through_id: int
    changes: int
    counts: tuple[tuple[str, str, int], ...]
    preview: tuple[Change, ...]
    rows: int | None = None
    change_set: int | None = None
    undo_to: int | None = None
    ignored: int = 0
    first_ignored: int | None = None


@dataclass(frozen=True)
class PruneReport:
    rows: int
    partitions: tuple[str, ...]
    change_sets: int


# -- reading -------------------------------------------------------------------------------


def tracked_tables(session: Session) -> list[str]:
    """Names of the tables that have history triggers (read from the catalog)."""
    rows = session.execute(
        text(
            "SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE t.tgname = 'movierec_history' AND t.tgparentid = 0 ORDER BY c.relname"
        )
    )
    return list(rows.scalars())


def list_changes(
    session: Session,
    table: str | None = None,
    since: datetime | None = None,
    actor: str | None = None,
    limit: int = 50,
) -> list[Change]:
    """The newest ``limit`` changes, newest first, optionally filtered.

    Raises :class:`BadInput` for an unknown table, a naive ``since`` or a bad limit.
    """
    if not 1 <= limit <= 10_000:
        raise BadInput(f"limit must be between 1 and 10000, not {limit}")
    query = select(_history).order_by(_history.c.id.desc()).limit(limit)
    if table is not None:
        _check_table(session, table)
        query = query.where(_history.c.table_name.in_((table, "*")))
    if since is not None:
        query = query.where(_history.c.changed_at >= _aware(since, "since"))
    if actor is not None:
        query = query.where(_history.c.actor == actor)
    return [_change(row) for row in session.execute(query).mappings()]


def show_change(session: Session, change_id: int) -> Change:
    """The change with id ``change_id``. Raises :class:`NotFound`."""
    row = session.execute(select(_history).where(_history.c.id == change_id)).mappings().first()
    if row is None:
        raise NotFound(f"no change with id {change_id} in the history")
    return _change(row)


def _change(row: Mapping[str, Any]) -> Change:
    return Change(
        id=row["id"],
        table=row["table_name"],
        op=row["op"],
        key=row["row_key"],
        old_row=row["old_row"],
        new_row=row["new_row"],
        txid=row["txid"],
        changed_at=row["changed_at"],
        actor=row["actor"],
        change_set=row["change_set"],
        private_changed=tuple(row["private_changed"] or ()),
    )


# -- rollback ------------------------------------------------------------------------------


def rollback(
    session: Session,
    to_id: int | None = None,
    to_time: datetime | None = None,
    table: str | None = None,
    dry_run: bool = False,
    through_id: int | None = None,
) -> RollbackReport:
    """Revert every change with id > ``to_id`` (or ``changed_at`` > ``to_time``), optionally
    only those of ``table``, in the session's transaction (the caller commits).

    ``through_id`` caps the window (the CLI passes the last id its dry run showed, so what
    was confirmed is what gets reverted). The rows to delete or update are locked until the
    session's transaction ends (a dry run locks nothing). For the rest of that transaction
    the statement timeout is lifted and ``work_mem``, ``plan_cache_mode`` and
    ``enable_nestloop`` are set as the rollback needs them (:mod:`.history_rollback`).

    Raises :class:`BadInput` (neither or both of ``to_id``/``to_time``, a naive or future
    time, an unknown table), :class:`NotFound` (``to_id`` after the last change) and
    :class:`RollbackConflict` (nothing was changed).
    """
    if (to_id is None) == (to_time is None):
        raise BadInput("roll back to a change id or to a time (exactly one of them)")
    tables = tracked_tables(session)
    if table is not None:
        _check_table(session, table, tables)
    if to_time is not None:
        to_time = _not_future(session, _aware(to_time, "to_time"))
    # A large window outlasts a timeout meant for web requests, and sorts it in memory; plans
    # made for the values at hand let PostgreSQL prune partitions by them.
    _set_local(session, "statement_timeout", "0")
    _set_local(session, "work_mem", WORK_MEM)
    _set_local(session, "plan_cache_mode", "force_custom_plan")
    last = session.scalar(text("SELECT coalesce(max(id), 0) FROM change_history"))
    if to_id is not None and to_id > last:
        # Any id up to the last is a point in the history, even when its row was purged.
        raise NotFound(f"no change with id {to_id} in the history")
    window = {
        "to_id": to_id,
        "to_time": to_time,
        "through_id": last if through_id is None else min(through_id, last),
        "table": table,
    }
    engine.collect_window(session, window)
    report = _survey(session, window, dry_run)
    engine.refuse_unsigned_past(session)
    engine.refuse_barriers(session)
    plans = engine.make_plan(session)
    if not dry_run:
        engine.lock_rows(session, plans)
    engine.check_conflicts(session, plans, window["through_id"])
    if dry_run or not any(op in ROW_OPS for _, op, _ in report.counts):
        return report
    with session.begin_nested():  # a refusal below leaves the caller's transaction clean
        change_set, marker = _open_rollback(session, window, report)
        _set_local(session, "movierec.change_set", str(change_set))
        rows = engine.undo(session, plans)
        engine.check_collateral(session, change_set)
        _set_local(session, "movierec.change_set", "")
    return replace(report, rows=rows, change_set=change_set, undo_to=marker)


def _survey(session: Session, window: dict[str, Any], dry_run: bool) -> RollbackReport:
    counts, newest, ignored, first_ignored = engine.window_survey(session, PREVIEW)
    return RollbackReport(
        dry_run=dry_run,
        to_id=window["to_id"],
        to_time=window["to_time"],
        table=window["table"],
        through_id=window["through_id"],
        changes=sum(n for _, _, n in counts),
        counts=tuple((t, op, n) for t, op, n in counts),
        preview=tuple(_change(row) for row in newest),
        ignored=ignored,
        first_ignored=first_ignored,
    )


def _open_rollback(
    session: Session, window: dict[str, Any], report: RollbackReport
) -> tuple[int, int]:
    """Record the change set and its ROLLBACK marker; returns (change set id, marker id)."""
    if window["to_id"] is not None:
        description = f"rollback to change {window['to_id']}"
    else:
        description = f"rollback to {window['to_time'].isoformat()}"
    if window["table"]:
        description += f" ({window['table']} only)"
    details = {
        "to_id": window["to_id"],
        "to_time": window["to_time"].isoformat() if window["to_time"] else None,
        "table": window["table"],
        "through_id": window["through_id"],
        "changes": report.changes,
    }
    change_set = session.scalar(
        text(
            "INSERT INTO change_sets (kind, description, details) "
            "VALUES ('rollback', :description, CAST(:details AS jsonb)) RETURNING id"
        ),
        {"description": description, "details": json.dumps(details)},
    )
    marker = session.scalar(
        text(
            "SELECT movierec_history_append(:table, 'ROLLBACK', '{}', NULL, "
            "CAST(:details AS jsonb), NULL, NULL, :change_set)"
        ),
        {"table": window["table"] or "*", "details": json.dumps(details), "change_set": change_set},
    )
    return change_set, marker


def _not_future(session: Session, moment: datetime) -> datetime:
    now = session.scalar(text("SELECT clock_timestamp()"))
    if moment > now:
        raise BadInput(
            f"{moment.isoformat()} is in the future (the database's clock says "
            f"{now.isoformat(timespec='seconds')}): there is nothing after it to roll back"
        )
    return moment


# -- maintenance ---------------------------------------------------------------------------

_PARTITIONS = """
SELECT c.relname, b[1]::timestamptz AS lower, b[2]::timestamptz AS upper
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
CROSS JOIN LATERAL regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                'FROM \\(''([^'']*)''\\) TO \\(''([^'']*)''\\)') AS b
WHERE i.inhparent = 'change_history'::regclass AND b IS NOT NULL
ORDER BY upper
"""


def ensure_partitions(session: Session, months_ahead: int = 3) -> int:
    """Create the monthly history partitions up to ``months_ahead``; returns how many."""
    return session.scalar(
        text("SELECT movierec_history_add_partitions(now(), CAST(:months AS integer))"),
        {"months": months_ahead},
    )


def prune(session: Session, before: datetime, months_ahead: int = 3) -> PruneReport:
    """Delete the history older than ``before``, and change sets no longer referenced.

    Whole monthly partitions before it are dropped (quick, and gives the disk space back);
    the rest is deleted row by row. Then makes sure the partitions for the coming months
    exist. Raises :class:`BadInput` for a naive ``before``.
    """
    before = _aware(before, "before")
    _set_local(session, "statement_timeout", "0")
    dropped: list[str] = []
    rows = 0
    for name, _lower, upper in session.execute(text(_PARTITIONS)).all():
        if upper <= before:
            rows += session.scalar(text(_sql(session, "SELECT count(*) FROM {}", name)))
            session.execute(text(_sql(session, "DROP TABLE {}", name)))
            dropped.append(name)
    deleted = session.execute(
        text("DELETE FROM change_history WHERE changed_at < :before"), {"before": before}
    )
    rows += deleted.rowcount
    change_sets = session.execute(
        text(
            "DELETE FROM change_sets s WHERE s.created_at < :before AND NOT EXISTS "
            "(SELECT 1 FROM change_history h WHERE h.change_set = s.id)"
        ),
        {"before": before},
    ).rowcount
    ensure_partitions(session, months_ahead)
    return PruneReport(rows=rows, partitions=tuple(dropped), change_sets=change_sets)


# -- for the app, the CLI and loaders --------------------------------------------------------


def set_actor(target: Any, actor: str) -> None:
    """Blame the rest of this transaction's changes on ``actor`` (``user:<id>``,
    ``admin:<name>``). ``target``: a SQLAlchemy Session/Connection or a psycopg
    Connection/Cursor inside a transaction. Raises :class:`BadInput` for an empty actor."""
    if not actor or not actor.strip():
        raise BadInput("the actor must not be empty")
    _run(target, "SELECT set_config('movierec.actor', %(actor)s, true)", {"actor": actor})


def act_as_user(target: Any, user_id: int) -> None:
    """Blame the rest of this transaction's changes on the site's user ``user_id``
    (``user:<id>``, the one claim the site's role may make). ``target`` as for
    :func:`set_actor`."""
    set_actor(target, f"user:{int(user_id)}")


@contextmanager
def bulk_change_set(
    target: Any, description: str, details: Mapping[str, Any] | None = None
) -> Iterator[int]:
    """Record a bulk load as one change set and switch per-row history off inside the block.

    ``target`` is the loader's transaction: a SQLAlchemy Session/Connection or a psycopg
    Connection/Cursor. ``details`` is stored as given (jsonb); put ``source`` (e.g.
    ``"ml-100k"``) and ``tables`` (the tables loaded: one ``BULK`` history marker each, so a
    rollback of those tables stops there) in it. Yields the change set id. If the block
    raises, roll the transaction back (the setting is transaction-local and goes with it).
    Raises :class:`BadInput` when ``tables`` is not a list of names.
    """
    details = dict(details or {})
    tables = details.get("tables", ["*"])
    if isinstance(tables, str) or not all(isinstance(t, str) for t in tables):
        raise BadInput("details['tables'] must be a list of table names")
    payload = json.dumps(details, default=str)
    change_set = _run(
        target,
        "INSERT INTO change_sets (kind, description, details) "
        "VALUES ('bulk', %(description)s, %(details)s::jsonb) RETURNING id",
        {"description": description, "details": payload},
    )
    _run(
        target,
        "SELECT movierec_history_append(t, 'BULK', '{}', NULL, %(details)s::jsonb, NULL, NULL, "
        "%(change_set)s) FROM unnest(%(tables)s::text[]) t",
        {"details": payload, "change_set": change_set, "tables": list(tables)},
    )
    setting = "SELECT set_config('movierec.bulk_change_set', %(value)s, true)"
    _run(target, setting, {"value": str(change_set)})
    yield change_set
    _run(target, setting, {"value": ""})


# -- helpers -------------------------------------------------------------------------------


def _run(target: Any, statement: str, params: Mapping[str, Any]) -> Any:
    """Execute psycopg-style SQL on a SQLAlchemy or psycopg object; the first value or None."""
    if isinstance(target, Session):
        target = target.connection()
    if isinstance(target, Connection):
        result = target.exec_driver_sql(statement, dict(params))
        row = result.first() if result.returns_rows else None
    else:
        cursor = target.execute(statement, params)
        row = cursor.fetchone() if cursor.description else None
    return row[0] if row else None


def _set_local(session: Session, name: str, value: str) -> None:
    session.execute(text("SELECT set_config(:name, :value, true)"), {"name": name, "value": value})


def _sql(session: Session, template: str, name: str) -> str:
    """``template`` with ``{}`` replaced by the quoted identifier ``name``."""
    driver = session.connection().connection.driver_connection
    return sql.SQL(template).format(sql.Identifier(name)).as_string(driver)


def _check_table(session: Session, name: str, tables: Sequence[str] | None = None) -> None:
    tables = tracked_tables(session) if tables is None else tables
    if name not in tables:
        raise BadInput(f"no history is kept for table {name!r} (tracked: {', '.join(tables)})")


def _aware(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None:
        raise BadInput(f"{what} must carry a time zone")
    return moment


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)
