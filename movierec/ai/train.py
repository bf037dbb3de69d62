"""Training: ratings -> any algorithm -> hold-out metrics -> a versioned artifact.

With ``test_size > 0`` the model is first fitted on a held-out split and scored on the rest;
the saved model is then refitted on *all* ratings with the same hyper-parameters (the held-out
ratings are often the only ones of new users). Rating models are scored by RMSE/MAE on a
random share of all ratings (as before), ranking models by top-N metrics on each user's
latest ratings (a time-ordered hold-out per user: recommending the future from the past).
``test_size=0`` skips the evaluation (one fit only). Factor models (SVD and the like, ALS) of
more than ``ann_min_items`` movies get an ANN index beside their arrays (:mod:`movierec.ai.ann`).
:func:`train_with_spark` fits ALS on Spark MLlib from a Parquet snapshot of the ratings into the
same artifact (:mod:`movierec.ai.spark_als`, imported only then).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from movierec.ai import ann
from movierec.ai.algorithms import RANKING, Algorithm, Fitted, choose_ranking_algo, get_algorithm
from movierec.ai.algorithms.rating import FittedFactors
from movierec.ai.artifact import ArtifactInfo, write_artifact
from movierec.ai.dataset import RatingsData, read_movie_info, read_ratings, user_item_matrix
from movierec.ai.evaluation import (
    Metrics,
    TopN,
    holdout_split,
    mae,
    per_user_split,
    rmse,
    top_n_metrics,
)
from movierec.ai.factors import Factors
from movierec.ai.scorer import common_arrays, model_arrays
from movierec.config import Settings
from movierec.db import Database
from movierec.errors import BadInput, ModelNotReady

ALGORITHM = "svd"
FORMAT = 2
TOP_K = 10

# progress(stage, done, total): a stage starts with done=0 and ends with done == total.
StageProgress = Callable[[str, int, int | None], None]


@dataclass(frozen=True)
class TrainParams:
    """Hyper-parameters of surprise's SVD (its defaults) and of the hold-out evaluation."""

    factors: int = 100
    epochs: int = 20
    lr: float = 0.005
    reg: float = 0.02
    test_size: float = 0.2
    seed: int = 0

    def check(self) -> TrainParams:
        """Return self; raises :class:`BadInput` naming every out-of-range parameter."""
        problems = []
        if self.factors < 1:
            problems.append("factors must be at least 1")
        if self.epochs < 1:
            problems.append("epochs must be at least 1")
        if not self.lr > 0:
            problems.append("lr must be positive")
        if self.reg < 0:
            problems.append("reg must not be negative")
        if not 0 <= self.test_size < 1:
            problems.append("test size must be at least 0 and below 1")
        if problems:
            raise BadInput("bad training parameters: " + "; ".join(problems))
        return self

    def algo_params(self) -> dict[str, Any]:
        return {"factors": self.factors, "epochs": self.epochs, "lr": self.lr, "reg": self.reg}


@dataclass(frozen=True)
class TrainReport:
    artifact: ArtifactInfo
    metrics: Metrics | None
    n_users: int
    n_movies: int
    n_ratings: int
    train_seconds: float
    top_n: TopN | None = None
    algo: str = ALGORITHM
    kind: str = "rating"
    # The most-rated movies (the popularity algorithm) on the same hold-out: the yardstick.
    baseline_top_n: TopN | None = None


def fit_svd(data: RatingsData, params: TrainParams, rows: np.ndarray | None = None) -> Factors:
    """Fit surprise's SVD on ``rows`` of ``data`` (all when None) and return its factors."""
    fitted = get_algorithm("svd").fit(data, rows, params.algo_params(), params.seed)
    assert isinstance(fitted, FittedFactors)
    return fitted.factors


def rating_metrics(
    data: RatingsData, algo: str, params: Mapping[str, Any], test_size: float, seed: int
) -> Metrics:
    """Fit on a seeded random split of all ratings and score RMSE/MAE on the rest.

    Raises :class:`BadInput` when the split leaves either side empty.
    """
    train_rows, test_rows = holdout_split(data.n_ratings, test_size, seed)
    fitted = get_algorithm(algo).fit(data, train_rows, params, seed)
    actual = data.ratings[test_rows].astype(np.float64)
    predicted = fitted.estimate_pairs(data.user_index[test_rows], data.item_index[test_rows])
    mean = float(data.ratings[train_rows].mean())
    baseline = np.full_like(actual, mean)
    return Metrics(
        rmse=rmse(predicted, actual),
        mae=mae(predicted, actual),
        baseline_rmse=rmse(baseline, actual),
        baseline_mae=mae(baseline, actual),
        n_train=int(train_rows.shape[0]),
        n_test=int(test_rows.shape[0]),
    )


