"""Where `--algo auto` must hand over from the SANSA + ALS blend to a model that trains at any
catalogue size: fit time, peak memory and hold-out NDCG@10 of each candidate on synthetic
catalogues of growing size (issue 23 §2).

    .venv/bin/python bench/bench_handover.py [--sizes 20000,50000,100000] \\
        [--per-movie 20] [--timeout 600] [--max-gb 10] [--candidates cholmod,icf,als]

Each size draws the catalogue of ``bench_scale.py`` (``sample_catalogue``: niches, taste,
long-tail popularity) with as many users as movies and ``--per-movie`` ratings per movie (so
100,000 movies is bench_scale's medium run, 100k / 100k / 2M), holds out each user's latest
20 % as `model train` does, and fits each candidate in a child process of its own (killed past
``--timeout`` seconds or ``--max-gb`` of RSS: the machine is shared). The child loads the drawn
arrays from a file, so its peak RSS is the fit's and the scoring's, not the draw's. Candidates:

* ``cholmod``: ``sansaals`` as ``auto`` trains it above ``ease_max_items`` (exact CHOLMOD
  factorisation, then pruned);
* ``icf``: ``sansaals`` with ``factorizer = icf`` (incomplete factorisation);
* ``als``: plain ALS with its defaults (64 factors, reg 50, confidence 8), and the popularity
  figure of the same split beside it;
* ``als-first``: ALS with its first defaults (reg 0.05, confidence 2), what ``auto`` trained
  above ``sansa_max_items`` until they were tuned.

Prints one markdown table; no database needed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from movierec.ai.algorithms import get_algorithm
from movierec.ai.dataset import ratings_from_arrays
from movierec.ai.train import popularity_baseline, score_top_n, time_split
from movierec.data import sample_catalogue
from movierec.db.schema import GENRES

CANDIDATES = {
    "cholmod": ("sansaals", {}),
    "icf": ("sansaals", {"factorizer": "icf"}),
    "als": ("als", {}),
    "als-first": ("als", {"reg": 0.05, "alpha": 2.0}),
}
MB = 2**20


def draw(movies: int, per_movie: int, seed: int, path: Path) -> None:
    """The catalogue's ratings and movie genres / years, saved for the children."""
    drawn = sample_catalogue(movies, movies, movies * per_movie, seed=seed)
    np.savez(
        path, user=drawn.rating_user + 1, movie=drawn.rating_movie + 1,
        half=drawn.half_stars, epoch=drawn.rated_epoch, genres=drawn.genres, years=drawn.years,
    )  # fmt: skip


def load(path: Path):
    """The saved catalogue as training data carrying its movies' genres and years, as
    `model train` reads it from the database."""
    arrays = np.load(path)
    data = ratings_from_arrays(arrays["user"], arrays["movie"], arrays["half"] / 2, arrays["epoch"])
    rows = data.movie_ids - 1
    matrix = np.zeros((data.n_items, len(GENRES)), dtype=bool)
    for column in range(arrays["genres"].shape[1]):
        genre = arrays["genres"][rows, column]
        matrix[np.flatnonzero(genre >= 0), genre[genre >= 0]] = True
    return data.with_movie_info(np.array(GENRES), matrix, arrays["years"][rows])


def child(spec: str) -> None:
    """Fit one candidate on the evaluation split and score it; one JSON line."""
    path, candidate = json.loads(spec)
    name, given = CANDIDATES[candidate]
    data = load(Path(path))
    split = time_split(data, 0.2, 0)
    before = vm("VmRSS")
    algorithm = get_algorithm(name)
    clock = time.perf_counter()
    fitted = algorithm.fit(data, split[0], algorithm.resolve(given), 0)
    seconds = time.perf_counter() - clock
    fit_peak = vm("VmHWM")
    ndcg = score_top_n(fitted, data, split[0], split[1], 10).ndcg
    found = {"seconds": seconds, "ndcg": ndcg, "before": before, "fit_peak": fit_peak}
    if candidate == "als":
        found["popularity"] = popularity_baseline(data, split, 0).ndcg
    print(json.dumps(found), flush=True)


def vm(field: str) -> int:
    """This process's ``field`` of /proc/self/status, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def measure(path: Path, candidate: str, timeout: float, max_bytes: float) -> dict:
    """Run the child (watched as bench_scale watches a training); its figures, or why it
    stopped, with its wall seconds and peak RSS."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_scale import watch_child  # not in the children: its imports would count

    started = time.perf_counter()
    errors = path.with_suffix(f".{candidate}.err")
    with open(errors, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", json.dumps([str(path), candidate])],
            stdout=subprocess.PIPE, stderr=err, text=True,
        )  # fmt: skip
        why, peak = watch_child(proc.pid, timeout, max_bytes)
        out = proc.communicate()[0]
    wall = time.perf_counter() - started
    if not why and proc.returncode:
        why = f"exit {proc.returncode}: {(errors.read_text().strip().splitlines() or [''])[-1]}"
    if why:
        return {"why": why[-160:], "wall": wall, "peak": peak}
    return {**json.loads(out.strip().splitlines()[-1]), "wall": wall, "peak": peak}


def row(movies: int, ratings: int, candidate: str, found: dict) -> str:
    name, given = CANDIDATES[candidate]
    shown = f"`{name}`" + (f" ({', '.join(f'{k}={v}' for k, v in given.items())})" if given else "")
    size = f"| {movies:,} | {ratings:,} | {shown} "
    if "why" in found:
        return f"{size}| {found['why']}, {found['wall']:,.0f} s | | {found['peak'] / MB:,.0f} | |"
    pop = f"{found['popularity']:.4f}" if "popularity" in found else ""
    return (f"{size}| {found['seconds']:,.1f} | {found['ndcg']:.4f} "
            f"| {found['fit_peak'] / MB:,.0f} | {pop} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20000,50000,100000", help="movies (= users)")
    parser.add_argument("--per-movie", type=int, default=20, help="ratings per movie")
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    parser.add_argument("--timeout", type=float, default=600, help="seconds per fit")
    parser.add_argument("--max-gb", type=float, default=10, help="RSS limit per fit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    print(f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f} at start\n")
    print("| movies (= users) | ratings | model | fit s (evaluation split) | NDCG@10 "
          "| peak MB | popularity NDCG@10 |")  # fmt: skip
    print("|---:|---:|---|---:|---:|---:|---:|", flush=True)
    with tempfile.TemporaryDirectory(prefix="handover-") as scratch:
        for movies in (int(s) for s in args.sizes.split(",")):
            path = Path(scratch) / f"{movies}.npz"
            draw(movies, args.per_movie, args.seed, path)
            for candidate in args.candidates.split(","):
                found = measure(path, candidate, args.timeout, args.max_gb * 2**30)
                print(row(movies, movies * args.per_movie, candidate, found), flush=True)
            path.unlink()


if __name__ == "__main__":
    main()
