"""``movierec db replica``: streaming replicas of the primary, synchronous mode, promotion."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from movierec.cli.common import console, err_console, settings_from
from movierec.config import Settings
from movierec.db.promotion import promote as promote_standby
from movierec.db.replicas import (
    create_replica,
    remove_replica,
    replication_status,
    set_synchronous,
    start_server,
    stop_server,
)
from movierec.db.topology import server_url, stale_database_url

app = typer.Typer(
    help="Streaming replicas: create, status, sync, promote, start/stop, remove.",
    no_args_is_help=True,
)

NameOption = Annotated[str, typer.Option("--name", help="The replica's name.")]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


class SyncMode(StrEnum):
    on = "on"
    off = "off"


@app.command()
def create(ctx: typer.Context, name: NameOption = "r1") -> None:
    """Clone the primary into a streaming replica (pg_basebackup) and print its URL."""
    settings = settings_from(ctx)
    with err_console.status(f"copying the primary into replica {name} ..."):
        server = create_replica(settings, name)
    err_console.print(
        f"replica {name} streams from {server.upstream} through slot {server.slot}; "
        "read from it with MOVIEREC_REPLICA_URL set to:",
        highlight=False,
    )
    console.print(server_url(settings, server), highlight=False, soft_wrap=True)


@app.command()
def status(ctx: typer.Context) -> None:
    """Show every server: role, state, replay lag (bytes, seconds), sync state, slot."""
    settings = settings_from(ctx)
    table = Table(box=box.SIMPLE_HEAD)
    for header in ("server", "role", "state", "address", "lag bytes", "lag s", "sync", "slot"):
        # fold, never truncate: a clipped state or address reads as a different one
        table.add_column(header, overflow="fold")
    for row in replication_status(settings):
        table.add_row(
            row.name, row.role, _styled(row.state), row.address,
            "-" if row.lag_bytes is None else f"{row.lag_bytes:,}",
            "-" if row.lag_seconds is None else f"{row.lag_seconds:.3f}",
            row.sync_state or "-", row.slot or "-",
        )  # fmt: skip
    console.print(table)
    _note_stale_url(settings)


@app.command()
def sync(
    ctx: typer.Context,
    mode: Annotated[SyncMode, typer.Argument(help="on: commits wait for a standby; off: not.")],
    name: Annotated[
        str | None, typer.Option("--name", help="The standby to wait for (default: every standby).")
    ] = None,
) -> None:
    """Turn synchronous replication on (commits wait for the standby) or off."""
    settings = settings_from(ctx)
    result = set_synchronous(settings, mode is SyncMode.on, name)
    if mode is SyncMode.off:
        console.print("synchronous replication is off")
        return
    console.print(f"synchronous_standby_names = '{result.standby_names}'", highlight=False)
    if result.synchronous_commit == "off":
        err_console.print(
            "[yellow]note:[/yellow] the primary runs with synchronous_commit = off, so commits "
            "do not wait; sessions that SET synchronous_commit = on (or remote_apply) do.",
            highlight=False,
        )


@app.command()
def promote(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The standby to promote.")],
    force: Annotated[
        bool, typer.Option(help="Promote even if it has not replayed all the primary's WAL.")
    ] = False,
    yes: YesOption = False,
) -> None:
    """Fence (stop) the primary and promote standby NAME to primary; the old primary's other
    standbys then follow NAME."""
    settings = settings_from(ctx)
    if not yes:
        typer.confirm(f"Stop the current primary and promote {name}?", abort=True)
    result = promote_standby(settings, name, force=force)
    err_console.print(
        f"{name} is the primary now; the old primary {result.former.name} {result.fencing}.",
        highlight=False,
    )
    for follower in result.followers:
        err_console.print(f"{follower} follows {name} now.", highlight=False)
    for orphan in result.orphans:
        err_console.print(
            f"[yellow]note:[/yellow] {orphan} still follows {result.former.name}; "
            f"recreate it: movierec db replica remove {orphan} --yes && "
            f"movierec db replica create --name {orphan}",
            highlight=False,
        )
    err_console.print(
        "The replica commands follow servers.json in the state dir already; the web and AI "
        "servers read the setting, so set it and restart them:",
        highlight=False,
    )
    console.print(f"MOVIEREC_DATABASE_URL={result.url}", highlight=False, soft_wrap=True)


@app.command()
def remove(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The replica (or former primary) to delete.")],
    yes: YesOption = False,
) -> None:
    """Stop a replica, drop its replication slot and delete its files."""
    settings = settings_from(ctx)
    if not yes:
        typer.confirm(f"Delete replica {name} and all its files?", abort=True)
    if remove_replica(settings, name):
        console.print(f"removed {name}")
    else:
        console.print(f"removed {name}; its slot stays on the unreachable primary: drop it there")


@app.command()
def start(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="The server to start.")]
) -> None:
    """Start a server of the topology (a replica, the primary, a shard) on its recorded port."""
    server = start_server(settings_from(ctx), name)
    console.print(f"{name} runs on {server.address}", highlight=False)


@app.command()
def stop(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The server to stop.")],
    yes: YesOption = False,
) -> None:
    """Stop a server of the topology or a shard (fast shutdown: open sessions are cut)."""
    settings = settings_from(ctx)
    if not yes:
        typer.confirm(f"Stop {name}? Its open sessions end now.", abort=True)
    stop_server(settings, name)
    console.print(f"stopped {name}")


def _styled(state: str) -> str:
    colour = {"up": "green", "streaming": "green", "down": "red", "disconnected": "red"}
    return f"[{colour.get(state, 'yellow')}]{state}[/]"


def _note_stale_url(settings: Settings) -> None:
    url = stale_database_url(settings)
    if url:
        err_console.print(
            f"[yellow]note:[/yellow] MOVIEREC_DATABASE_URL is not the primary; set it to {url}",
            highlight=False,
            soft_wrap=True,
        )
