"""Spark MLlib's ALS (``model train --engine spark``) beside ``implicit``'s, on the same data.

Run: ``.venv/bin/python bench/bench_spark.py [--movielens DIR] [--master local[2]]`` (needs the
``spark`` extra and Java 17).

Both fit implicit ALS with their defaults (64 factors, 15 sweeps, rating weight 0.2; reg 50
and alpha 8 for ``implicit``, reg 0.05 and alpha 2 for Spark, which scales reg by each user's
and movie's count: see movierec.ai.spark_als) and are served alike: the item factors go into the
``als`` artifact and a user is folded in against them (``FittedAls.score_users``), so the only
difference is who fitted the item factors. Spark reads the ratings from a Parquet snapshot
(``movierec.ai.snapshot``), as ``--engine spark`` does. NDCG@10 on ml-100k (the issue's
random 75/25 per user, mean of seeds 0-2) and on ml-latest-small (each user's latest 20 %),
and fit seconds per fit (Spark's session start-up, once per process, shown apart).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_algorithms import DEFAULT_DIR  # noqa: E402

from movierec.ai.algorithms import get_algorithm  # noqa: E402
from movierec.ai.dataset import read_movielens  # noqa: E402
from movierec.ai.evaluation import per_user_split  # noqa: E402
from movierec.ai.snapshot import read_snapshot, write_snapshot  # noqa: E402
from movierec.ai.spark_als import SparkAls, spark_session  # noqa: E402
from movierec.ai.train import score_top_n, time_split  # noqa: E402


def measure(algorithm, data, splits) -> tuple[list[float], list[float]]:
    params = algorithm.resolve({})
    ndcgs, seconds = [], []
    for seed, (train, test) in splits:
        clock = time.perf_counter()
        fitted = algorithm.fit(data, train, params, seed)
        seconds.append(time.perf_counter() - clock)
        ndcgs.append(score_top_n(fitted, data, train, test, 10).ndcg)
    return ndcgs, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--movielens", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--master", default="local[2]")
    args = parser.parse_args()
    clock = time.perf_counter()
    spark_session(args.master)
    print(f"Spark session ({args.master}) started in {time.perf_counter() - clock:.1f} s\n")
    print("| data | trainer | NDCG@10 | per split | fit s (each) |")
    print("|---|---|---:|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("ml-100k", "ml-latest-small"):
            snapshot = write_snapshot(read_movielens(args.movielens / name), Path(tmp))
            data = read_snapshot(snapshot)
            if name == "ml-100k":
                splits = [(s, per_user_split(data.user_index, 0.25, s)) for s in range(3)]
            else:
                splits = [(0, time_split(data, 0.2, 0))]
            for label, algorithm in (
                ("implicit 0.7.3", get_algorithm("als")),
                ("Spark MLlib (`--engine spark`)", SparkAls(snapshot, args.master)),
            ):
                ndcgs, seconds = measure(algorithm, data, splits)
                print(
                    f"| {name} | {label} | {statistics.mean(ndcgs):.4f} "
                    f"| {' / '.join(f'{x:.4f}' for x in ndcgs)} "
                    f"| {' / '.join(f'{x:.1f}' for x in seconds)} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
