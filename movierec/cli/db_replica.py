"""``movierec db replica``: the replicas of a PostgreSQL group Patroni runs, as thin calls to
Patroni (its REST API) and to the local cluster that starts its members. Each command prints
what happened in one line; what Patroni refuses is refused with its reason."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from movierec.cli.common import console, settings_from
from movierec.cluster import ha
from movierec.db import patroni
from movierec.db.patroni import Group
from movierec.db.replicas import start_server, stop_server

app = typer.Typer(
    help="Replicas of a Patroni group: create, status, promote, rejoin, remove, sync; "
    "start and stop of a server movierec runs without Patroni (a shard).",
    no_args_is_help=True,
)

GroupOption = Annotated[
    str, typer.Option("--group", help="The PostgreSQL group: main, or a shard (shard1, ...).")
]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


class SyncMode(StrEnum):
    on = "on"
    off = "off"


def _group(ctx: typer.Context, scope: str) -> Group:
    state = settings_from(ctx).state_dir.resolve()
    return patroni.load_group(ha.group_root(state, scope))


@app.command()
def create(ctx: typer.Context, group: GroupOption = ha.MAIN_SCOPE) -> None:
    """Add a replica: Patroni clones it from the primary (pg_basebackup) and it streams."""
    state = settings_from(ctx).state_dir.resolve()
    with console.status(f"Patroni clones a replica of group {group} ..."):
        member = ha.add_replica(state, group)
    console.print(
        f"replica {member.name} of {group} streams from the primary (127.0.0.1:{member.pg_port})",
        highlight=False,
    )


@app.command()
def status(ctx: typer.Context, group: GroupOption = ha.MAIN_SCOPE) -> None:
    """Each member of the group as Patroni reports it: role, state, timeline, lag."""
    table = Table(box=box.SIMPLE_HEAD)
    for header in ("member", "role", "state", "address", "timeline", "lag bytes"):
        table.add_column(header, overflow="fold")
    for view in patroni.cluster_view(_group(ctx, group)):
        lag = "" if view.is_leader else ("?" if view.lag is None else f"{view.lag:,}")
        table.add_row(
            view.name, view.role, _styled(view.state), f"{view.host}:{view.port}",
            str(view.timeline or "-"), lag,
        )  # fmt: skip
    console.print(table)


@app.command()
def promote(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The replica to make the primary.")],
    group: GroupOption = ha.MAIN_SCOPE,
    yes: YesOption = False,
) -> None:
    """Make NAME the primary: a switchover when the primary is healthy (no commit lost), a
    failover when there is none. The web and AI servers follow through the database switch."""
    if not yes:
        typer.confirm(f"Make {name} the primary of {group}?", abort=True)
    answer = patroni.promote(_group(ctx, group), name)
    console.print(f"{name}: {answer}", highlight=False)


@app.command()
def rejoin(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The member to bring back as a replica.")],
    group: GroupOption = ha.MAIN_SCOPE,
) -> None:
    """Bring a stopped or broken member back as a replica of the primary (pg_rewind, or a
    rebuild from the primary when it runs but cannot follow)."""
    state = settings_from(ctx).state_dir.resolve()
    with console.status(f"{name} rejoins group {group} ..."):
        how = ha.rejoin(state, name, group)
    console.print(f"{name} streams from the primary again: {how}", highlight=False)


@app.command()
def remove(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The replica to delete.")],
    group: GroupOption = ha.MAIN_SCOPE,
    yes: YesOption = False,
) -> None:
    """Stop a replica and delete its files; Patroni drops its slot on the primary."""
    if not yes:
        typer.confirm(f"Delete replica {name} of {group} and all its files?", abort=True)
    ha.remove_replica(settings_from(ctx).state_dir.resolve(), name, group)
    console.print(f"removed {name} from {group}")


@app.command()
def sync(
    ctx: typer.Context,
    mode: Annotated[SyncMode, typer.Argument(help="on: commits wait for a standby; off: not.")],
    group: GroupOption = ha.MAIN_SCOPE,
) -> None:
    """Patroni's synchronous_mode for the group: on, a commit returns once a synchronous
    standby has it (a failover loses none); off, commits do not wait."""
    patroni.patch_config(_group(ctx, group), {"synchronous_mode": mode is SyncMode.on})
    console.print(f"synchronous_mode is {mode} for {group}", highlight=False)


@app.command()
def start(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="The server to start.")]
) -> None:
    """Start a server movierec runs itself, without Patroni (a shard, a plain primary), on
    its recorded port: the servers that reach it know it by that port. (A Patroni member:
    `movierec cluster restart NAME`, or `rejoin`.)"""
    server = start_server(settings_from(ctx), name)
    console.print(f"{name} runs on {server.address}", highlight=False)


@app.command()
def stop(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The server to stop.")],
    yes: YesOption = False,
) -> None:
    """Stop a server movierec runs itself, without Patroni (fast shutdown: open sessions are
    cut)."""
    if not yes:
        typer.confirm(f"Stop {name}? Its open sessions end now.", abort=True)
    stop_server(settings_from(ctx), name)
    console.print(f"stopped {name}")


def _styled(state: str) -> str:
    colour = {"running": "green", "streaming": "green", "stopped": "red"}
    return f"[{colour.get(state, 'yellow')}]{state}[/]"
