"""ANN (faiss IVF, movierec.ai.ann) against exact scoring, on a catalogue too large to score
exhaustively, through the server's own code path (``FactorModel.recommend`` / ``similar``).

Synthetic SVD-like model: ``--items`` movies × ``--factors`` factors plus item biases, built as
mixtures of 512 "tastes" with noise and skewed popularity; ``--users`` query users, each with
50 rated movies (drawn by popularity) that must never come back. Measured: recall@10 of ANN
against exact top-10, latency p50/p99 per call (one thread: BLAS and faiss limited to one, as
in a busy gunicorn worker), index build time, memory (the arrays, the index file, the build's
peak), and the same for one shard's slice (``ai_shard = 0/4``). Then recall on real models
(SVD and ALS fitted on ml-latest-small, index forced) when ../shared/data/movielens has it.

    .venv/bin/python bench/bench_ann.py [--items 1000000] [--factors 64] [--users 200]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from movierec.ai import ann
from movierec.ai.artifact import write_artifact
from movierec.ai.base import Signals
from movierec.ai.dataset import read_movielens
from movierec.ai.loader import load_model
from movierec.ai.shard import Shard
from movierec.ai.train import train_on_data

ML_SMALL = Path(__file__).resolve().parents[2] / "shared" / "data" / "movielens" / "ml-latest-small"
NPROBES = (8, 16, 32, 64)
RATED = 50


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def synthetic_arrays(n_items: int, n_factors: int, n_users: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    tastes = rng.normal(0, 1 / np.sqrt(n_factors), (512, n_factors)).astype(np.float32)
    items = np.empty((n_items, n_factors), dtype=np.float32)
    step = 200_000
    for start in range(0, n_items, step):
        n = min(step, n_items - start)
        a, b = rng.integers(0, 512, n), rng.integers(0, 512, n)
        mix = rng.random((n, 1), dtype=np.float32)
        noise = rng.normal(0, 0.6 / np.sqrt(n_factors), (n, n_factors)).astype(np.float32)
        items[start : start + n] = mix * tastes[a] + (1 - mix) * tastes[b] + noise
    popularity = np.floor(1e5 / np.arange(1, n_items + 1) ** 0.8).astype(np.int64)
    popularity = popularity[rng.permutation(n_items)]
    items *= (0.5 + 0.5 * np.log1p(popularity) / np.log1p(popularity.max()))[:, None]
    users = (tastes[rng.integers(0, 512, (n_users, 3))].sum(axis=1) * 2).astype(np.float32)
    prob = popularity / popularity.sum()
    rated = np.stack([np.sort(rng.choice(n_items, RATED, replace=False, p=prob)) for _ in users])
    movie_ids = np.arange(1, n_items + 1, dtype=np.int64)
    return {
        "user_ids": np.arange(1, n_users + 1, dtype=np.int64),
        "movie_ids": movie_ids,
        "user_factors": users,
        "item_factors": items,
        "user_bias": rng.normal(0, 0.3, n_users).astype(np.float32),
        "item_bias": rng.normal(0, 0.3, n_items).astype(np.float32),
        "item_norms": np.linalg.norm(items, axis=1).astype(np.float32),
        "global_mean": np.array(3.5),
        "popularity": popularity,
        "popular_order": np.lexsort((movie_ids, -popularity)).astype(np.int32),
        "genre_names": np.array([], dtype=np.str_),
        "movie_genres": np.zeros((n_items, 0), dtype=bool),
        "rated_indptr": np.arange(0, (n_users + 1) * RATED, RATED, dtype=np.int64),
        "rated_items": rated.ravel().astype(np.int32),
    }


def timed(call, users) -> tuple[list, np.ndarray]:
    answers, ms = [], []
    for user in users:
        started = time.perf_counter()
        answers.append(call(user))
        ms.append((time.perf_counter() - started) * 1000)
    return answers, np.array(ms)


def recall(found: list[list[int]], truth: list[list[int]]) -> float:
    return float(
        np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)])
    )


def row(name: str, ms: np.ndarray, rec: float | None, extra: str = "") -> str:
    shown = "1.000 (reference)" if rec is None else f"{rec:.3f}"
    p50, p99 = np.percentile(ms, 50), np.percentile(ms, 99)
    return f"| {name} | {shown} | {p50:.2f} | {p99:.2f} | {extra} |"


def bench_synthetic(n_items: int, n_factors: int, n_users: int, root: Path) -> None:
    clock = time.perf_counter()
    arrays = synthetic_arrays(n_items, n_factors, n_users)
    print(f"generated {n_items:,} × {n_factors} in {time.perf_counter() - clock:.1f}s")
    vectors = ann.item_vectors("factors", arrays, biased=True)
    hwm = peak_rss_mb()
    clock = time.perf_counter()
    index = ann.build_index(vectors)
    build_s = time.perf_counter() - clock
    build_peak = max(0.0, peak_rss_mb() - hwm)
    del vectors
    meta = {"form": "factors", "kind": "rating", "algorithm": "svd", "biased": True}
    files = {ann.ANN_FILE: lambda path: ann.write_index(index, path)}
    info = write_artifact(root, "svd", arrays, meta, files=files)
    users = arrays["user_ids"].tolist()
    del arrays
    factors_mb = (info.path / "item_factors.npy").stat().st_size / 2**20
    index_mb = (info.path / ann.ANN_FILE).stat().st_size / 2**20
    exact = load_model(root, info.version, nprobe=0)
    nlist = ann.n_lists(n_items)
    lines = [
        f"\n### Synthetic SVD model: {n_items:,} movies × {n_factors} factors + biases, "
        f"{n_users} users ({RATED} rated movies each, excluded)\n",
        f"IVF: {nlist} cells (2·√n), k-means {ann.KMEANS_ITERATIONS} iterations on "
        f"{min(n_items, nlist * ann.POINTS_PER_LIST):,} sampled vectors. Build {build_s:.1f} s "
        f"(2 cores), peak +{build_peak:.0f} MB over the model in memory. On disk and mapped: "
        f"item factors {factors_mb:.0f} MB, index {index_mb:.0f} MB (vectors + ids).\n",
        "| /recommend k=10 | recall@10 | p50 ms | p99 ms | notes |",
        "|---|---:|---:|---:|---|",
    ]
    with threadpool_limits(1):
        exact.recommend(users[0], 10)
        truth, ms = timed(lambda u: exact.recommend(u, 10).movie_ids, users)
        lines.append(row("exact (NumPy, all movies)", ms, None))
        for nprobe in NPROBES:
            model = load_model(root, info.version, nprobe=nprobe)
            model.recommend(users[0], 10)
            found, ms = timed(lambda u, m=model: m.recommend(u, 10).movie_ids, users)
            rated_back = sum(
                bool(set(f) & set(model.rated_movie_ids(u).tolist()))
                for f, u in zip(found, users, strict=True)
            )
            note = f"{nprobe / nlist:.1%} of cells; rated movies returned: {rated_back}"
            lines.append(row(f"ANN nprobe={nprobe}", ms, recall(found, truth), note))
        # /similar: the query movies are the most rated (what users click on).
        movies = [
            int(m) for m in np.asarray(exact.movie_ids)[np.asarray(exact._popular_order)[:n_users]]
        ]
        lines += ["", "| /similar k=10 (cosine) | recall@10 | p50 ms | p99 ms | notes |",
                  "|---|---:|---:|---:|---|"]  # fmt: skip
        truth, ms = timed(lambda m: exact.similar(m, 10).movie_ids, movies)
        lines.append(row("exact", ms, None))
        for nprobe in (16, 32):
            model = load_model(root, info.version, nprobe=nprobe)
            found, ms = timed(lambda m, mod=model: mod.similar(m, 10).movie_ids, movies)
            lines.append(
                row(f"ANN nprobe={nprobe}", ms, recall(found, truth), "probed cells, re-scored")
            )
        # One shard's slice, as an instance started with ai_shard = "0/4" keeps it.
        shard = Shard(0, 4)
        clock = time.perf_counter()
        sliced = load_model(root, info.version, shard=shard, nprobe=32)
        slice_s = time.perf_counter() - clock
        sliced_exact = load_model(root, info.version, shard=shard, nprobe=0)
        lines += ["", "| shard 0/4 slice, /recommend k=10 | recall@10 | p50 ms | p99 ms | notes |",
                  "|---|---:|---:|---:|---|"]  # fmt: skip
        truth, ms = timed(lambda u: sliced_exact.recommend(u, 10).movie_ids, users)
        lines.append(row("exact on the slice", ms, None))
        found, ms = timed(lambda u: sliced.recommend(u, 10).movie_ids, users)
        lines.append(row("ANN nprobe=32 on the slice", ms, recall(found, truth),
                         f"slice derived and written in {slice_s:.1f} s"))  # fmt: skip
    print("\n".join(lines))


def bench_real(root: Path) -> None:
    if not (ML_SMALL / "ratings.csv").exists():
        print(f"\n(skipped real models: {ML_SMALL} not found)")
        return
    data = read_movielens(ML_SMALL)
    lines = [
        f"\n### Real models, ml-latest-small ({data.n_items:,} movies), index forced "
        f"({ann.n_lists(data.n_items)} cells), 200 users\n",
        "| model | nprobe | share of cells | recall@10 |", "|---|---:|---:|---:|",
    ]  # fmt: skip
    users = data.user_ids[:200].tolist()
    for algo, params in (("svd", {}), ("als", {})):
        version = train_on_data(
            data, root, algo, params, test_size=0, ann_min_items=0
        ).artifact.version
        exact = load_model(root, version, nprobe=0)

        def ask(model, user):
            if model.kind == "rating":
                return model.recommend(user, 10).movie_ids
            rows = data.user_index == int(np.searchsorted(data.user_ids, user))
            pairs = zip(
                data.movie_ids[data.item_index[rows]].tolist(),
                data.ratings[rows].tolist(),
                strict=True,
            )
            return model.recommend(user, 10, signals=Signals(tuple(pairs), complete=True)).movie_ids

        truth = [ask(exact, u) for u in users]
        for nprobe in (4, 8, 16):
            model = load_model(root, version, nprobe=nprobe)
            share = nprobe / ann.n_lists(data.n_items)
            rec = recall([ask(model, u) for u in users], truth)
            lines.append(f"| {algo} | {nprobe} | {share:.1%} | {rec:.3f} |")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--users", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ann-") as tmp:
        bench_synthetic(args.items, args.factors, args.users, Path(tmp) / "synthetic")
        bench_real(Path(tmp) / "real")


if __name__ == "__main__":
    main()
