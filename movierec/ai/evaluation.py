"""Seeded splits and error metrics, kept outside the algorithms so every model is measured alike."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np

from movierec.ai.dataset import RatingsData
from movierec.ai.factors import Factors
from movierec.errors import BadInput


@dataclass(frozen=True)
class Metrics:
    """Hold-out errors of a model and of the global-mean baseline on the same ratings."""

    rmse: float
    mae: float
    baseline_rmse: float
    baseline_mae: float
    n_train: int
    n_test: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def holdout_split(n: int, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices ``(train, test)``: a random ``test_size`` share of ``n`` rows is held out.

    Raises :class:`BadInput` when ``test_size`` is not in (0, 1) or leaves a side empty.
    """
    if not 0 < test_size < 1:
        raise BadInput(f"test size must be between 0 and 1 (exclusive), not {test_size}")
    n_test = int(round(n * test_size))
    if n_test == 0 or n_test == n:
        raise BadInput(f"{n} rating(s) are too few to hold out {test_size:.0%} for evaluation")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def kfold(n: int, folds: int, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``folds`` pairs of row indices ``(train, test)``; every row is tested exactly once.

    Raises :class:`BadInput` when there are fewer rows than folds or fewer than two folds.
    """
    if folds < 2 or n < folds:
        raise BadInput(f"cannot cut {n} rating(s) into {folds} folds")
    order = np.random.default_rng(seed).permutation(n)
    for test in np.array_split(order, folds):
        mask = np.ones(n, dtype=bool)
        mask[test] = False
        yield np.flatnonzero(mask), np.sort(test)


def rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(predicted) - np.asarray(actual)) ** 2)))


def mae(predicted: np.ndarray, actual: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(predicted) - np.asarray(actual))))


def evaluate(
    factors: Factors, data: RatingsData, train_rows: np.ndarray, test_rows: np.ndarray
) -> Metrics:
    """Errors of ``factors`` (fitted on ``train_rows``) on ``test_rows``, clipped like surprise.

    The baseline predicts the training rows' mean rating for everything.
    """
    actual = data.ratings[test_rows].astype(np.float64)
    predicted = factors.estimate_pairs(data.user_index[test_rows], data.item_index[test_rows])
    baseline = np.full_like(actual, factors.global_mean)
    return Metrics(
        rmse=rmse(predicted, actual),
        mae=mae(predicted, actual),
        baseline_rmse=rmse(baseline, actual),
        baseline_mae=mae(baseline, actual),
        n_train=int(train_rows.shape[0]),
        n_test=int(test_rows.shape[0]),
    )