def time_split(data: RatingsData, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each user's latest ``test_size`` share held out (random per user without timestamps)."""
    return per_user_split(data.user_index, test_size, seed, data.timestamps)


def ranking_metrics(
    data: RatingsData,
    algo: str | Algorithm,
    params: Mapping[str, Any],
    split: tuple[np.ndarray, np.ndarray],
    seed: int,
    k: int = TOP_K,
) -> TopN:
    """Top-``k`` metrics of ``algo`` fitted on ``split[0]`` and measured on ``split[1]``."""
    train_rows, test_rows = split
    algorithm = algo if isinstance(algo, Algorithm) else get_algorithm(algo)
    fitted = algorithm.fit(data, train_rows, params, seed)
    return score_top_n(fitted, data, train_rows, test_rows, k)


def score_top_n(
    fitted: Fitted, data: RatingsData, train_rows: np.ndarray, test_rows: np.ndarray, k: int
) -> TopN:
    seen = user_item_matrix(data, train_rows, "rating")
    held = user_item_matrix(data, test_rows, "binary")
    return top_n_metrics(lambda users: fitted.score_users(users, seen), seen, held, k)


def popularity_baseline(
    data: RatingsData, split: tuple[np.ndarray, np.ndarray], seed: int, k: int = TOP_K
) -> TopN:
    """Top-``k`` metrics of recommending the most-rated movies, on ``split``: what a ranking
    model's hold-out numbers are read against (it costs a count per movie)."""
    popularity = get_algorithm("popularity")
    return ranking_metrics(data, popularity, popularity.resolve(None), split, seed, k)


def resolve_algo(
    name: str | None,
    n_items: int,
    ease_max_items: int | None = None,
    sansa_max_items: int | None = None,
) -> str:
    """``auto`` (or None) becomes ``easeals``, ``sansaals`` or ``als`` by catalogue size
    (:func:`choose_ranking_algo`; a limit left None is its default); others are checked.
    Raises :class:`BadInput` for an unknown name."""
    if name in (None, "", "auto"):
        limits = {"max_items": ease_max_items, "sansa_max_items": sansa_max_items}
        return choose_ranking_algo(n_items, **{k: v for k, v in limits.items() if v is not None})
    return get_algorithm(name).name


def train_on_data(
    data: RatingsData,
    model_dir: Path,
    algo: str | Algorithm,
    params: Mapping[str, Any] | None = None,
    *,
    test_size: float = 0.2,
    seed: int = 0,
    genre_names: np.ndarray | None = None,
    movie_genres: np.ndarray | None = None,
    progress: StageProgress | None = None,
    extra_meta: Mapping[str, Any] | None = None,
    ann_min_items: int = ann.MIN_ITEMS,
) -> TrainReport:
    """Evaluate ``algo`` (a name, or an algorithm object such as the Spark trainer) unless
    ``test_size`` is 0, fit it on all of ``data``, write a version (with an ANN index when it
    is a factor model of more than ``ann_min_items`` movies).

    Raises :class:`BadInput` for an unknown algorithm, bad parameters or a too-small split,
    :class:`ModelNotReady` when ``data`` holds no rating.
    """
    if data.n_ratings == 0:
        raise ModelNotReady("the database has no ratings to train on; import or generate data")
    if not 0 <= test_size < 1:
        raise BadInput("bad training parameters: test size must be at least 0 and below 1")
    algorithm = algo if isinstance(algo, Algorithm) else get_algorithm(algo)
    resolved = algorithm.resolve(params)
    report = progress or _quiet
    started = datetime.now(UTC)
    metrics: Metrics | None = None
    top_n = baseline_top_n = None
    if test_size > 0:
        if algorithm.kind == RANKING:
            stage = f"fitting {algorithm.name} without each user's latest {test_size:.0%}"
            report(stage, 0, 1)
            split = time_split(data, test_size, seed)
            top_n = ranking_metrics(data, algorithm, resolved, split, seed)
            baseline_top_n = popularity_baseline(data, split, seed)
        else:
            stage = f"fitting {algorithm.name} on {1 - test_size:.0%} for evaluation"
            report(stage, 0, 1)
            metrics = rating_metrics(data, algorithm.name, resolved, test_size, seed)
        report(stage, 1, 1)
    report("fitting on all ratings", 0, 1)
    clock = time.perf_counter()
    fitted = algorithm.fit(data, None, resolved, seed)
    train_seconds = time.perf_counter() - clock
    report("fitting on all ratings", 1, 1)
    if isinstance(fitted, FittedFactors):
        arrays = model_arrays(fitted.factors, data, genre_names, movie_genres)
    else:
        arrays = {**common_arrays(data, genre_names, movie_genres), **fitted.arrays()}
    files, ann_meta = {}, None
    biased = bool(fitted.meta().get("biased", True))
    vectors = (
        ann.item_vectors(fitted.form, arrays, biased) if data.n_items > ann_min_items else None
    )
    if vectors is not None:
        report("building the ANN index", 0, 1)
        clock = time.perf_counter()
        index = ann.build_index(vectors, seed)
        ann_meta = ann.describe(index, time.perf_counter() - clock)
        files[ann.ANN_FILE] = lambda path: ann.write_index(index, path)
        report("building the ANN index", 1, 1)
    report("writing artifact", 0, 1)
    meta = {
        "algorithm": algorithm.name,
        "kind": algorithm.kind,
        "form": fitted.form,
        "library": algorithm.library,
        "format": FORMAT,
        "params": {**resolved, "test_size": test_size, "seed": seed},
        **fitted.meta(),
        "n_users": data.n_users,
        "n_movies": data.n_items,
        "n_ratings": data.n_ratings,
        "metrics": metrics.as_dict() if metrics else None,
        "top_n": top_n.as_dict() if top_n else None,
        "baseline_top_n": baseline_top_n.as_dict() if baseline_top_n else None,
        "evaluation": "time-ordered hold-out per user" if top_n else "random hold-out",
        "fitted_on": "all ratings",
        "trained_at": started.isoformat(timespec="seconds"),
        "train_seconds": round(train_seconds, 3),
        "ann": ann_meta,
        **(extra_meta or {}),
    }
    info = write_artifact(Path(model_dir), algorithm.name, arrays, meta, when=started, files=files)
    report("writing artifact", 1, 1)
    return TrainReport(
        info, metrics, data.n_users, data.n_items, data.n_ratings, train_seconds, top_n,
        algorithm.name, algorithm.kind, baseline_top_n,
    )  # fmt: skip


def read_training_data(
    database: Database, progress: StageProgress | None = None
) -> tuple[RatingsData, np.ndarray, np.ndarray]:
    """Ratings (carrying movie genres and years), genre names and the movie-genre matrix from
    the database.

    Raises :class:`ModelNotReady` when there is no rating, :class:`DatabaseUnavailable`.
    """
    report = progress or _quiet
    data = read_ratings(database, lambda done, total: report("reading ratings", done, total))
    if data.n_ratings == 0:
        raise ModelNotReady("the database has no ratings to train on; import or generate data")
    return with_movie_info(database, data, report)


def with_movie_info(
    database: Database, data: RatingsData, report: StageProgress
) -> tuple[RatingsData, np.ndarray, np.ndarray]:
    """``data`` carrying its movies' genres and years, the genre names and the movie-genre
    matrix, read from the database. Raises :class:`DatabaseUnavailable`."""
    report("reading movie genres", 0, 1)
    genre_names, movie_genres, years = read_movie_info(database, data.movie_ids)
    data = data.with_movie_info(genre_names, movie_genres, years)
    report("reading movie genres", 1, 1)
    return data, genre_names, movie_genres


def algorithm_params(
    name: str,
    given: Mapping[str, Any] | None = None,
    params: TrainParams | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """``name``'s hyper-parameters, later ones winning: SVD's from ``params`` when given
    (``--factors``, ``--epochs``, ``--lr``, ``--reg``), the ``algo_params`` setting, then
    ``given``. One merge for every caller: the CLI's and :func:`train_model`'s had drifted
    apart (the library dropped ``params`` when SVD was named with parameters)."""
    merged: dict[str, Any] = {}
    if name == ALGORITHM and params is not None:
        merged |= params.algo_params()
    if settings is not None:
        merged |= dict(settings.algo_params.get(name, {}))
    return merged | dict(given or {})


def train_model(
    database: Database,
    model_dir: Path,
    params: TrainParams | None = None,
    progress: StageProgress | None = None,
    *,
    algo: str | None = None,
    algo_params: Mapping[str, Any] | None = None,
    ease_max_items: int | None = None,
    sansa_max_items: int | None = None,
    ann_min_items: int = ann.MIN_ITEMS,
) -> TrainReport:
    """Train on every rating in the database and write a new artifact to ``model_dir``.

    Without ``algo`` this is surprise's SVD; ``algo="auto"`` picks the EASE + ALS blend, the
    SANSA + ALS blend or ALS by catalogue size (:func:`resolve_algo`). Hyper-parameters:
    :func:`algorithm_params` (of ``params`` and ``algo_params``); ``params`` always supplies
    ``test_size`` and ``seed``.
    Raises :class:`ModelNotReady` when the database holds no rating, :class:`BadInput` for bad
    parameters, :class:`DatabaseUnavailable` when the database cannot be read.
    """
    params = (params or TrainParams()).check()
    data, genre_names, movie_genres = read_training_data(database, progress)
    name = resolve_algo(algo or ALGORITHM, data.n_items, ease_max_items, sansa_max_items)
    return train_on_data(
        data,
        model_dir,
        name,
        algorithm_params(name, algo_params, params),
        test_size=params.test_size,
        seed=params.seed,
        genre_names=genre_names,
        movie_genres=movie_genres,
        progress=progress,
        ann_min_items=ann_min_items,
    )


def train_models(
    database: Database,
    settings: Settings,
    params: TrainParams | None = None,
    progress: StageProgress | None = None,
    *,
    algo: str | None = None,
    algo_params: Mapping[str, Any] | None = None,
) -> list[TrainReport]:
    """``algo``'s model (``auto``: the ``ranking_algo`` setting); without one, the models the
    site serves, as the demo trains them: the ranking model (``ranking_algo``) that picks
    recommendations, then the rating model (``rating_algo``) that predicts stars, from one
    read of the ratings. Writes into ``settings.model_dir``; promotes nothing.

    Raises :class:`BadInput` for ``algo_params`` without ``algo`` (the two models take
    different parameters) and what :func:`train_model` raises.
    """
    if algo is None and algo_params:
        raise BadInput("algorithm parameters need an algorithm: name one (--algo)")
    params = (params or TrainParams()).check()
    wanted = [algo] if algo else [settings.ranking_algo, settings.rating_algo]
    data, genre_names, movie_genres = read_training_data(database, progress)
    reports = []
    for chosen in wanted:
        chosen = settings.ranking_algo if chosen == "auto" else chosen
        name = resolve_algo(chosen, data.n_items, settings.ease_max_items, settings.sansa_max_items)
        given = algorithm_params(name, algo_params, params, settings)
        reports.append(
            train_on_data(
                data,
                settings.model_dir,
                name,
                given,
                test_size=params.test_size,
                seed=params.seed,
                genre_names=genre_names,
                movie_genres=movie_genres,
                progress=progress,
                ann_min_items=settings.ann_min_items,
            )  # fmt: skip
        )
    return reports


ENGINES = ("local", "spark")


def snapshot_dir(settings: Settings) -> Path:
    """Where `--engine spark` writes its ratings snapshot: ``spark_snapshot_dir``, else
    ``state_dir/snapshots``."""
    return Path(settings.spark_snapshot_dir or Path(settings.state_dir) / "snapshots")


def train_with_spark(
    database: Database,
    model_dir: Path,
    params: TrainParams | None = None,
    progress: StageProgress | None = None,
    *,
    algo: str | None = None,
    algo_params: Mapping[str, Any] | None = None,
    master: str = "local[*]",
    snapshot_dir: Path,
    ann_min_items: int = ann.MIN_ITEMS,
) -> TrainReport:
    """Export every rating as a Parquet snapshot into ``snapshot_dir``, fit ALS on Spark MLlib
    (``master``: ``local[*]`` or a cluster's URL) and write the artifact the one-machine ALS
    writes (form ``als``; ``engine``, ``snapshot`` and ``spark_master`` in its metadata).

    Raises :class:`BadInput` for an algorithm other than ALS (``auto`` means ALS here), bad
    parameters or when pyspark or pyarrow is not installed; :class:`ModelNotReady` when the
    database holds no rating; :class:`DatabaseUnavailable`.
    """
    if algo not in (None, "", "auto", "als"):
        raise BadInput(f"the spark engine trains als (Spark MLlib's ALS), not {algo!r}")
    try:
        from movierec.ai.spark_als import SparkAls  # pyspark: only when asked for
    except ImportError as exc:
        raise BadInput(
            "the spark engine needs pyspark: install movierec with its spark extra "
            "(pip install -e '.[spark]') and a Java 17 runtime"
        ) from exc
    from movierec.ai.snapshot import export_ratings, read_snapshot

    params = (params or TrainParams()).check()
    report = progress or _quiet
    path = export_ratings(
        database, snapshot_dir, lambda done, total: report("exporting ratings", done, total)
    )
    data, genre_names, movie_genres = with_movie_info(database, read_snapshot(path), report)
    return train_on_data(
        data, model_dir, SparkAls(path, master), algo_params, test_size=params.test_size,
        seed=params.seed, genre_names=genre_names, movie_genres=movie_genres,
        progress=progress, ann_min_items=ann_min_items,
        extra_meta={"engine": "spark", "snapshot": str(path), "spark_master": master},
    )  # fmt: skip


def _quiet(stage: str, done: int, total: int | None) -> None:
    return None
