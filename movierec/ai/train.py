"""Training: database ratings -> surprise SVD -> hold-out metrics -> a versioned artifact.

With ``test_size > 0`` the model is first fitted on a random ``1 - test_size`` share and scored
on the rest (RMSE, MAE, and the same for predicting the global mean, as a floor to beat). The
saved model is then refitted on *all* ratings with the same hyper-parameters: the held-out
ratings are often the only ones of new users, and serving a model that ignores a fifth of the
data to save one fit would be a bad trade. The hold-out error is thus a slightly pessimistic
estimate for the saved model. ``test_size=0`` skips the evaluation (one fit only).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import surprise
from surprise import SVD

from movierec.ai.artifact import ArtifactInfo, write_artifact
from movierec.ai.dataset import RatingsData, read_movie_genres, read_ratings, to_trainset
from movierec.ai.evaluation import Metrics, evaluate, holdout_split
from movierec.ai.factors import Factors
from movierec.ai.scorer import model_arrays
from movierec.db import Database
from movierec.errors import BadInput, ModelNotReady

ALGORITHM = "svd"
FORMAT = 1

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


@dataclass(frozen=True)
class TrainReport:
    artifact: ArtifactInfo
    metrics: Metrics | None
    n_users: int
    n_movies: int
    n_ratings: int
    train_seconds: float


def fit_svd(data: RatingsData, params: TrainParams, rows: np.ndarray | None = None) -> Factors:
    """Fit surprise's SVD on ``rows`` of ``data`` (all when None) and return its factors."""
    trainset = to_trainset(data, rows)
    algo = SVD(
        n_factors=params.factors,
        n_epochs=params.epochs,
        lr_all=params.lr,
        reg_all=params.reg,
        random_state=params.seed,
    )
    algo.fit(trainset)
    return Factors.from_svd(algo, trainset)


def holdout_metrics(
    data: RatingsData, params: TrainParams, progress: StageProgress | None = None
) -> Metrics:
    """Fit on a seeded random split and score on the held-out ratings.

    Raises :class:`BadInput` when the split leaves either side empty.
    """
    report = progress or _quiet
    train_rows, test_rows = holdout_split(data.n_ratings, params.test_size, params.seed)
    stage = f"fitting on {1 - params.test_size:.0%} for evaluation"
    report(stage, 0, 1)
    factors = fit_svd(data, params, train_rows)
    report(stage, 1, 1)
    return evaluate(factors, data, train_rows, test_rows)


def train_model(
    database: Database,
    model_dir: Path,
    params: TrainParams | None = None,
    progress: StageProgress | None = None,
) -> TrainReport:
    """Train on every rating in the database and write a new artifact to ``model_dir``.

    Raises :class:`ModelNotReady` when the database holds no rating, :class:`BadInput` for bad
    parameters, :class:`DatabaseUnavailable` when the database cannot be read.
    """
    params = (params or TrainParams()).check()
    report = progress or _quiet
    started = datetime.now(UTC)
    data = read_ratings(database, lambda done, total: report("reading ratings", done, total))
    if data.n_ratings == 0:
        raise ModelNotReady("the database has no ratings to train on; import or generate data")
    report("reading movie genres", 0, 1)
    genre_names, movie_genres = read_movie_genres(database, data.movie_ids)
    report("reading movie genres", 1, 1)
    metrics = holdout_metrics(data, params, report) if params.test_size > 0 else None
    report("fitting on all ratings", 0, 1)
    clock = time.perf_counter()
    factors = fit_svd(data, params)
    train_seconds = time.perf_counter() - clock
    report("fitting on all ratings", 1, 1)
    report("writing artifact", 0, 1)
    meta = {
        "algorithm": ALGORITHM,
        "library": f"scikit-surprise {surprise.__version__}",
        "format": FORMAT,
        "params": asdict(params),
        "n_users": data.n_users,
        "n_movies": data.n_items,
        "n_ratings": data.n_ratings,
        "metrics": metrics.as_dict() if metrics else None,
        "fitted_on": "all ratings",
        "trained_at": started.isoformat(timespec="seconds"),
        "train_seconds": round(train_seconds, 3),
    }
    arrays = model_arrays(factors, data, genre_names, movie_genres)
    info = write_artifact(Path(model_dir), ALGORITHM, arrays, meta, when=started)
    report("writing artifact", 1, 1)
    return TrainReport(info, metrics, data.n_users, data.n_items, data.n_ratings, train_seconds)


def _quiet(stage: str, done: int, total: int | None) -> None:
    return None
