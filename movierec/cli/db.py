"""``movierec db``: create the schema, run a private local server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from movierec.cli import db_history, db_partitions, db_replica
from movierec.cli.common import console, human_bytes, settings_from
from movierec.db import LocalPostgres
from movierec.db.check import check as consistency_check
from movierec.db.migrate import current_tables, upgrade
from movierec.db.roles import masked
from movierec.db.status import database_status

app = typer.Typer(help="Database: schema and a local PostgreSQL server.", no_args_is_help=True)
app.add_typer(db_replica.app, name="replica")
app.add_typer(db_history.app, name="history")
app.add_typer(db_partitions.app, name="partitions")


@app.command()
def init(ctx: typer.Context) -> None:
    """Create or upgrade the schema on the configured database (MOVIEREC_DATABASE_URL), and
    the roles the site and the recommenders connect as (movierec_web, movierec_ai)."""
    settings = settings_from(ctx)
    settings.require("database_url")
    upgrade(settings.database_url)
    tables = current_tables(settings.database_url)
    console.print(f"schema is up to date: {', '.join(t for t in tables if t != 'alembic_version')}")


@app.command("start-local")
def start_local(
    ctx: typer.Context,
    state_dir: Annotated[
        Path | None,
        typer.Option(help="Where the server keeps its files (default: state_dir/postgres)."),
    ] = None,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: a free one).")] = 0,
    dbname: Annotated[str, typer.Option(help="Database to create.")] = "movierec",
) -> None:
    """Start a private PostgreSQL 15 on 127.0.0.1 and print its database URL (the password
    masked; the full URL is written to a file only you may read)."""
    settings = settings_from(ctx)
    server = LocalPostgres(state_dir or settings.state_dir / "postgres", port=port).start()
    url = server.create_database(dbname)
    url_file = server.save_url(url)
    console.print(masked(url), highlight=False, soft_wrap=True)
    console.print(
        f'the full URL: export MOVIEREC_DATABASE_URL="$(cat {url_file})"',
        highlight=False,
        soft_wrap=True,
    )


@app.command("stop-local")
def stop_local(
    ctx: typer.Context,
    state_dir: Annotated[Path | None, typer.Option(help="The server's state directory.")] = None,
) -> None:
    """Stop the private PostgreSQL started by ``start-local``."""
    settings = settings_from(ctx)
    LocalPostgres(state_dir or settings.state_dir / "postgres").stop()
    console.print("stopped")


@app.command()
def check(
    ctx: typer.Context,
    acknowledged: Annotated[
        Path | None,
        typer.Option(
            help="JSON lines of acknowledged ratings (a drill's record: user_id, movie_id, "
            "rating; null for a deletion) that must be on the primary."
        ),
    ] = None,
) -> None:
    """Compare each replica with the primary, table by table (rows and a checksum, at one
    moment: writes pause for milliseconds), and acknowledged writes with the primary's rows.
    Exit status 1 on any difference."""
    report = consistency_check(settings_from(ctx), acknowledged)
    table = Table(box=box.SIMPLE_HEAD)
    for header in ("copy", "tables", "differing", "result"):
        table.add_column(header)
    for c in report.comparisons:
        result = "[green]same[/]" if c.ok else "[red]differs[/]"
        differing = ", ".join(d.table for d in c.differences[:5])
        more = len(c.differences) - 5
        table.add_row(
            c.copy, str(c.tables), differing + (f" (+{more})" if more > 0 else ""), result
        )
    for line in report.unreachable:
        name, _, why = line.partition(": ")
        table.add_row(name, "-", why, "[red]unreachable[/]")
    if report.comparisons or report.unreachable:
        console.print(table)
    else:
        console.print(f"no replicas of {report.primary} to compare", highlight=False)
    ack = report.acknowledged
    if ack is not None:
        verdict = "[green]all present[/]" if ack.ok else "[red]LOST WRITES[/]"
        console.print(
            f"acknowledged writes: {ack.checked:,} checked, {len(ack.missing):,} missing, "
            f"{len(ack.resurrected):,} deleted but present: {verdict}",
            highlight=False,
        )
    console.print(
        f"{report.tables} tables on {report.primary}; writes paused {report.stalled_ms:.0f} ms",
        highlight=False,
    )
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def status(ctx: typer.Context) -> None:
    """One screen: servers and replica lag, partitions, last backup, change-history size."""
    st = database_status(settings_from(ctx))
    servers = Table(title="servers", box=box.SIMPLE_HEAD, title_justify="left")
    for header in ("server", "role", "state", "address", "lag bytes", "lag s", "sync"):
        servers.add_column(header, overflow="fold")
    for s in st.servers:
        servers.add_row(
            s.name, s.role, str(s.state), s.address,
            "-" if s.lag_bytes is None else f"{s.lag_bytes:,}",
            "-" if s.lag_seconds is None else f"{s.lag_seconds:.3f}",
            s.sync_state or "-",
        )  # fmt: skip
    console.print(servers if st.servers else f"servers: {st.servers_error}", highlight=False)
    if st.partitions:
        console.print(db_partitions.partitions_table(list(st.partitions), title="partitions"))
        db_partitions.print_partition_errors(list(st.partitions))
    else:
        console.print(f"partitions: {st.partitions_error or 'none'}", highlight=False)
    if st.last_backup is not None:
        b = st.last_backup
        console.print(
            f"last backup: {b.stanza} {b.label} ({b.type}), finished {b.stop:%Y-%m-%d %H:%M:%S} "
            f"UTC, {human_bytes(b.size)}",
            highlight=False,
        )
    else:
        console.print(f"last backup: {st.backups_error}", highlight=False)
    if st.history is not None:
        h = st.history
        console.print(
            f"change history: {h.rows:,} rows, {h.change_sets:,} change sets, "
            f"{human_bytes(h.bytes)}",
            highlight=False,
        )
    else:
        console.print(f"change history: {st.history_error}", highlight=False)
