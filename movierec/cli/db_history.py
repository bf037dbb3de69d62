"""``movierec db history``: list and show recorded changes, roll back to a point, prune."""

from __future__ import annotations

import getpass
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table
from rich.text import Text
from sqlalchemy.orm import Session

from movierec.cli.common import console, settings_from
from movierec.db import Database
from movierec.db.history import (
    ROW_OPS,
    Change,
    RollbackReport,
    list_changes,
    prune,
    rollback,
    set_actor,
    show_change,
)
from movierec.errors import BadInput

app = typer.Typer(
    help="Change history of users, movies, ratings, preferences: list, show, rollback, prune.",
    no_args_is_help=True,
)

SHOWN = 20  # changes a rollback prints one by one before asking
_DURATION = re.compile(
    r"(\d+)\s*(s|secs?|seconds?|m|mins?|minutes?|h|hours?|d|days?|w|weeks?)(\s+ago)?",
    re.IGNORECASE,
)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
TIME_HELP = "ISO 8601 (local time unless it says otherwise) or a time ago: 90m, 2h, '3 days ago'."


def parse_time(value: str, now: datetime | None = None) -> datetime:
    """An aware datetime from ISO 8601 or a duration ago. Raises :class:`BadInput`."""
    value = value.strip()
    ago = _DURATION.fullmatch(value)
    if ago:
        delta = timedelta(**{_UNITS[ago.group(2)[0].lower()]: int(ago.group(1))})
        return (now or datetime.now(UTC)) - delta
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadInput(f"cannot read the time {value!r}: {TIME_HELP}") from None
    return moment if moment.tzinfo else moment.astimezone()


def admin_actor() -> str:
    """``admin:<os user>``: what the history records for changes made from this CLI."""
    try:
        return f"admin:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name and no passwd entry (some containers)
        return f"admin:uid{os.getuid()}"


@contextmanager
def admin_session(ctx: typer.Context, readonly: bool = False) -> Iterator[Session]:
    """A session on the configured database that commits on success; changes in it are
    recorded as ``admin:<os user>`` (:func:`admin_actor`)."""
    database = Database(settings_from(ctx))
    try:
        with database.session(readonly=readonly) as session:
            if not readonly:
                set_actor(session, admin_actor())
            yield session
    finally:
        database.dispose()


@app.command("list")
def list_(
    ctx: typer.Context,
    table: Annotated[str | None, typer.Option(help="Only this table's changes.")] = None,
    since: Annotated[str | None, typer.Option(help="Only changes since. " + TIME_HELP)] = None,
    user: Annotated[
        str | None, typer.Option(help="Only changes by this actor, e.g. user:42, admin:ann.")
    ] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
) -> None:
    """The newest recorded changes."""
    moment = parse_time(since) if since else None
    with admin_session(ctx, readonly=True) as session:
        changes = list_changes(session, table=table, since=moment, actor=user, limit=limit)
    if not changes:
        console.print("no changes recorded")
        return
    console.print(_changes_table(changes))


