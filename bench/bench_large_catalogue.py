"""What `--algo auto` serves above `ease_max_items`, measured against the small-catalogue blend.

Run: ``.venv/bin/python bench/bench_large_catalogue.py [--movielens DIR] [--only SECTION]``
(SECTION: ndcg, ann, latency or fit).

1. NDCG@10 with the large path forced (``ease_max_items = 1``, so ``auto`` resolves as it
   would above 20,000 movies) beside the blend ``auto`` trains below, and the candidates that
   were measured for the large path:
   - ml-100k, the issue protocol (random 75/25 per user, every unrated movie ranked,
     relevance = any held-out rating; mean of seeds 0, 1, 2);
   - ml-latest-small, each user's latest 20 % held out (the time-ordered hold-out of
     ``model evaluate``; seed 0).
2. ANN recall@10 of the served large-path model against its exact scoring, on the real model
   fitted on all of ml-latest-small with the index forced (``ann_min_items = 1``), through
   ``RankingModel.recommend`` for every user, at several ``nprobe``.
3. ``recommend`` latency in-process, one thread: the blend, the large path exact and with ANN.
4. Fit time and peak memory growth (child process) on synthetic ratings (``bench_algorithms``'s
   generator: Zipf popularity, random users, so no taste structure to keep ``XᵀX`` sparse).
Prints markdown tables. No database needed.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_algorithms import DEFAULT_DIR, measure  # noqa: E402

from movierec.ai.algorithms import get_algorithm  # noqa: E402
from movierec.ai.base import Signals  # noqa: E402
from movierec.ai.dataset import RatingsData, read_movielens  # noqa: E402
from movierec.ai.evaluation import per_user_split  # noqa: E402
from movierec.ai.loader import load_model  # noqa: E402
from movierec.ai.train import resolve_algo, score_top_n, time_split, train_on_data  # noqa: E402

# (label, algorithm or "auto" / "auto-large" / "auto-largest", parameters)
CANDIDATES = [
    ("blend: `auto` up to 20k movies", "auto", {}),
    ("**`auto` above 20k movies, forced: SANSA + ALS**", "auto-large", {}),
    ("**`auto` above `sansa_max_items`, forced: ALS**", "auto-largest", {}),
    ("ALS, its first defaults (reg 0.05, confidence 2)", "als", {"reg": 0.05, "alpha": 2}),
    ("iALS, 400 factors, reg 50, confidence 8, binary", "als",
     {"factors": 400, "reg": 50, "alpha": 8, "rating_weight": 0}),
    ("collective SANSA alone", "sansa", {}),
    ("SANSA + iALS, 100 served weights per movie", "sansaals", {"weights_per_movie": 100}),
    ("SANSA + iALS, incomplete factorisation (`factorizer=icf`)", "sansaals",
     {"factorizer": "icf"}),
]  # fmt: skip
NPROBES = (4, 8, 16, 32)


def algorithm_for(name: str, data: RatingsData) -> str:
    if name == "auto":
        return resolve_algo("auto", data.n_items)
    if name == "auto-large":
        return resolve_algo("auto", data.n_items, ease_max_items=1)
    if name == "auto-largest":
        return resolve_algo("auto", data.n_items, ease_max_items=1, sansa_max_items=1)
    return name


def ndcg(data: RatingsData, name: str, given: dict, splits) -> tuple[list[float], float]:
    algorithm = get_algorithm(algorithm_for(name, data))
    params = algorithm.resolve(given)
    scores, seconds = [], []
    for seed, (train, test) in splits:
        clock = time.perf_counter()
        fitted = algorithm.fit(data, train, params, seed)
        seconds.append(time.perf_counter() - clock)
        scores.append(score_top_n(fitted, data, train, test, 10).ndcg)
    return scores, statistics.mean(seconds)


def ndcg_tables(directory: Path) -> None:
    ml100k = read_movielens(directory / "ml-100k")
    small = read_movielens(directory / "ml-latest-small")
    random_splits = [(s, per_user_split(ml100k.user_index, 0.25, s)) for s in range(3)]
    time_splits = [(0, time_split(small, 0.2, 0))]
    print("| model | algorithm | ml-100k NDCG@10 | per seed | fit s | ml-latest-small NDCG@10 "
          "(time split) | fit s |")  # fmt: skip
    print("|---|---|---:|---|---:|---:|---:|")
    reference = None
    for label, name, given in CANDIDATES:
        a, a_fit = ndcg(ml100k, name, given, random_splits)
        b, b_fit = ndcg(small, name, given, time_splits)
        mean_a, mean_b = statistics.mean(a), b[0]
        if reference is None:
            reference = (mean_a, mean_b)
        share = f" ({mean_a / reference[0]:.1%} / {mean_b / reference[1]:.1%} of the blend)"
        shown = ", ".join(f"{k}={v}" for k, v in given.items()) or "defaults"
        print(
            f"| {label}{share if name != 'auto' else ''} | {algorithm_for(name, small)} "
            f"({shown}) | {mean_a:.4f} | {' / '.join(f'{x:.4f}' for x in a)} | {a_fit:.2f} "
            f"| {mean_b:.4f} | {b_fit:.2f} |",
            flush=True,
        )


def ann_recall(directory: Path, nprobes=NPROBES) -> tuple[int, float, dict[int, tuple]]:
    """For the served large-path model on ml-latest-small (index forced): the cells, the mean
    share of the catalogue SANSA reaches for a user (scored exactly, never through the index),
    the share of exact top-10 items outside that reach (what only the index can find), and
    per ``nprobe`` the recall@10 of served against exact answers, and of the index alone
    against the exact top-10 of the model's ALS part over every unrated movie."""
    data = read_movielens(directory / "ml-latest-small")
    name = resolve_algo("auto", data.n_items, ease_max_items=1)
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(1):
        version = train_on_data(data, Path(tmp), name, {}, test_size=0, ann_min_items=1)
        exact = load_model(Path(tmp), version.artifact.version, nprobe=0)
        users = data.user_ids.tolist()
        truth = {u: exact.recommend(u, 10).movie_ids for u in users}
        reached, tails, outside, reach = {}, {}, [], []
        factors = np.asarray(exact._factors)
        for u in users:  # the model's own pieces: what SANSA reaches, the ALS query
            idx, w, _, seen = exact._signal_vector(u, Signals())
            reached[u] = exact._sparse.scores(idx, w)[0]
            query = exact._folded_in(exact._factor_rows, idx, w)[0].astype(np.float32)
            als = factors @ query
            blocked = np.fromiter(seen, np.int64)
            als[blocked] = -np.inf
            tails[u] = (query, blocked, set(np.argsort(-als)[:10].tolist()))
            reach.append(reached[u].size / data.n_items)
            positions = exact.movie_ids.searchsorted(truth[u])
            outside.append(float(np.mean(~np.isin(positions, reached[u]))))
        out = {}
        for nprobe in nprobes:
            model = load_model(Path(tmp), version.artifact.version, nprobe=nprobe)
            served = [len(set(model.recommend(u, 10).movie_ids) & set(truth[u])) for u in users]
            tail = []
            for u in users:
                query, blocked, best = tails[u]
                found = model.ann.search(query, 10, blocked)
                tail.append(len(set(found.tolist()) & best))
            out[nprobe] = (float(np.mean(served)) / 10, float(np.mean(tail)) / 10)
        nlist = int(model.ann.index.nlist)
    return nlist, float(np.mean(reach)), float(np.mean(outside)), out


