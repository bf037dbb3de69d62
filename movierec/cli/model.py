"""``movierec model``: train recommendation models and inspect the saved versions."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich import box
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from movierec.ai import TrainParams, list_artifacts, read_artifact, train_model
from movierec.cli.common import console, err_console, settings_from
from movierec.db import Database

app = typer.Typer(
    help="Train recommendation models and inspect the saved versions.", no_args_is_help=True
)


@contextmanager
def _stage_progress() -> Iterator[Callable[[str, int, int | None], None]]:
    """Yield ``update(stage, done, total)``: a live line per training stage on a terminal, a
    plain "done" line per finished stage otherwise (logs, CI), nothing for a failed stage."""
    live = err_console.is_terminal
    columns = (
        SpinnerColumn(finished_text="[green]✓"),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err_console, disable=not live) as progress:
        tasks: dict[str, Any] = {}
        started: dict[str, float] = {}

        def finish_open_stages() -> None:
            for stage, task in tasks.items():
                if stage in started:
                    finished = progress.tasks[task].completed
                    progress.update(task, total=finished, completed=finished)
                    if not live:
                        seconds = time.monotonic() - started[stage]
                        err_console.print(f"{stage}: done in {seconds:.1f}s", highlight=False)
            started.clear()

        def update(stage: str, done: int, total: int | None) -> None:
            if stage not in tasks:
                finish_open_stages()  # a new stage means the earlier ones are over
                tasks[stage] = progress.add_task(stage, total=total)
                started[stage] = time.monotonic()
            progress.update(tasks[stage], completed=done, total=total)

        try:
            yield update
        except BaseException:
            progress.live.transient = True  # a failure is told in one line; no half-done bars
            raise
        finish_open_stages()


def _fmt(value: Any, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


@app.command()
def train(
    ctx: typer.Context,
    factors: Annotated[int, typer.Option(min=1, help="Latent factors per user and movie.")] = 100,
    epochs: Annotated[int, typer.Option(min=1, help="Passes of SGD over the ratings.")] = 20,
    lr: Annotated[float, typer.Option(min=0.0, help="Learning rate of every parameter.")] = 0.005,
    reg: Annotated[float, typer.Option(min=0.0, help="L2 regularisation of every term.")] = 0.02,
    test_size: Annotated[
        float, typer.Option(min=0.0, max=0.9, help="Share held out for evaluation; 0 skips it.")
    ] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed of the split and of the factor start.")] = 0,
) -> None:
    """Train an SVD model on every rating in the database and save it as a new version.

    The model is evaluated on a random hold-out share, then refitted on all ratings.
    """
    settings = settings_from(ctx)
    settings.require("database_url")
    params = TrainParams(factors, epochs, lr, reg, test_size, seed)
    database = Database(settings)
    try:
        with _stage_progress() as progress:
            report = train_model(database, settings.model_dir, params, progress)
    finally:
        database.dispose()
    console.print(
        f"saved model [bold]{report.artifact.version}[/bold] "
        f"({report.n_users} users, {report.n_movies} movies, {report.n_ratings} ratings; "
        f"final fit {report.train_seconds:.1f}s) in {report.artifact.path}",
        highlight=False,
    )
    metrics = report.metrics
    if metrics is None:
        console.print("evaluation skipped (--test-size 0)")
        return
    console.print(f"hold-out evaluation on {metrics.n_test} of {report.n_ratings} ratings:")
    table = Table()
    for column in ("model", "RMSE", "MAE"):
        table.add_column(column, justify="left" if column == "model" else "right")
    table.add_row("SVD", _fmt(metrics.rmse), _fmt(metrics.mae))
    table.add_row("global mean", _fmt(metrics.baseline_rmse), _fmt(metrics.baseline_mae))
    console.print(table)


@app.command("list")
def list_models(ctx: typer.Context) -> None:
    """List saved model versions, oldest first, with their hold-out metrics."""
    settings = settings_from(ctx)
    infos = list_artifacts(settings.model_dir)
    if not infos:
        console.print(f"no models in {settings.model_dir}; run `movierec model train`")
        return
    table = Table(title=f"models in {settings.model_dir}", box=box.SIMPLE_HEAD)
    headers = ("version", "users", "movies", "ratings", "factors", "RMSE", "baseline")
    table.add_column(headers[0], no_wrap=True)
    for header in headers[1:]:
        table.add_column(header, justify="right")
    for info in infos:
        meta, metrics = info.meta, info.meta.get("metrics") or {}
        params = meta.get("params", {})
        table.add_row(
            info.version,
            str(meta.get("n_users", "-")),
            str(meta.get("n_movies", "-")),
            str(meta.get("n_ratings", "-")),
            str(params.get("factors", "-")),
            _fmt(metrics.get("rmse")),
            _fmt(metrics.get("baseline_rmse")),
        )
    console.print(table)


@app.command()
def show(
    ctx: typer.Context,
    version: Annotated[str | None, typer.Argument(help="A version; the newest by default.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print meta.json as is.")] = False,
) -> None:
    """Show one model version's metadata: parameters, sizes, metrics, training time."""
    info = read_artifact(settings_from(ctx).model_dir, version)
    if as_json:
        console.print_json(json.dumps(info.meta))
        return
    table = Table(title=f"model {info.version}", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    for key, value in info.meta.items():
        if isinstance(value, dict):
            value = ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in value.items()
            )
        table.add_row(key, str(value))
    table.add_row("path", str(info.path))
    console.print(table)
