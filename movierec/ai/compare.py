"""Comparing algorithms on one data set: k-fold RMSE/MAE, top-N on a time-ordered hold-out,
grid search, and a PNG chart. Used by ``movierec model evaluate|tune`` and the bench.

The k-fold protocol is surprise's ``cross_validate``: ratings shuffled with a seed, cut into
``folds`` parts, each part tested once on a model fitted on the others.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from movierec.ai.algorithms import RANKING, get_algorithm
from movierec.ai.dataset import RatingsData
from movierec.ai.evaluation import TopN, kfold, mae, rmse
from movierec.ai.train import score_top_n, time_split
from movierec.errors import BadInput

Progress = Callable[[str, int, int | None], None]


@dataclass
class AlgoResult:
    """One algorithm's numbers; ``None`` where a protocol does not apply."""

    algo: str
    kind: str
    params: dict[str, Any]
    rmse: list[float] = field(default_factory=list)
    mae: list[float] = field(default_factory=list)
    fit_seconds: list[float] = field(default_factory=list)
    top_n: TopN | None = None
    note: str = ""

    def summary(self) -> dict[str, Any]:
        def mean(values):
            return round(statistics.mean(values), 4) if values else None

        return {
            "algo": self.algo,
            "kind": self.kind,
            "params": self.params,
            "rmse": mean(self.rmse),
            "mae": mean(self.mae),
            "rmse_std": round(statistics.pstdev(self.rmse), 4) if len(self.rmse) > 1 else None,
            "fit_seconds": mean(self.fit_seconds),
            "top_n": self.top_n.as_dict() if self.top_n else None,
            "note": self.note,
        }


def cross_validate(
    data: RatingsData, algo: str, params: Mapping[str, Any], folds: int, seed: int
) -> AlgoResult:
    """k-fold RMSE/MAE of a rating algorithm. Raises :class:`BadInput` for a ranking one."""
    algorithm = get_algorithm(algo)
    if algorithm.kind == RANKING:
        raise BadInput(f"{algo} ranks movies and predicts no ratings")
    resolved = algorithm.resolve(params)
    result = AlgoResult(algorithm.name, algorithm.kind, resolved)
    for fold, (train_rows, test_rows) in enumerate(kfold(data.n_ratings, folds, seed)):
        clock = time.perf_counter()
        fitted = algorithm.fit(data, train_rows, resolved, seed + fold)
        result.fit_seconds.append(time.perf_counter() - clock)
        predicted = fitted.estimate_pairs(data.user_index[test_rows], data.item_index[test_rows])
        actual = data.ratings[test_rows].astype(np.float64)
        result.rmse.append(rmse(predicted, actual))
        result.mae.append(mae(predicted, actual))
    return result


def evaluate_algorithms(
    data: RatingsData,
    algos: Sequence[str],
    params: Mapping[str, Mapping[str, Any]] | None = None,
    folds: int = 5,
    test_size: float = 0.2,
    k: int = 10,
    seed: int = 0,
    progress: Progress | None = None,
) -> list[AlgoResult]:
    """Every algorithm in ``algos`` (popularity is added when missing): k-fold RMSE/MAE for
    rating ones, top-``k`` on each user's latest ``test_size`` for all that can rank.

    Raises :class:`BadInput` for unknown algorithms or parameters, or too little data.
    """
    names = [get_algorithm(a).name for a in algos]
    if "popularity" not in names:
        names.append("popularity")
    params = params or {}
    split = time_split(data, test_size, seed)
    results = []
    for step, name in enumerate(names):
        if progress:
            progress(f"evaluating {name}", step, len(names))
        algorithm = get_algorithm(name)
        resolved = algorithm.resolve(params.get(name))
        if algorithm.kind == RANKING:
            result = AlgoResult(name, algorithm.kind, resolved)
        else:
            result = cross_validate(data, name, resolved, folds, seed)
        if algorithm.can_rank:
            clock = time.perf_counter()
            fitted = algorithm.fit(data, split[0], resolved, seed)
            if algorithm.kind == RANKING:
                result.fit_seconds.append(time.perf_counter() - clock)
            result.top_n = score_top_n(fitted, data, split[0], split[1], k)
        else:
            result.note = "no top-N: one estimate per movie and user is too slow"
        results.append(result)
    if progress:
        progress(f"evaluating {names[-1]}", len(names), len(names))
    return results


def parse_grid(specs: Sequence[str]) -> dict[str, list[str]]:
    """``["lr=0.005,0.01", "reg=0.02"]`` -> ``{"lr": ["0.005", "0.01"], "reg": ["0.02"]}``.

    Raises :class:`BadInput` for a spec without ``=`` or values.
    """
    grid: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        items = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not name.strip() or not items:
            raise BadInput(f"grid entry {spec!r} must look like name=value1,value2")
        grid[name.strip()] = items
    return grid


def tune(
    data: RatingsData,
    algo: str,
    grid: Mapping[str, Sequence[Any]],
    folds: int = 3,
    seed: int = 0,
    test_size: float = 0.2,
    k: int = 10,
) -> list[tuple[dict[str, Any], float]]:
    """Every combination of ``grid`` with its score, best first: mean k-fold RMSE for rating
    algorithms (lower is better), NDCG@k on the time-ordered hold-out for ranking ones.

    Raises :class:`BadInput` for unknown parameters or malformed values.
    """
    algorithm = get_algorithm(algo)
    names = list(grid)
    combos = [dict(zip(names, values, strict=True)) for values in itertools.product(*grid.values())]
    scored = []
    split = time_split(data, test_size, seed) if algorithm.kind == RANKING else None
    for combo in combos:
        resolved = algorithm.resolve(combo)
        if split is None:
            score = statistics.mean(cross_validate(data, algo, resolved, folds, seed).rmse)
        else:
            fitted = algorithm.fit(data, split[0], resolved, seed)
            score = score_top_n(fitted, data, split[0], split[1], k).ndcg
        scored.append(({n: resolved[n] for n in names}, score))
    scored.sort(key=lambda pair: pair[1], reverse=split is not None)
    return scored


def write_chart(results: Sequence[AlgoResult], path: Path, title: str = "") -> Path:
    """A PNG with top-N metrics per algorithm (left) and RMSE/MAE (right), via matplotlib Agg."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    ranked = [r for r in results if r.top_n]
    metrics = ("precision", "recall", "ndcg", "map")
    width = 0.8 / max(1, len(ranked))
    for j, result in enumerate(ranked):
        values = [getattr(result.top_n, m) for m in metrics]
        left.bar(np.arange(len(metrics)) + j * width, values, width, label=result.algo)
    k = ranked[0].top_n.k if ranked else 10
    left.set_xticks(np.arange(len(metrics)) + 0.4 - width / 2, [f"{m}@{k}" for m in metrics])
    left.set_title("top-N, time-ordered hold-out per user")
    left.legend(fontsize=8)
    rated = [r for r in results if r.rmse]
    x = np.arange(len(rated))
    right.bar(x - 0.2, [statistics.mean(r.rmse) for r in rated], 0.4, label="RMSE")
    right.bar(x + 0.2, [statistics.mean(r.mae) for r in rated], 0.4, label="MAE")
    right.set_xticks(x, [r.algo for r in rated])
    right.set_ylim(0.6, 1.1)
    right.set_title("rating error, k-fold CV")
    right.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