def ann_table(directory: Path) -> None:
    nlist, reach, outside, found = ann_recall(directory)
    print(f"\nANN against exact scoring, ml-latest-small, {nlist} cells; SANSA reaches "
          f"{reach:.1%} of the catalogue per user (mean), {outside:.1%} of the exact top-10 "
          "items lie outside that reach:\n")  # fmt: skip
    print("| nprobe | share of cells | recall@10 served | recall@10 of the index, ALS part |")
    print("|---:|---:|---:|---:|")
    for nprobe, (served, tail) in found.items():
        print(f"| {nprobe} | {nprobe / nlist:.1%} | {served:.3f} | {tail:.3f} |")


def latency_table(directory: Path) -> None:
    """``recommend`` p50/p99 in-process, one thread, every user of ml-latest-small (models
    fitted on all its ratings): the blend, the large path exact and with its index forced."""
    data = read_movielens(directory / "ml-latest-small")
    print("\n| model | scoring | p50 ms | p99 ms |\n|---|---|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(1):
        for name, nprobes in (("easeals", (0,)), ("sansaals", (0, 32))):
            version = train_on_data(data, Path(tmp), name, {}, test_size=0, ann_min_items=1)
            for nprobe in nprobes:
                model = load_model(Path(tmp), version.artifact.version, nprobe=nprobe)
                times = []
                for user in data.user_ids.tolist() * 2:  # the first pass warms the pages
                    clock = time.perf_counter()
                    model.recommend(user, 10)
                    times.append(time.perf_counter() - clock)
                times = np.array(times[data.n_users :]) * 1000
                scoring = f"ANN, nprobe {nprobe}" if nprobe else "exact"
                print(f"| {name} | {scoring} | {np.percentile(times, 50):.2f} "
                      f"| {np.percentile(times, 99):.2f} |", flush=True)  # fmt: skip


FIT_CASES = [
    ("sansaals", 1_000_000, 6_000, 4_000, {}),
    ("sansaals", 1_000_000, 6_000, 12_000, {}),
    ("sansaals", 1_000_000, 6_000, 100_000, {"factorizer": "icf"}),
    ("als", 1_000_000, 6_000, 100_000, {}),
]  # fmt: skip


def fit_table() -> None:
    print("\n| algorithm | params | ratings | users | movies | fit s | peak MB |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, n_ratings, n_users, n_items, given in FIT_CASES:
        found = measure(name, n_ratings, n_users, n_items, given)
        shown = ", ".join(f"{k}={v}" for k, v in given.items()) or "defaults"
        print(
            f"| {name} | {shown} | {n_ratings:,} | {n_users:,} | {n_items:,} "
            f"| {found['seconds']:.1f} | {found['peak_mb']:.0f} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--movielens", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--only", choices=("ndcg", "ann", "latency", "fit"))
    args = parser.parse_args()
    print(f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} cpus\n")
    if args.only in (None, "ndcg"):
        ndcg_tables(args.movielens)
    if args.only in (None, "ann"):
        ann_table(args.movielens)
    if args.only in (None, "latency"):
        latency_table(args.movielens)
    if args.only in (None, "fit"):
        fit_table()


if __name__ == "__main__":
    main()
