"""``movierec model``: train, evaluate, tune, promote, roll back and refresh models."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
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

from movierec.ai import TrainParams, list_artifacts, read_artifact
from movierec.ai.algorithms import ALGORITHMS, RANKING, get_algorithm
from movierec.ai.artifact import update_meta
from movierec.ai.compare import evaluate_algorithms, parse_grid, write_chart
from movierec.ai.compare import tune as tune_grid
from movierec.ai.dataset import read_movielens
from movierec.ai.refresh import RefreshReport, refresh_every
from movierec.ai.refresh import refresh as refresh_model
from movierec.ai.registry import history, kind_of, live_version
from movierec.ai.registry import promote as promote_version
from movierec.ai.registry import rollback as rollback_kind
from movierec.ai.train import (
    ENGINES,
    TrainReport,
    algorithm_params,
    read_training_data,
    resolve_algo,
    snapshot_dir,
    train_models,
    train_on_data,
    train_with_spark,
)
from movierec.cli import model_report
from movierec.cli.common import console, err_console, settings_from
from movierec.config import Settings
from movierec.db import Database
from movierec.errors import BadInput, MovierecError

app = typer.Typer(
    help="Train, evaluate, tune, promote, roll back and refresh recommendation models.",
    no_args_is_help=True,
)
app.command("report")(model_report.report)
DEFAULT_EVAL = ("svd", "nmf", "baselineonly", "ease", "als")
DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*([smhd]?)$")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


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


def _params(specs: list[str] | None) -> dict[str, str]:
    """``["lam=300", "rating_weight=0"]`` -> dict. Raises :class:`BadInput`."""
    found = {}
    for spec in specs or []:
        name, sep, value = spec.partition("=")
        if not sep or not name.strip():
            raise BadInput(f"--param {spec!r} must look like name=value")
        found[name.strip()] = value.strip()
    return found


def _load(settings: Settings, dataset: tuple[str, str] | None, progress=None):
    """``(data, genre_names, movie_genres, label)`` from MovieLens files or the database."""
    if dataset and dataset[0]:
        source, path = dataset
        if source.lower() != "movielens":
            raise BadInput(f"--dataset knows only 'movielens PATH', not {source!r}")
        return read_movielens(Path(path)), None, None, f"MovieLens {path}"
    settings.require("database_url")
    database = Database(settings)
    try:
        data, names, genres = read_training_data(database, progress)
    finally:
        database.dispose()
    return data, names, genres, "database"


def _duration(text: str) -> float:
    found = DURATION.match(text.strip().lower())
    if not found:
        raise BadInput(f"--every {text!r} must look like 90s, 15m, 1h or 1d")
    return float(found.group(1)) * UNITS[found.group(2)]


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
    algo: Annotated[
        str | None,
        typer.Option(
            help=f"Algorithm: {', '.join(ALGORITHMS)}, or auto (chosen by size). Default: "
            "the two models the site serves (ranking_algo, then rating_algo)."
        ),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="Hyper-parameter name=value (repeatable)."),
    ] = None,
    promote: Annotated[bool, typer.Option(help="Make the new version live for its kind.")] = True,
    engine: Annotated[
        str,
        typer.Option(
            help="local, or spark: ALS on Spark MLlib (spark_master) from a Parquet "
            "snapshot of the ratings (spark_snapshot_dir)."
        ),
    ] = "local",  # fmt: skip
) -> None:
    """Train on every rating in the database and save each model as a new version: with
    no --algo, the ranking model (recommendations) and the rating model (predicted stars)
    the site serves.

    Each model is evaluated on a hold-out share, then refitted on all ratings. --factors,
    --epochs, --lr and --reg are SVD's; other algorithms take --param name=value (with
    --algo) and the algo_params setting. `movierec model params` lists every algorithm's
    parameters.
    """
    settings = settings_from(ctx)
    settings.require("database_url")
    if engine not in ENGINES:
        raise BadInput(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    params = TrainParams(factors, epochs, lr, reg, test_size, seed)
    cli = _params(param)
    database = Database(settings)
    try:
        with _stage_progress() as progress:
            if engine == "spark":
                reports = [
                    train_with_spark(
                        database,
                        settings.model_dir,
                        params,
                        progress,
                        algo=algo,
                        algo_params=algorithm_params("als", cli, settings=settings),
                        master=settings.spark_master,
                        ann_min_items=settings.ann_min_items,
                        snapshot_dir=snapshot_dir(settings),
                    )  # fmt: skip
                ]
            else:
                reports = train_models(
                    database, settings, params, progress, algo=algo, algo_params=cli
                )
    finally:
        database.dispose()
    for report in reports:
        if promote:
            promote_version(settings.model_dir, report.artifact.version)
        _print_trained(report, test_size, promote)


def _print_trained(report: TrainReport, test_size: float, promoted: bool) -> None:
    console.print(
        f"saved model [bold]{report.artifact.version}[/bold] "
        f"({report.n_users} users, {report.n_movies} movies, {report.n_ratings} ratings; "
        f"final fit {report.train_seconds:.1f}s) in {report.artifact.path}",
        highlight=False,
    )
    if promoted:
        console.print(f"live {report.kind} model: {report.artifact.version}", highlight=False)
    if report.top_n is not None:
        t = report.top_n
        console.print(
            f"each user's latest {test_size:.0%} held out ({t.n_users} users): "
            f"NDCG@{t.k} {t.ndcg:.4f}, precision {t.precision:.4f}, recall {t.recall:.4f}, "
            f"MAP {t.map:.4f}",
            highlight=False,
        )
        return
    metrics = report.metrics
    if metrics is None:
        console.print("evaluation skipped (--test-size 0)")
        return
    console.print(f"hold-out evaluation on {metrics.n_test} of {report.n_ratings} ratings:")
    table = Table()
    for column in ("model", "RMSE", "MAE"):
        table.add_column(column, justify="left" if column == "model" else "right")
    table.add_row(report.algo.upper(), _fmt(metrics.rmse), _fmt(metrics.mae))
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
    headers = ("version", "kind", "live", "users", "movies", "ratings", "RMSE", "NDCG@10")
    table.add_column(headers[0], no_wrap=True)
    for header in headers[1:]:
        table.add_column(header, justify="right")
    live = {live_version(settings.model_dir, kind) for kind in ("ranking", "rating")}
    for info in infos:
        meta, metrics = info.meta, info.meta.get("metrics") or {}
        top_n = meta.get("top_n") or {}
        table.add_row(
            info.version,
            kind_of(meta),
            "●" if info.version in live else "",
            str(meta.get("n_users", "-")),
            str(meta.get("n_movies", "-")),
            str(meta.get("n_ratings", "-")),
            _fmt(metrics.get("rmse")),
            _fmt(top_n.get("ndcg")),
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


@app.command()
def params() -> None:
    """List every algorithm with its kind and hyper-parameters (name=default)."""
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("algorithm", "kind", "parameters", "what"):
        table.add_column(column)
    for algo in ALGORITHMS.values():
        shown = ", ".join(f"{p.name}={p.default}" for p in algo.params) or "-"
        table.add_row(algo.name, algo.kind, shown, algo.summary)
    console.print(table)


@app.command()
def promote(
    ctx: typer.Context, version: Annotated[str, typer.Argument(help="The version to serve.")]
) -> None:
    """Make a version live for its kind; servers switch within their reload interval."""
    info = promote_version(settings_from(ctx).model_dir, version)
    console.print(f"live {kind_of(info.meta)} model: {info.version}", highlight=False)


@app.command()
def rollback(
    ctx: typer.Context,
    kind: Annotated[str, typer.Option(help="ranking or rating.")] = "ranking",
) -> None:
    """Serve the previously live version of a kind again."""
    version = rollback_kind(settings_from(ctx).model_dir, kind)
    console.print(f"live {kind} model: {version} (rolled back)", highlight=False)


@app.command()
def live(ctx: typer.Context) -> None:
    """Show the live version of each kind and the earlier ones a rollback would return to."""
    model_dir = settings_from(ctx).model_dir
    for kind in ("ranking", "rating"):
        versions = history(model_dir, kind)
        shown = " ← ".join(versions) if versions else "none (servers use the newest)"
        console.print(f"{kind}: {shown}", highlight=False)


def _print_refresh(report: RefreshReport | MovierecError) -> None:
    if isinstance(report, MovierecError):
        err_console.print(f"[red]refresh failed:[/red] {report}", highlight=False)
        return
    verdict = "promoted" if report.promoted else "not promoted"
    console.print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M:%SZ} {report.candidate.version}: {verdict} "
        f"({report.reason})",
        highlight=False,
    )


@app.command()
def refresh(
    ctx: typer.Context,
    kind: Annotated[str, typer.Option(help="ranking or rating.")] = "ranking",
    algo: Annotated[
        str | None, typer.Option(help="Default: the ranking_algo/rating_algo setting.")
    ] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="name=value.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Promote even if worse.")] = False,
    every: Annotated[
        str | None, typer.Option(help="Repeat forever, e.g. 1h (default: the setting, or once).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the hold-out split.")] = 0,
) -> None:
    """Retrain, compare with the live model on the same hold-out, promote if no worse."""
    settings = settings_from(ctx)
    if kind not in ("ranking", "rating"):
        raise BadInput(f"--kind must be ranking or rating, not {kind!r}")
    cli = _params(param)

    def once() -> RefreshReport:
        data, names, genres, _ = _load(settings, None)
        wanted = algo or (settings.ranking_algo if kind == RANKING else settings.rating_algo)
        name = resolve_algo(wanted, data.n_items, settings.ease_max_items, settings.sansa_max_items)
        if get_algorithm(name).kind != kind:
            raise BadInput(f"{name} is a {get_algorithm(name).kind} algorithm, not {kind}")
        given = algorithm_params(name, cli, settings=settings)
        return refresh_model(
            data, settings.model_dir, name, given, force=force, seed=seed, genre_names=names,
            movie_genres=genres, ann_min_items=settings.ann_min_items,
        )  # fmt: skip

    interval = _duration(every) if every else settings.model_refresh_interval
    if not interval:
        _print_refresh(once())
        return
    console.print(f"refreshing the {kind} model every {interval:.0f}s; Ctrl-C stops")
    try:
        refresh_every(interval, once, _print_refresh)
    except KeyboardInterrupt:
        console.print("stopped")


def _dataset_option():
    return typer.Option(
        help="'movielens PATH' reads a MovieLens ratings file instead of the database."
    )


@app.command()
def evaluate(
    ctx: typer.Context,
    algo: Annotated[
        list[str] | None, typer.Option(help="Algorithms to compare (repeatable; comma lists).")
    ] = None,
    dataset: Annotated[tuple[str, str], _dataset_option()] = ("", ""),
    folds: Annotated[int, typer.Option(min=2, help="Folds of the RMSE/MAE CV.")] = 5,
    k: Annotated[int, typer.Option(min=1, max=100, help="List length of top-N.")] = 10,
    test_size: Annotated[
        float, typer.Option(min=0.05, max=0.9, help="Each user's latest share held out.")
    ] = 0.2,
    chart: Annotated[Path | None, typer.Option(help="PNG path (default under state_dir).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of folds and splits.")] = 0,
) -> None:
    """Compare algorithms: k-fold RMSE/MAE and top-N on a time-ordered hold-out per user.

    Prints a table, writes a PNG chart, and (on database data) stores the results in the live
    models' metadata.
    """
    settings = settings_from(ctx)
    names = [a.strip() for spec in (algo or DEFAULT_EVAL) for a in spec.split(",") if a.strip()]
    with _stage_progress() as progress:
        data, _, _, label = _load(settings, dataset, progress)
        results = evaluate_algorithms(
            data, names, {n: algorithm_params(n, settings=settings) for n in ALGORITHMS}, folds,
            test_size, k, seed, progress,
        )  # fmt: skip
    table = Table(
        title=f"{label}: {data.n_ratings} ratings; RMSE/MAE {folds}-fold, top-{k} on each "
        f"user's latest {test_size:.0%}",
        box=box.SIMPLE_HEAD,
    )
    columns = ("algorithm", "kind", "RMSE", "MAE", f"P@{k}", f"R@{k}", f"NDCG@{k}", f"MAP@{k}",
               "coverage", "novelty", "fit s")  # fmt: skip
    table.add_column(columns[0], no_wrap=True, min_width=12)
    for column in columns[1:]:
        table.add_column(column, justify="left" if column == "kind" else "right")
    summaries = [r.summary() for r in results]
    for s in summaries:
        t = s["top_n"] or {}
        table.add_row(
            s["algo"], s["kind"], _fmt(s["rmse"]), _fmt(s["mae"]), _fmt(t.get("precision")),
            _fmt(t.get("recall")), _fmt(t.get("ndcg")), _fmt(t.get("map")),
            _fmt(t.get("coverage"), 3), _fmt(t.get("novelty"), 2), _fmt(s["fit_seconds"], 2),
        )  # fmt: skip
    console.print(table)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = write_chart(results, chart or settings.state_dir / f"evaluation-{stamp}.png", label)
    console.print(f"chart: {path}", highlight=False)
    if label == "database":
        report = {"at": stamp, "folds": folds, "k": k, "test_size": test_size,
                  "results": summaries, "chart": str(path)}  # fmt: skip
        for kind in ("ranking", "rating"):
            version = live_version(settings.model_dir, kind)
            if version:
                update_meta(settings.model_dir, version, {"evaluation_report": report})
                console.print(f"stored in {version}/meta.json", highlight=False)


@app.command()
def tune(
    ctx: typer.Context,
    algo: Annotated[str, typer.Option(help="The algorithm to tune.")] = "svd",
    grid: Annotated[
        list[str] | None, typer.Option(help="name=v1,v2 (repeatable); default: a small grid.")
    ] = None,
    dataset: Annotated[tuple[str, str], _dataset_option()] = ("", ""),
    folds: Annotated[int, typer.Option(min=2, help="CV folds (rating algorithms).")] = 3,
    seed: Annotated[int, typer.Option(help="Seed of folds and splits.")] = 0,
    save: Annotated[
        bool, typer.Option(help="Train the best on the data and save (and promote) it.")
    ] = False,
) -> None:
    """Grid search with cross-validation (RMSE) or the time-ordered hold-out (NDCG@10)."""
    settings = settings_from(ctx)
    name = get_algorithm(algo).name
    defaults = {
        "svd": ["epochs=20,40", "lr=0.005,0.01", "reg=0.02,0.05,0.1"],
        "ease": ["lam=400,700,1000,1500", "rating_weight=0,0.2"],
        "als": ["factors=32,64,128", "alpha=1,2,5"],
    }
    specs = grid or defaults.get(name)
    if not specs:
        raise BadInput(f"give --grid name=v1,v2 for {name}")
    with _stage_progress() as progress:
        data, names, genres, label = _load(settings, dataset, progress)
        progress(f"tuning {name}", 0, 1)
        ranked = tune_grid(data, name, parse_grid(specs), folds, seed)
        progress(f"tuning {name}", 1, 1)
    metric = "NDCG@10" if get_algorithm(name).kind == RANKING else f"RMSE ({folds}-fold)"
    table = Table(title=f"{name} on {label}", box=box.SIMPLE_HEAD)
    table.add_column("parameters")
    table.add_column(metric, justify="right")
    for combo, score in ranked:
        table.add_row(", ".join(f"{k}={v}" for k, v in combo.items()), _fmt(score))
    console.print(table)
    best = ranked[0][0]
    console.print("best: " + " ".join(f"--param {k}={v}" for k, v in best.items()), highlight=False)
    if save:
        report = train_on_data(
            data, settings.model_dir, name, algorithm_params(name, best, settings=settings),
            genre_names=names, movie_genres=genres, seed=seed,
            ann_min_items=settings.ann_min_items,
        )  # fmt: skip
        promote_version(settings.model_dir, report.artifact.version)
        console.print(f"saved and promoted {report.artifact.version}", highlight=False)
