"""``movierec backup``: pgBackRest backups, restore points and point-in-time restore."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from movierec.cli.common import console, err_console, human_bytes, progress_bar, settings_from
from movierec.cluster import ha
from movierec.db import backup as lib
from movierec.db.backup_drill import drill as run_drill
from movierec.db.restore import plan_restore, run_restore
from movierec.db.roles import masked
from movierec.errors import BadInput

app = typer.Typer(
    help="Backups with pgBackRest and point-in-time restore of every server.",
    no_args_is_help=True,
)

Retention = Annotated[
    int | None,
    typer.Option(
        "--retention-full",
        min=1,
        help="Full backups to keep [extra setting backup_retention_full, else 2].",
    ),
]


@app.command()
def setup(
    ctx: typer.Context,
    retention_full: Retention = None,
    durable: Annotated[
        bool, typer.Option(help="Also turn fsync, full_page_writes, synchronous_commit on.")
    ] = True,
) -> None:
    """Write pgbackrest.conf, turn on WAL archiving (restarts the server), create the stanzas."""
    settings = settings_from(ctx)
    config = lib.backup_config(settings, retention_full)
    conf = lib.setup(config, lib.local_servers(settings), durable=durable)
    console.print(f"backups set up: {conf}", highlight=False, soft_wrap=True)


@app.command()
def create(
    ctx: typer.Context,
    kind: Annotated[
        str, typer.Option("--type", help="full, diff (since the last full) or incr.")
    ] = "full",
) -> None:
    """Back up every server, then mark a restore point on all of them."""
    settings = settings_from(ctx)
    servers = lib.local_servers(settings)
    with progress_bar(f"{kind} backup") as update:
        result = lib.create_backup(lib.backup_config(settings), servers, kind, update)
    labels = ", ".join(f"{stanza} {label}" for stanza, label in result.labels.items())
    console.print(
        f"backed up: {labels}; restore point {result.restore_point.name}", highlight=False
    )


@app.command("restore-point")
def restore_point(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Name [point-<UTC time>].")] = None,
) -> None:
    """Mark a named restore point on every server now (restore to it with --point)."""
    settings = settings_from(ctx)
    point = lib.create_restore_point(lib.backup_config(settings), lib.local_servers(settings), name)
    console.print(f"restore point {point.name} at {point.time:%Y-%m-%d %H:%M:%S} UTC")


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """Backups in the repository, and the restore points."""
    settings = settings_from(ctx)
    config = lib.backup_config(settings)
    backups = lib.list_backups(config)
    if not backups:
        console.print("no backups yet")
    else:
        console.print(_backups_table(backups))
    points = lib.restore_points(config)
    if points:
        table = Table(title="restore points")
        table.add_column("name", no_wrap=True)
        table.add_column("time (UTC)")
        table.add_column("made after backup")
        for p in points:
            labels = [b.label for b in backups if b.restore_point == p.name]
            table.add_row(p.name, f"{p.time:%Y-%m-%d %H:%M:%S.%f}", ", ".join(labels))
        console.print(table)


def _backups_table(backups: list[lib.BackupSet]) -> Table:
    table = Table(title="backups")
    # Labels are typed into other commands: never cut them; the rest may wrap on a narrow
    # terminal.
    table.add_column("stanza")
    table.add_column("label", no_wrap=True)
    table.add_column("type")
    table.add_column("start → stop (UTC)")
    table.add_column("size / in repo")
    table.add_column("WAL range", overflow="fold")
    for b in backups:
        stop = f"{b.stop:%H:%M:%S}" if b.stop.date() == b.start.date() else f"{b.stop:%F %T}"
        table.add_row(
            b.stanza,
            b.label,
            b.type,
            f"{b.start:%Y-%m-%d %H:%M:%S}\n→ {stop}",
            f"{human_bytes(b.size)}\n{human_bytes(b.repo_size)}",
            f"{b.wal_start}\n{b.wal_stop}",
        )
    return table


@app.command()
def verify(ctx: typer.Context) -> None:
    """Check that WAL archiving works and that every file in the repository is intact."""
    settings = settings_from(ctx)
    lib.verify(lib.backup_config(settings), lib.local_servers(settings))
    console.print("backups verified: archiving works, repository intact")


@app.command()
def expire(ctx: typer.Context, retention_full: Retention = None) -> None:
    """Delete backups (and the WAL they need) beyond the retention."""
    settings = settings_from(ctx)
    config = lib.backup_config(settings, retention_full)
    gone = lib.expire(config, lib.local_servers(settings))
    console.print(f"expired: {', '.join(gone)}" if gone else "nothing to expire", highlight=False)


@app.command()
def restore(
    ctx: typer.Context,
    time: Annotated[
        str | None, typer.Option("--time", help="ISO 8601 time; no offset = local time.")
    ] = None,
    backup: Annotated[
        str | None, typer.Option("--backup", help="Backup label (see `list`).")
    ] = None,
    point: Annotated[str | None, typer.Option("--point", help="Restore point name.")] = None,
    target_dir: Annotated[
        Path | None,
        typer.Option(help="Restore a copy here and start it on a free port; live servers stay."),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask before overwriting.")] = False,
) -> None:
    """Restore every server to one time, backup or restore point."""
    settings = settings_from(ctx)
    config = lib.backup_config(settings)
    servers = lib.local_servers(settings)
    plan = plan_restore(config, servers, at=time, backup=backup, point=point, target_dir=target_dir)
    if plan.in_place and not yes:
        names = ", ".join(item.stanza for item in plan.items)
        err_console.print(
            f"This stops {names} and overwrites their data with the state at {plan.target}."
        )
        if typer.prompt("Type 'restore' to go on", default="", show_default=False) != "restore":
            raise BadInput("restore cancelled: nothing changed")
    with progress_bar(f"restore to {plan.target}") as update:
        if any(item.managed for item in plan.items):
            restored = ha.restore_in_place(settings.state_dir.resolve(), config, plan, update)
        else:
            restored = run_restore(config, plan, update)
    for server in restored:
        where = f"(passwords in {server.state_dir}/passwords.json)"
        console.print(
            f"{server.stanza}: {masked(server.url)} {where}", highlight=False, soft_wrap=True
        )
    if not plan.in_place:
        console.print(
            f"stop the copies with `movierec db stop-local --state-dir {plan.target_dir}/<stanza>`",
            highlight=False,
            soft_wrap=True,
        )
    else:
        console.print("restored; the servers now write a new WAL timeline (take a new full backup)")


@app.command()
def drill(
    ctx: typer.Context,
    scratch: Annotated[
        Path | None,
        typer.Option(help="Where the copies go [state_dir/drills/<restore point>]."),
    ] = None,
    keep: Annotated[bool, typer.Option(help="Leave the restored copies running.")] = False,
) -> None:
    """Restore every server's latest backup, with the WAL since, into scratch servers up to
    a restore point written now, and compare them table by table with the live data (writes
    pause for milliseconds). The check to run weekly. Exit status 1 when anything differs."""
    settings = settings_from(ctx)
    with progress_bar("backup drill: restore") as update:
        report = run_drill(settings, scratch, keep, update)
    for c in report.comparisons:
        verdict = "[green]PASS[/]" if c.ok else "[red]FAIL[/]"
        detail = ", ".join(d.table for d in c.differences[:5])
        tables = f"{c.tables} table{'s' if c.tables != 1 else ''}"
        outcome = "match" if c.ok else f"differ ({detail})"
        console.print(f"{c.reference}: {tables} {outcome} {verdict}", highlight=False)
    console.print(
        f"restore point {report.point}; writes paused at most {report.stalled_ms:.0f} ms; "
        f"{report.seconds:.0f} s in all",
        highlight=False,
    )
    if not report.ok:
        raise typer.Exit(1)
