"""Model quality and scoring speed on real MovieLens data, read straight from the files.

Run: ``.venv/bin/python bench/bench_model.py [--movielens DIR] [--folds 5] [--calls 50]``

1. 5-fold cross-validated RMSE/MAE of surprise's SVD with its default hyper-parameters, fitted
   through movierec's own pipeline (arrays -> id maps -> Trainset -> SVD -> NumPy evaluation),
   on ml-100k (surprise publishes 0.934 RMSE / 0.737 MAE) and ml-latest-small; plus, on
   ml-100k, surprise's own ``Dataset.load_from_file`` + ``cross_validate`` as a cross-check.
2. One user's top-10: ``FactorModel.recommend`` (one matrix-vector product + argpartition)
   against surprise's ``predict`` called for every movie and sorted, on the same fitted model;
   median of ``--calls`` calls each.
Prints markdown tables. No database needed.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import surprise
from surprise import SVD, Dataset, Reader
from surprise.model_selection import cross_validate

from movierec.ai import FactorModel, TrainParams, kfold, model_arrays, ratings_from_arrays
from movierec.ai.dataset import RatingsData, to_trainset
from movierec.ai.evaluation import evaluate
from movierec.ai.factors import Factors

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "movielens"
SURPRISE_DEFAULTS = TrainParams(test_size=0)  # 100 factors, 20 epochs, lr 0.005, reg 0.02
PUBLISHED = {"ml-100k": "0.934 / 0.737"}


def load_ml100k(root: Path) -> RatingsData:
    table = np.loadtxt(root / "ml-100k" / "u.data", dtype=np.float64, usecols=(0, 1, 2))
    return ratings_from_arrays(
        table[:, 0].astype(np.int64), table[:, 1].astype(np.int64), table[:, 2]
    )


def load_latest_small(root: Path) -> RatingsData:
    path = root / "ml-latest-small" / "ratings.csv"
    table = np.loadtxt(path, delimiter=",", skiprows=1, usecols=(0, 1, 2), dtype=np.float64)
    return ratings_from_arrays(
        table[:, 0].astype(np.int64), table[:, 1].astype(np.int64), table[:, 2]
    )


def fit(data: RatingsData, rows: np.ndarray | None, seed: int) -> tuple[SVD, Factors]:
    trainset = to_trainset(data, rows)
    algo = SVD(random_state=seed)  # surprise's defaults, as published
    algo.fit(trainset)
    return algo, Factors.from_svd(algo, trainset)


def cross_validation(data: RatingsData, folds: int, seed: int) -> dict[str, list[float]]:
    scores: dict[str, list[float]] = {"rmse": [], "mae": [], "seconds": []}
    for fold, (train_rows, test_rows) in enumerate(kfold(data.n_ratings, folds, seed)):
        clock = time.perf_counter()
        _, factors = fit(data, train_rows, seed + fold)
        scores["seconds"].append(time.perf_counter() - clock)
        metrics = evaluate(factors, data, train_rows, test_rows)
        scores["rmse"].append(metrics.rmse)
        scores["mae"].append(metrics.mae)
    return scores


def surprise_native_cv(root: Path, folds: int, seed: int) -> dict[str, list[float]]:
    data = Dataset.load_from_file(str(root / "ml-100k" / "u.data"), reader=Reader("ml-100k"))
    result = cross_validate(SVD(random_state=seed), data, ["rmse", "mae"], cv=folds, n_jobs=1)
    return {
        "rmse": list(result["test_rmse"]),
        "mae": list(result["test_mae"]),
        "seconds": list(result["fit_time"]),
    }


def median_ms(call, calls: int) -> float:
    times = []
    for _ in range(calls):
        clock = time.perf_counter()
        call()
        times.append(time.perf_counter() - clock)
    return statistics.median(times) * 1000


def recommend_timing(data: RatingsData, calls: int, seed: int) -> tuple[int, float, float, bool]:
    algo, factors = fit(data, None, seed)
    model = FactorModel(model_arrays(factors, data), {"version": "bench"})
    user = int(data.user_ids[0])
    rated = set(model.rated_movie_ids(user).tolist())
    movies = [int(m) for m in data.movie_ids if int(m) not in rated]

    def surprise_top10():
        estimates = [(algo.predict(user, m, clip=False).est, m) for m in movies]
        return [m for _, m in sorted(estimates, reverse=True)[:10]]

    same = model.recommend(user, k=10).movie_ids == surprise_top10()
    numpy_ms = median_ms(lambda: model.recommend(user, k=10), calls)
    loop_ms = median_ms(surprise_top10, calls)
    return data.n_items, numpy_ms, loop_ms, same


def spread(values: list[float], digits: int = 4) -> str:
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--movielens", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not (args.movielens / "ml-100k" / "u.data").exists():
        raise SystemExit(f"MovieLens data not found under {args.movielens} (see --movielens)")

    sets = {
        "ml-100k": load_ml100k(args.movielens),
        "ml-latest-small": load_latest_small(args.movielens),
    }
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, "
        f"scikit-surprise {surprise.__version__}, {platform.machine()}, "
        f"seed {args.seed}\n"
    )
    print(f"### SVD, surprise defaults, {args.folds}-fold CV\n")
    print("| data set | ratings | pipeline | RMSE | MAE | fit s/fold | published RMSE / MAE |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for name, data in sets.items():
        cv = cross_validation(data, args.folds, args.seed)
        print(
            f"| {name} | {data.n_ratings} | movierec | {spread(cv['rmse'])} | {spread(cv['mae'])} "
            f"| {statistics.mean(cv['seconds']):.2f} | {PUBLISHED.get(name, '-')} |"
        )
        if name == "ml-100k":
            native = surprise_native_cv(args.movielens, args.folds, args.seed)
            print(
                f"| {name} | {data.n_ratings} | surprise cross_validate | {spread(native['rmse'])} "
                f"| {spread(native['mae'])} | {statistics.mean(native['seconds']):.2f} "
                f"| {PUBLISHED[name]} |"
            )
    print(f"\n### One user's top-10, median of {args.calls} calls, same fitted model\n")
    print(
        "| data set | movies | NumPy recommend() ms | surprise loop ms | speed-up | same top-10 |"
    )
    print("|---|---:|---:|---:|---:|---|")
    for name, data in sets.items():
        n_items, numpy_ms, loop_ms, same = recommend_timing(data, args.calls, args.seed)
        print(
            f"| {name} | {n_items} | {numpy_ms:.3f} | {loop_ms:.2f} | {loop_ms / numpy_ms:.0f}x "
            f"| {'yes' if same else 'no'} |"
        )


if __name__ == "__main__":
    main()
