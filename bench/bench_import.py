"""Import and generation times on a private PostgreSQL, as a markdown table.

    .venv/bin/python bench/bench_import.py [--runs 3] [--movielens DIR]

Starts its own server in a temp directory (never the machine's cluster), migrates a template
database, and times each job into a fresh copy of it: importing ml-latest-small and ml-100k
from ../shared/data/movielens (skipped when absent), and generating a 1M-rating synthetic
catalogue. Reports the best of ``--runs`` wall-clock times.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from movierec.config import load_settings
from movierec.data import generate_catalogue, import_movielens
from movierec.db import Database, LocalPostgres, upgrade

MOVIELENS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "movielens"
RELEASES = ("ml-latest-small", "ml-100k")
SYNTHETIC = {"movies": 20_000, "users": 10_000, "ratings": 1_000_000, "seed": 0}
TEMPLATE = "bench_template"


def time_job(server: LocalPostgres, job: Callable[[Database], str], runs: int) -> tuple:
    """Run ``job`` ``runs`` times, each into a fresh database; its label and the times."""
    times, label = [], ""
    for _ in range(runs):
        url = server.create_database(f"b_{uuid.uuid4().hex[:10]}", template=TEMPLATE)
        database = Database(
            load_settings(environ={}, toml_path=None, overrides={"database_url": url})
        )
        try:
            started = time.perf_counter()
            label = job(database)
            times.append(time.perf_counter() - started)
        finally:
            database.dispose()
    return label, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--movielens", type=Path, default=MOVIELENS)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="movierec-bench-"))
    os.chmod(root, 0o755)  # the postgres OS user must enter it when we run as root
    server = LocalPostgres(root / "pg")
    rows: list[tuple[str, str, list[float]]] = []
    try:
        server.start()
        upgrade(server.create_database(TEMPLATE))
        for name in RELEASES:
            path = args.movielens / name
            if not path.is_dir():
                print(f"skipping {name}: not found at {path}")
                continue

            def load(database: Database, path: Path = path) -> str:
                s = import_movielens(database, path)
                return f"{s.movies} movies, {s.users} users, {s.ratings} ratings"

            label, times = time_job(server, load, args.runs)
            rows.append((f"import {name}", label, times))

        def generate(database: Database) -> str:
            s = generate_catalogue(database, **SYNTHETIC)
            return f"{s.movies} movies, {s.users} users, {s.ratings} ratings"

        label, times = time_job(server, generate, args.runs)
        rows.append(("generate synthetic", label, times))
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)

    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"best of {args.runs}, fresh database each run\n")  # fmt: skip
    print("| job | rows | best (s) | runs (s) |")
    print("|---|---|---:|---|")
    for job, label, times in rows:
        runs = ", ".join(f"{t:.2f}" for t in times)
        print(f"| {job} | {label} | {min(times):.2f} | {runs} |")


if __name__ == "__main__":
    main()
