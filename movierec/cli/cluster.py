"""``movierec cluster``: a local cluster on this machine, thin calls into
:mod:`movierec.cluster`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from movierec import cluster
from movierec.cli.common import console, settings_from
from movierec.demo import DEMO_USER, DemoOptions, demo_password, prepare
from movierec.redact import redact

app = typer.Typer(
    help="A local cluster: PostgreSQL (+ replicas, shards, backups), web and AI instances, "
    "the director.",
    no_args_is_help=True,
)


@app.command()
def up(
    ctx: typer.Context,
    web: Annotated[int | None, typer.Option(help="Web instances [2].")] = None,
    ai: Annotated[int | None, typer.Option(help="AI (recommender) instances [2].")] = None,
    replicas: Annotated[int | None, typer.Option(help="Streaming replicas for reads [0].")] = None,
    port: Annotated[
        int | None,
        typer.Option(help="The director's port [8000]; web on the next ports, AI from +101."),
    ] = None,
    director: Annotated[
        bool | None,
        typer.Option(
            "--director/--no-director", help="HAProxy in front of the web instances (default: on)."
        ),
    ] = None,
    directors: Annotated[
        int | None,
        typer.Option(help="Directors: 2 (on --port and --port + 100) or 1 [2]."),
    ] = None,
    shards: Annotated[
        int | None,
        typer.Option(help="Shard servers holding the last partitions of ratings, ... [0]."),
    ] = None,
    shard_replicas: Annotated[
        int | None,
        typer.Option(help="Replicas per shard: each shard becomes a Patroni group [0]."),
    ] = None,
    tablespace: Annotated[
        bool | None,
        typer.Option(
            "--tablespace/--no-tablespace",
            help="A second tablespace (state_dir/tablespaces/disk2) holding ratings_p0.",
        ),
    ] = None,
    backup: Annotated[
        bool | None,
        typer.Option(
            "--backup/--no-backup",
            help="A pgBackRest repository, one stanza per server (primary and shards).",
        ),
    ] = None,
    topology: Annotated[
        str | None,
        typer.Option(
            help="demo (default: primary only, fast) or full: --replicas 1 --shards 2 "
            "--tablespace --backup; explicit options win."
        ),
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="A cluster.toml: a cluster table with web, ai, port, ... .")
    ] = None,
    movies: Annotated[int, typer.Option(help="Synthetic movies, on a first start.")] = 5000,
    users: Annotated[int, typer.Option(help="Synthetic users, on a first start.")] = 3000,
    ratings: Annotated[int, typer.Option(help="Synthetic ratings, on a first start.")] = 300_000,
    movielens: Annotated[
        Path | None,
        typer.Option(envvar="MOVIELENS", help="Import this MovieLens release instead."),
    ] = None,
) -> None:
    """Start the cluster in the background and return once every server is healthy.

    A first start also loads sample data, creates the demo account and trains a model.
    """
    settings = settings_from(ctx)
    options = cluster.read_cluster_toml(config) if config else {}
    given = {
        "web": web, "ai": ai, "replicas": replicas, "port": port, "director": director,
        "directors": directors,
        "shards": shards, "tablespace": tablespace, "backup": backup, "topology": topology,
        "shard_replicas": shard_replicas,
    }  # fmt: skip
    options.update({k: v for k, v in given.items() if v is not None})
    spec = cluster.ClusterSpec.on_port(**cluster.with_topology(options))
    say = lambda text: console.print(text, highlight=False, soft_wrap=True)  # noqa: E731
    data = DemoOptions(movies, users, ratings, movielens)
    record = cluster.up(settings, spec, say, prepare(data, say))
    console.print(
        f"\n[bold green]cluster is up:[/] {record.url}\n"
        f"demo login: [bold]{DEMO_USER}[/] / [bold]{demo_password(settings)}[/]\n"
        "`movierec cluster status` shows it, `movierec cluster down` stops it.\n"
        f'admin commands: export MOVIEREC_DATABASE_URL="$(cat {cluster.admin_url_file(settings)})"',
        highlight=False,
    )


@app.command()
def status(ctx: typer.Context) -> None:
    """Each server of the cluster (web, AI, director, primary, replicas, shards): role, port,
    pid, health, cache hit rate."""
    record, members = cluster.status(settings_from(ctx))
    table = Table(title=f"cluster {record.url}")
    for column in ("name", "role", "port", "pid", "health", "cache hits", "detail"):
        table.add_column(column, justify="right" if column in ("port", "pid") else "left")
    for item in members:
        m = item.member
        health = item.health if item.health != "ok" else "[green]ok[/]"
        if item.health == "down":
            health = "[red]down[/]"
        rate = "" if item.hit_rate is None else f"{item.hit_rate:.0%}"
        if not m.owned:
            health += " (not ours)"
        # Health and detail quote servers' own errors, which may name a connection string.
        health, detail = redact(health), redact(item.detail)
        table.add_row(m.name, m.role, str(m.port), str(m.pid or ""), health, rate, detail)
    console.print(table)


@app.command()
def restart(
    ctx: typer.Context,
    names: Annotated[
        list[str] | None,
        typer.Argument(
            help="Members to restart even if they run (web-1, ai-2, director-1, postgres, "
            "replica-r1, shard1); default: every member whose process is gone."
        ),
    ] = None,
) -> None:
    """Start crashed members again on the ports they had (keep what runs), or restart the
    named ones."""
    say = lambda text: console.print(text, highlight=False, soft_wrap=True)  # noqa: E731
    restarted = cluster.restart(settings_from(ctx), say, names or ())
    console.print(f"{len(restarted)} member(s) restarted" if restarted else "nothing to restart")


@app.command()
def down(ctx: typer.Context) -> None:
    """Stop every member `cluster up` started, also one restarted by hand (a database that
    already ran stays up)."""
    say = lambda text: console.print(text, highlight=False, soft_wrap=True)  # noqa: E731
    stopped = cluster.down(settings_from(ctx), say)
    console.print(f"cluster stopped ({len(stopped)} server(s))", highlight=False)