@app.command()
def show(ctx: typer.Context, change_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """One change, with the row before and after it as JSON."""
    with admin_session(ctx, readonly=True) as session:
        change = show_change(session, change_id)
    change_set = change.change_set if change.change_set is not None else "-"
    _say(f"change {change.id}: {change.op} {change.table} {_compact(change.key)}")
    _say(
        f"at {change.changed_at.isoformat()} by {change.actor}, txid {change.txid}, "
        f"change set {change_set}"
    )
    if change.private_changed:
        _say(f"private columns changed (values not kept): {', '.join(change.private_changed)}")
    for label, row in (("old row", change.old_row), ("new row", change.new_row)):
        _say(f"{label}:")
        _say(json.dumps(row, indent=2, sort_keys=True))


@app.command("rollback")
def rollback_(
    ctx: typer.Context,
    to: Annotated[int | None, typer.Option("--to", help="Revert every change after ID.")] = None,
    to_time: Annotated[
        str | None, typer.Option("--to-time", help="Revert every change after TIME. " + TIME_HELP)
    ] = None,
    table: Annotated[str | None, typer.Option(help="Only this table's changes.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Only show what would be reverted.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Put the data back as it was at a change id or a time, in one transaction."""
    if (to is None) == (to_time is None):
        raise BadInput("give --to ID or --to-time TIME (exactly one)")
    moment = parse_time(to_time) if to_time else None
    with admin_session(ctx) as session:
        preview = rollback(session, to_id=to, to_time=moment, table=table, dry_run=True)
    _print_preview(preview)
    if dry_run:
        return
    if not any(op in ROW_OPS for _, op, _ in preview.counts):
        console.print("nothing to revert")
        return
    if not yes:
        typer.confirm(f"Revert these {preview.changes} changes?", abort=True)
    with admin_session(ctx) as session:
        report = rollback(
            session, to_id=to, to_time=moment, table=table, through_id=preview.through_id
        )
    _say(
        f"restored {report.rows} rows as change set {report.change_set}; to undo this "
        f"rollback: movierec db history rollback --to {report.undo_to}"
    )


@app.command("prune")
def prune_(
    ctx: typer.Context,
    before: Annotated[str, typer.Option(help="Delete history older than this. " + TIME_HELP)],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete old history (whole months at once) and create the coming months' partitions."""
    moment = parse_time(before)
    if not yes:
        typer.confirm(
            f"Delete all history before {moment.isoformat()}? Changes before it can no longer "
            "be rolled back.",
            abort=True,
        )
    with admin_session(ctx) as session:
        report = prune(session, moment)
    dropped = f" ({len(report.partitions)} monthly partitions dropped)" if report.partitions else ""
    _say(f"deleted {report.rows} history rows{dropped} and {report.change_sets} change sets")


def _print_preview(report: RollbackReport) -> None:
    target = f"change {report.to_id}" if report.to_id is not None else report.to_time.isoformat()
    only = f", {report.table} only" if report.table else ""
    _say(f"{report.changes} changes after {target}{only} (through change {report.through_id}):")
    for table_name, op, n in report.counts:
        _say(f"  {table_name:<12} {op:<8} {n}")
    if report.preview:
        console.print(_changes_table(report.preview[:SHOWN]))
    if report.changes > SHOWN:
        _say(f"... and {report.changes - SHOWN} more")
    if report.ignored:
        _say(
            f"ignored: {report.ignored} history rows whose signature does not check (not "
            f"written by the history's trigger), the first is change {report.first_ignored}"
        )


def _changes_table(changes: list[Change] | tuple[Change, ...]) -> Table:
    """One line per change at 80 columns for the usual actors and keys: no box, the time
    without its year (the header says it), the key as ``column=value``, the change set column
    only when a change has one; a long actor or key wraps within its own column."""
    years = {c.changed_at.astimezone().year for c in changes}
    at = f"at ({years.pop()})" if len(years) == 1 else "at"
    grid = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1))
    grid.add_column("id", no_wrap=True, justify="right")
    grid.add_column(at, no_wrap=True)
    grid.add_column("actor", overflow="fold")
    grid.add_column("table", no_wrap=True)
    grid.add_column("op", no_wrap=True)
    grid.add_column("key", overflow="fold")
    if any(c.private_changed for c in changes):
        grid.caption = "op*: private columns (credentials) changed; their values are not kept"
    with_sets = any(c.change_set is not None for c in changes)
    if with_sets:
        grid.add_column("set", no_wrap=True)
    for change in changes:
        moment = change.changed_at.astimezone()
        row = [
            str(change.id),
            moment.strftime("%m-%d %H:%M:%S" if at != "at" else "%Y-%m-%d %H:%M:%S"),
            Text(change.actor),
            change.table,
            change.op + ("*" if change.private_changed else ""),
            Text(" ".join(f"{k}={v}" for k, v in change.key.items())),
        ]
        if with_sets:
            row.append("" if change.change_set is None else str(change.change_set))
        grid.add_row(*row)
    return grid


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _say(line: str) -> None:
    console.print(line, markup=False, highlight=False, soft_wrap=True)
