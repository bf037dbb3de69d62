"""``movierec db partitions``: where partitions live, and moving them (tablespaces, shards)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from movierec.cli.common import console, err_console, human_bytes, progress_bar, settings_from
from movierec.db.partitions import (
    DEFAULT_TABLESPACE,
    Partition,
    add_server,
    add_tablespace,
    check_references,
    list_partitions,
    place,
    repartition,
)

app = typer.Typer(
    help="Partitions: list, re-partition, add shard servers and tablespaces, place, check.",
    no_args_is_help=True,
)


@contextmanager
def lazy_progress(description: str) -> Iterator[Callable[[int, int | None], None]]:
    """A progress bar that appears with the first update: a refusal before any work (bad
    input, unreachable server) stays one line."""
    with ExitStack() as stack:
        bar: list[Callable[[int, int | None], None]] = []

        def update(done: int, total: int | None = None) -> None:
            if not bar:
                bar.append(stack.enter_context(progress_bar(description)))
            bar[0](done, total)

        yield update


def partitions_table(partitions: list[Partition], title: str | None = None) -> Table:
    """One row per partition: table, name, bounds, where it lives, rows, size."""
    table = Table(title=title, box=box.SIMPLE_HEAD)
    table.add_column("table")
    table.add_column("partition", no_wrap=True)  # typed into `place`: never cut
    table.add_column("hash")
    table.add_column("lives", overflow="fold")
    table.add_column("rows", justify="right")
    table.add_column("size", justify="right")
    for p in partitions:
        where = p.location
        if p.remote_table:
            where += f" ({p.remote_table})"
        if p.rows is None:
            rows = "?" if p.error else "-"
        else:
            rows = f"{p.rows:,}" if p.exact else f"~{p.rows:,}"
        table.add_row(
            p.table, p.name, f"{p.remainder}/{p.modulus}", where, rows, human_bytes(p.bytes)
        )
    return table


def print_partition_errors(partitions: list[Partition]) -> None:
    for message in dict.fromkeys(p.error for p in partitions if p.error):
        err_console.print(f"[yellow]note:[/yellow] {message}", highlight=False, soft_wrap=True)


@app.command("list")
def list_(
    ctx: typer.Context,
    table: Annotated[str | None, typer.Argument(help="Only this table's partitions.")] = None,
    exact: Annotated[
        bool, typer.Option(help="Count rows (a full scan of each) instead of estimating.")
    ] = False,
) -> None:
    """Each partition: where it lives (local, tablespace, shard server), rows, size."""
    partitions = list_partitions(settings_from(ctx), table, exact=exact)
    console.print(partitions_table(partitions))
    print_partition_errors(partitions)


@app.command()
def create(
    ctx: typer.Context,
    table: Annotated[str, typer.Argument(help="The partitioned table (movies, ratings, ...).")],
    count: Annotated[int, typer.Option("--count", help="How many hash partitions.")],
    tablespace: Annotated[
        str | None, typer.Option(help="Put the new partitions in this tablespace.")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Re-partition TABLE into COUNT partitions, moving its rows, in one transaction.

    The table is locked (no reads, no writes) until it is done. Partitions on shard servers
    must be placed back on the primary first.
    """
    settings = settings_from(ctx)
    if not yes:
        typer.confirm(
            f"Rebuild {table} as {count} partitions? It is locked until the rows have moved.",
            abort=True,
        )
    with lazy_progress(f"re-partitioning {table}") as update:
        report = repartition(settings, table, count, tablespace, progress=update)
    console.print(
        f"{table}: {report.before} -> {report.after} partitions, {report.rows:,} rows moved "
        f"and verified in {report.seconds:.1f} s",
        highlight=False,
    )


@app.command("add-server")
def add_server_(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A name for the shard server.")],
    dsn: Annotated[
        str, typer.Argument(help="How to reach it: postgresql://user:password@host:port/db")
    ],
) -> None:
    """Register a PostgreSQL server for partitions (postgres_fdw server + user mapping).

    Refuses if it does not answer, from here or from the primary.
    """
    server = add_server(settings_from(ctx), name, dsn)
    console.print(f"shard server {server.name} added ({server.address})", highlight=False)


@app.command("add-tablespace")
def add_tablespace_(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A name for the tablespace.")],
    directory: Annotated[
        Path, typer.Argument(help="An empty directory owned by the server's OS user (postgres).")
    ],
) -> None:
    """Create a tablespace (a directory standing for another disk) for partitions."""
    space = add_tablespace(settings_from(ctx), name, directory)
    console.print(f"tablespace {space.name} created in {space.location}", highlight=False)


@app.command("place")
def place_(
    ctx: typer.Context,
    partition: Annotated[str, typer.Argument(help="The partition, e.g. ratings_p2.")],
    server: Annotated[str | None, typer.Option(help="Move its rows to this shard server.")] = None,
    tablespace: Annotated[
        str | None,
        typer.Option(help=f"Move it into this tablespace ({DEFAULT_TABLESPACE}: the default)."),
    ] = None,
    offline: Annotated[
        bool,
        typer.Option(
            "--offline", help="Hold the table's writes for the whole copy (one transaction)."
        ),
    ] = False,
) -> None:
    """Move a partition's rows to a shard server or a tablespace, verified.

    Online (the default): writes go on while the rows are copied and the changes made
    meanwhile are replayed; they wait only for two short locks (adding the change log, and
    the final check and swap). Reads always go on. With --offline, writes to its table wait
    until the move commits.
    """
    settings = settings_from(ctx)
    with lazy_progress(f"moving {partition}") as update:
        report = place(
            settings,
            partition,
            server=server,
            tablespace=tablespace,
            progress=update,
            online=not offline,
        )
    if report.online:
        how = (
            f"and verified row by row in {report.seconds:.1f} s; {report.caught_up:,} "
            f"changes written meanwhile were replayed; its locks held writes for at most "
            f"{report.held_s * 1000:.0f} ms"
        )
    else:
        how = f"and verified (checksum {report.checksum}) in {report.seconds:.1f} s"
    console.print(
        f"{report.partition}: {report.rows:,} rows moved from {report.source} to "
        f"{report.target} {how}",
        highlight=False,
    )
    if report.leftover:
        err_console.print(f"[yellow]note:[/yellow] {report.leftover}", highlight=False)


@app.command()
def check(ctx: typer.Context) -> None:
    """Count rows that reference a missing user or movie (exit 1 if there are any)."""
    orphans = check_references(settings_from(ctx))
    table = Table(box=box.SIMPLE_HEAD)
    for header in ("reference", "orphan rows"):
        table.add_column(header)
    for o in orphans:
        table.add_row(f"{o.child}.{o.column} -> {o.parent}", f"{o.rows:,}")
    console.print(table)
    if any(o.rows for o in orphans):
        err_console.print("[red]error:[/red] some rows reference nothing", highlight=False)
        raise typer.Exit(1)
