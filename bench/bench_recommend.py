"""``recommend`` in-process, code A against code B in one run: the time of one call per model
form (what a recommender server spends on a request after reading the user's context).

Synthetic ratings (``--movies``, ``--users``, ``--ratings``: taste groups over a skewed
popularity, five genres), each form trained once with this checkout's code into a temporary
directory (the artifact format is the same for both codes). Each round is a fresh Python
process with one code's tree first on ``sys.path``: it loads every artifact memory-mapped and
asks ``recommend`` for the same users, a warm-up pass, then a timed pass per variant (*plain*:
the training ratings; *filtered*: five excluded movies and a demoted genre; *shard*: shard 0
of 2 on the whole model). Rounds alternate A B B A ..., so the machine's drift (other jobs on
a shared VM) falls on both; a figure is the median over a round's calls, then the median over
rounds. One thread (``OPENBLAS_NUM_THREADS=1``), as a server's worker runs.

    .venv/bin/python bench/bench_recommend.py --a REV [--b DIR] [--pairs 3]

``--a`` is a git revision (exported with ``git archive``) or a directory; ``--b`` defaults to
this checkout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_for_you import code_tree  # the same export of code A

ROOT = Path(__file__).resolve().parents[1]
FORMS = {  # label: (algorithm, parameters, ANN index)
    "svd": ("svd", {"factors": 32, "epochs": 5}, False),
    "als": ("als", {"factors": 32, "iterations": 5}, False),
    "als+ann": ("als", {"factors": 32, "iterations": 5}, True),
    "ease": ("ease", {"lam": 200}, False),
    "easeals": ("easeals", {"lam": 200, "factors": 32, "iterations": 5}, False),
    "sansaals": ("sansaals", {"lam": 200, "factors": 32, "iterations": 5}, False),
    "popularity": ("popularity", {}, False),
}
VARIANTS = ("plain", "filtered", "shard")
GENRES = ("Action", "Comedy", "Drama", "Horror", "Romance")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", required=True, help="git revision or directory of code A")
    parser.add_argument("--b", default=str(ROOT), help="directory of code B (default: here)")
    parser.add_argument("--pairs", type=int, default=3, help="A/B pairs of rounds")
    parser.add_argument("--movies", type=int, default=4000)
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--ratings", type=int, default=150_000)
    parser.add_argument("--calls", type=int, default=400, help="timed calls per variant")
    parser.add_argument("--forms", default=",".join(FORMS), help="comma-separated labels")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # a round's JSON job
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_round(json.loads(args.worker))))
        return
    with tempfile.TemporaryDirectory(prefix="movierec-bench-recommend-") as tmp:
        root = Path(tmp)
        trees = {"A": code_tree(args.a, root / "a"), "B": Path(args.b).resolve()}
        forms = [f.strip() for f in args.forms.split(",")]
        if unknown := set(forms) - set(FORMS):
            raise SystemExit(f"unknown forms: {', '.join(sorted(unknown))}")
        versions, users = train(root / "models", args, forms)
        job = {"model_dir": str(root / "models"), "versions": versions, "users": users}
        results: dict[str, list[dict]] = {"A": [], "B": []}
        order = [c for p in range(args.pairs) for c in ("AB" if p % 2 == 0 else "BA")]
        for i, code in enumerate(order):
            print(f"round {i + 1}/{len(order)}: {code}", file=sys.stderr, flush=True)
            results[code].append(worker(trees[code], job))
    report(results, args)


def train(model_dir: Path, args, forms: list[str]) -> tuple[dict[str, str], list[int]]:
    import numpy as np

    from movierec.ai.dataset import ratings_from_arrays
    from movierec.ai.train import train_on_data

    rng = np.random.default_rng(1)
    n = args.ratings
    popularity = 1.0 / np.arange(1, args.movies + 1) ** 0.8
    movies = rng.choice(args.movies, size=n, p=popularity / popularity.sum())
    users = rng.integers(0, args.users, size=n)
    taste = (users % 5 == movies % 5).astype(float)  # a group likes "its" fifth of movies
    stars = np.clip(np.round(2.5 + 2 * taste + rng.normal(0, 0.8, n)), 1, 5)
    pairs = np.unique(np.c_[users, movies], axis=0, return_index=True)[1]
    data = ratings_from_arrays(
        users[pairs] + 1, movies[pairs] + 1, stars[pairs], np.arange(pairs.size)
    )
    genres = np.array([[(m + g) % 5 == 0 or (m * 7 + g) % 11 == 0 for g in range(5)]
                       for m in data.movie_ids.tolist()])  # fmt: skip
    versions = {}
    for label in forms:
        algo, params, ann = FORMS[label]
        print(f"training {label} ...", file=sys.stderr, flush=True)
        report = train_on_data(
            data, model_dir, algo, params, test_size=0, genre_names=np.array(GENRES),
            movie_genres=genres, ann_min_items=args.movies // 4 if ann else 10**9,
        )  # fmt: skip
        versions[label] = report.artifact.version
    sample = rng.choice(data.user_ids, size=args.calls + 100, replace=False).tolist()
    return versions, [int(u) for u in sample]


def worker(tree: Path, job: dict) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "OPENBLAS_NUM_THREADS": "1",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # fmt: skip
    done = subprocess.run(
        [sys.executable, __file__, "--a", "-", "--worker", json.dumps(job)],
        env=env, capture_output=True, text=True, check=True, cwd="/",
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_round(job: dict) -> dict:
    """Median µs per ``recommend`` call, per form and variant (this process's code)."""
    import movierec

    try:
        from movierec.ai.loader import load_model
    except ImportError:  # code from before ai/loader.py
        from movierec.ai.scorer import load_model
    from movierec.ai import Shard

    out = {"code": str(Path(movierec.__file__).parent)}
    users = job["users"]
    warm, timed = users[:100], users[100:]
    for label, version in job["versions"].items():
        model = load_model(job["model_dir"], version)
        exclude = model.recommend(warm[0], k=5).movie_ids
        variants = {
            "plain": {},
            "filtered": {"exclude": exclude, "demote_genres": ["Comedy"]},
            "shard": {"shard": Shard(0, 2)},
        }
        for user in warm:
            model.recommend(user, k=10)
        for name, kwargs in variants.items():
            spent = []
            for user in timed:
                start = time.perf_counter_ns()
                model.recommend(user, k=10, **kwargs)
                spent.append(time.perf_counter_ns() - start)
            out[f"{label}/{name}"] = statistics.median(spent) / 1000
    return out


def report(results: dict[str, list[dict]], args) -> None:
    print(
        f"\nrecommend, median µs per call ({args.movies} movies, {args.users} users, "
        f"{args.ratings} ratings; {args.pairs} A/B pairs, {args.calls} calls per variant)"
    )
    print(f"A: {results['A'][0]['code']}\nB: {results['B'][0]['code']}\n")
    print("| form | variant | A µs | B µs | B/A of pairs: median (range) |")
    print("|---|---|---:|---:|---:|")
    for key in (k for k in results["A"][0] if k != "code"):
        a = statistics.median(r[key] for r in results["A"])
        b = statistics.median(r[key] for r in results["B"])
        # A round and the round next to it ran back to back: their ratio drifts least.
        ratios = [rb[key] / ra[key] for ra, rb in zip(results["A"], results["B"], strict=True)]
        spread = f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})"
        form, variant = key.split("/")
        print(f"| {form} | {variant} | {a:.0f} | {b:.0f} | {spread} |")


if __name__ == "__main__":
    main()
