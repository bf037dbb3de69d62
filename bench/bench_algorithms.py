"""Every algorithm behind `movierec model train --algo`: quality, fit time and memory.

Run: ``.venv/bin/python bench/bench_algorithms.py [--movielens DIR] [--skip-slow]``

1. ml-100k, 5-fold CV RMSE/MAE of the rating algorithms beside surprise's published table,
   plus an SVD tuned by grid search (``movierec.ai.compare.tune``, 3-fold, then 5-fold).
2. ml-100k, the ranking protocol of the issue: 75/25 random split per user, every unrated
   movie ranked, relevance = any held-out rating, NDCG@10 (mean of 3 seeds, and per seed):
   plain EASE (side rows off, as served before), collective EASE (the defaults: session,
   liked, genre, decade and window rows from u.item and the timestamps) and the
   collective EASE + iALS blend (``easeals``, what ``auto`` trains up to 20k movies).
3. ml-latest-small, top-N on each user's latest 20% (time-ordered) for every algorithm that
   can rank, and popularity; KNNBaseline too, ranked by its estimate of every unrated movie
   (a Python loop per estimate, about 2 minutes).
4. Fit time and peak memory (RSS growth of a child process) on synthetic data: 100k and 1M
   ratings; EASE at growing catalogues to show where it stops paying. ``--large`` adds SVD and
   ALS at 10M and 25M ratings (ml-25m's shape: 162k users, 62k movies; about 15 minutes).
Prints markdown tables. No database needed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from movierec.ai.algorithms import get_algorithm
from movierec.ai.algorithms.ease import PLAIN_EASE
from movierec.ai.compare import cross_validate, evaluate_algorithms, tune
from movierec.ai.dataset import RatingsData, ratings_from_arrays, read_movielens, user_item_matrix
from movierec.ai.evaluation import TopN, per_user_split, top_n_metrics
from movierec.ai.train import score_top_n, time_split

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "movielens"
PUBLISHED = {  # surprise's README, ml-100k, 5-fold
    "svd": (0.934, 0.737), "svdpp": (0.919, 0.721), "nmf": (0.963, 0.758),
    "knnbaseline": (0.931, 0.733), "baselineonly": (0.944, 0.748),
}  # fmt: skip
GRID = {"factors": [100], "epochs": [20, 40], "lr": [0.005, 0.01], "reg": [0.02, 0.05, 0.1]}


def spread(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f} ± {statistics.pstdev(values):.4f}"


def rating_table(data: RatingsData, skip_slow: bool) -> None:
    print("### ml-100k, 5-fold CV (surprise's protocol)\n")
    print("| algorithm | params | RMSE | MAE | fit s/fold | published RMSE / MAE |")
    print("|---|---|---:|---:|---:|---:|")
    for name in PUBLISHED:
        if skip_slow and name == "svdpp":
            continue
        result = cross_validate(data, name, {}, 5, 0)
        print(
            f"| {name} | defaults | {spread(result.rmse)} | {spread(result.mae)} "
            f"| {statistics.mean(result.fit_seconds):.2f} | {PUBLISHED[name][0]} / "
            f"{PUBLISHED[name][1]} |"
        )
    ranked = tune(data, "svd", GRID, folds=3, seed=0)
    best = ranked[0][0]
    result = cross_validate(data, "svd", best, 5, 0)
    shown = ", ".join(f"{k}={v}" for k, v in best.items())
    print(
        f"| svd tuned ({len(ranked)}-point grid, 3-fold) | {shown} | {spread(result.rmse)} "
        f"| {spread(result.mae)} | {statistics.mean(result.fit_seconds):.2f} | 0.934 / 0.737 |"
    )


def issue_protocol(data: RatingsData) -> None:
    print("\n### ml-100k, random 75/25 per user, all unrated movies ranked, mean of 3 seeds\n")
    print("| algorithm | params | NDCG@10 | per seed | P@10 | R@10 | fit s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    configs = [
        ("popularity", {}, ""), ("svd", {}, ""), ("als", {}, ""),
        ("als", {"factors": 128, "alpha": 5}, ""),
        ("als", {"factors": 400, "reg": 50, "alpha": 8, "rating_weight": 0}, ""),
        ("ease", {**PLAIN_EASE, "rating_weight": 0.0}, "plain, binary query"),
        ("ease", PLAIN_EASE, "plain (served before)"),
        ("ease", {**PLAIN_EASE, "lam": 300}, "plain, λ 300"),
        ("ease", {}, "collective (defaults)"), ("easeals", {}, "defaults"),
    ]  # fmt: skip
    for name, given, label in configs:
        algorithm = get_algorithm(name)
        params = algorithm.resolve(given)
        scores, seconds = [], []
        for seed in range(3):
            train, test = per_user_split(data.user_index, 0.25, seed)
            clock = time.perf_counter()
            fitted = algorithm.fit(data, train, params, seed)
            seconds.append(time.perf_counter() - clock)
            scores.append(score_top_n(fitted, data, train, test, 10))
        shown = label or ", ".join(f"{k}={v}" for k, v in given.items()) or "defaults"
        print(
            f"| {name} | {shown} | {statistics.mean(s.ndcg for s in scores):.4f} "
            f"| {' / '.join(f'{s.ndcg:.4f}' for s in scores)} "
            f"| {statistics.mean(s.precision for s in scores):.4f} "
            f"| {statistics.mean(s.recall for s in scores):.4f} | {statistics.mean(seconds):.2f} |",
            flush=True,
        )


def knn_top_n(data: RatingsData, test_size: float, k: int, seed: int) -> TopN:
    """KNNBaseline (defaults) on the split of ``evaluate_algorithms``, which leaves it out (it
    cannot rank cheaply): every unrated movie by its unclipped estimate, as its server ranks."""
    algorithm = get_algorithm("knnbaseline")
    train, test = time_split(data, test_size, seed)
    fitted = algorithm.fit(data, train, algorithm.resolve({}), seed)
    items = np.arange(data.n_items)

    def scores_for(users: np.ndarray) -> np.ndarray:
        one = [fitted.estimator.estimate_pairs(np.full(items.size, u), items) for u in users]
        return np.stack(one)

    seen = user_item_matrix(data, train, "rating")
    return top_n_metrics(scores_for, seen, user_item_matrix(data, test, "binary"), k)


def top_n_table(data: RatingsData, skip_slow: bool) -> None:
    print("\n### ml-latest-small, each user's latest 20% held out (time-ordered), k=10\n")
    algos = ["easeals", "ease", "als", "svd", "nmf", "baselineonly"] + (
        [] if skip_slow else ["svdpp"]
    )
    results = evaluate_algorithms(data, algos, folds=5, test_size=0.2, k=10, seed=0)
    rows = [(r.algo, r.top_n, f"{statistics.mean(r.rmse):.4f}" if r.rmse else "-") for r in results]
    if not skip_slow:
        rmse = statistics.mean(cross_validate(data, "knnbaseline", {}, 5, 0).rmse)
        rows.append(("knnbaseline", knn_top_n(data, 0.2, 10, 0), f"{rmse:.4f}"))
    print("| algorithm | P@10 | R@10 | NDCG@10 | MAP@10 | coverage | novelty | RMSE (5-fold) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for algo, t, rmse in rows:
        print(
            f"| {algo} | {t.precision:.4f} | {t.recall:.4f} | {t.ndcg:.4f} | {t.map:.4f} "
            f"| {t.coverage:.3f} | {t.novelty:.2f} | {rmse} |"
        )


def synthetic(n_ratings: int, n_users: int, n_items: int, seed: int = 0) -> RatingsData:
    """Ratings with a Zipf-like movie popularity, at random times within a year (so that
    collective EASE builds its session and window rows); duplicates dropped."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, n_items + 1) ** 0.8
    items = rng.choice(n_items, size=int(n_ratings * 1.1), p=weights / weights.sum())
    users = rng.integers(0, n_users, size=items.size)
    pairs = np.unique(users.astype(np.int64) * n_items + items)[:n_ratings]
    stars = rng.integers(1, 11, size=pairs.size) / 2
    stamps = 1_700_000_000 + rng.integers(0, 365 * 86_400, size=pairs.size)
    return ratings_from_arrays(pairs // n_items, pairs % n_items, stars, stamps)


def child_measure(spec: str) -> None:
    """In a child process: build the data, fit, print seconds and RSS growth as JSON."""
    name, n_ratings, n_users, n_items, given = json.loads(spec)
    data = synthetic(n_ratings, n_users, n_items)
    algorithm = get_algorithm(name)
    params = algorithm.resolve(given)
    before = int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    clock = time.perf_counter()
    algorithm.fit(data, None, params, 0)
    seconds = time.perf_counter() - clock
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": seconds, "peak_mb": (peak - before) / 2**20}))


def measure(name, n_ratings, n_users, n_items, given=None) -> dict:
    spec = json.dumps([name, n_ratings, n_users, n_items, given or {}])
    out = subprocess.run(
        [sys.executable, __file__, "--child", spec], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


LARGE_CASES = [
    ("svd", 10_000_000, 162_000, 62_000, {}), ("als", 10_000_000, 162_000, 62_000, {}),
    ("svd", 25_000_000, 162_000, 62_000, {}), ("als", 25_000_000, 162_000, 62_000, {}),
]  # fmt: skip


def scale_table(large: bool = False) -> None:
    print("\n### Fit time and peak memory growth, synthetic ratings (measured)\n")
    print("| algorithm | ratings | users | movies | fit s | peak MB |")
    print("|---|---:|---:|---:|---:|---:|")
    cases = [
        ("svd", 100_000, 1_000, 1_700, {}), ("svd", 1_000_000, 6_000, 4_000, {}),
        ("als", 100_000, 1_000, 1_700, {}), ("als", 1_000_000, 6_000, 4_000, {}),
        ("ease", 100_000, 1_000, 1_700, {}), ("ease", 1_000_000, 6_000, 4_000, {}),
        ("ease", 1_000_000, 6_000, 8_000, {}), ("ease", 1_000_000, 6_000, 12_000, {}),
        ("easeals", 100_000, 1_000, 1_700, {}), ("easeals", 1_000_000, 6_000, 4_000, {}),
        ("als", 1_000_000, 6_000, 100_000, {}),
    ]  # fmt: skip
    for name, n_ratings, n_users, n_items, given in cases + (LARGE_CASES if large else []):
        found = measure(name, n_ratings, n_users, n_items, given)
        print(
            f"| {name} | {n_ratings:,} | {n_users:,} | {n_items:,} | {found['seconds']:.2f} "
            f"| {found['peak_mb']:.0f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--movielens", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--skip-slow", action="store_true", help="leave out SVD++, KNN top-N")
    parser.add_argument("--only", choices=("rating", "issue", "topn", "scale"))
    parser.add_argument("--large", action="store_true", help="also 10M and 25M ratings")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_measure(args.child)
        return
    print(f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} cpus\n")
    ml100k = read_movielens(args.movielens / "ml-100k")
    if args.only in (None, "rating"):
        rating_table(ml100k, args.skip_slow)
    if args.only in (None, "issue"):
        issue_protocol(ml100k)
    if args.only in (None, "topn"):
        top_n_table(read_movielens(args.movielens / "ml-latest-small"), args.skip_slow)
    if args.only in (None, "scale"):
        scale_table(args.large)


if __name__ == "__main__":
    main()
