"""``movierec db``: create the schema, run a private local server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from movierec.cli import db_history, db_replica
from movierec.cli.common import console, settings_from
from movierec.db import LocalPostgres
from movierec.db.migrate import current_tables, upgrade

app = typer.Typer(help="Database: schema and a local PostgreSQL server.", no_args_is_help=True)
app.add_typer(db_replica.app, name="replica")
app.add_typer(db_history.app, name="history")


@app.command()
def init(ctx: typer.Context) -> None:
    """Create or upgrade the schema on the configured database (MOVIEREC_DATABASE_URL)."""
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
    """Start a private PostgreSQL 15 on 127.0.0.1 and print its database URL."""
    settings = settings_from(ctx)
    server = LocalPostgres(state_dir or settings.state_dir / "postgres", port=port).start()
    console.print(server.create_database(dbname), highlight=False, soft_wrap=True)


@app.command("stop-local")
def stop_local(
    ctx: typer.Context,
    state_dir: Annotated[Path | None, typer.Option(help="The server's state directory.")] = None,
) -> None:
    """Stop the private PostgreSQL started by ``start-local``."""
    settings = settings_from(ctx)
    LocalPostgres(state_dir or settings.state_dir / "postgres").stop()
    console.print("stopped")
