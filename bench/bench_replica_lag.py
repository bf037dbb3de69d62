"""Replication lag under a write load: one primary and one streaming replica on this machine.

    .venv/bin/python bench/bench_replica_lag.py [--seconds 10] [--writers 2] [--batch 500]
                                                [--sync] [--durable]

Starts a primary (LocalPostgres) and a replica (``movierec.db.replicas.create_replica``) in a
temp directory, then WRITERS threads INSERT batches of BATCH rating-like rows (one commit per
batch) for SECONDS. Every 100 ms the main thread samples ``replication_status`` (the same
numbers ``movierec db replica status`` shows) and records the replica's replay lag in bytes
and seconds. Prints p50/p99/max lag, rows/s, and how long the replica took to catch up after
the load stopped. ``--sync`` turns synchronous replication on and makes writers commit with
synchronous_commit = remote_apply; ``--durable`` keeps fsync on (LocalPostgres turns it off).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import psycopg

from movierec.config import load_settings
from movierec.db import LocalPostgres
from movierec.db.replicas import create_replica, replication_status, set_synchronous

SAMPLE_EVERY = 0.1
MAX_SECONDS = 120.0  # bounded: a typo in --seconds must not run for an hour
INSERT = """
INSERT INTO bench_ratings (user_id, movie_id, rating, note)
SELECT (random() * 1e6)::int, (random() * 1e5)::int, (1 + floor(random() * 9)) / 2,
       md5(random()::text) || md5(random()::text)
FROM generate_series(1, %s)
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def writer(dsn: str, batch: int, sync: bool, stop: threading.Event, counts: list[int], i: int):
    with psycopg.connect(dsn, autocommit=True) as conn:
        if sync:
            conn.execute("SET synchronous_commit = remote_apply")
        while not stop.is_set():
            conn.execute(INSERT, (batch,))
            counts[i] += batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--sync", action="store_true")
    parser.add_argument("--durable", action="store_true")
    args = parser.parse_args()
    seconds = max(1.0, min(args.seconds, MAX_SECONDS))

    root = Path(tempfile.mkdtemp(prefix="movierec-bench-repl-"))
    os.chmod(root, 0o755)  # the postgres OS user must enter it when we are root
    state = root / "state"
    primary = LocalPostgres(state / "postgres", durable=args.durable).start()
    try:
        url = primary.create_database("movierec")
        settings = load_settings(
            environ={}, toml_path=None, overrides={"database_url": url, "state_dir": state}
        )
        dsn = url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE bench_ratings (id bigserial PRIMARY KEY, user_id int, "
                "movie_id int, rating numeric(2,1), note text, "
                "created_at timestamptz DEFAULT now())"
            )
        started = time.monotonic()
        create_replica(settings, "r1")
        print(f"replica created and streaming in {time.monotonic() - started:.1f} s")
        if args.sync:
            set_synchronous(settings, True, "r1")
        run(settings, dsn, args, seconds)
    finally:
        for replica in state.glob("replica-*"):
            LocalPostgres(replica).stop()
        primary.stop()
        shutil.rmtree(root, ignore_errors=True)


def run(settings, dsn: str, args: argparse.Namespace, seconds: float) -> None:
    stop = threading.Event()
    counts = [0] * args.writers
    threads = [
        threading.Thread(target=writer, args=(dsn, args.batch, args.sync, stop, counts, i))
        for i in range(args.writers)
    ]
    lag_bytes: list[float] = []
    lag_seconds: list[float] = []
    sample_costs: list[float] = []
    begin = time.monotonic()
    for thread in threads:
        thread.start()
    try:
        while time.monotonic() - begin < seconds:
            tick = time.monotonic()
            r1 = next(s for s in replication_status(settings) if s.name == "r1")
            sample_costs.append(time.monotonic() - tick)
            if r1.lag_bytes is not None:
                lag_bytes.append(r1.lag_bytes)
            if r1.lag_seconds is not None:
                lag_seconds.append(r1.lag_seconds)
            time.sleep(max(0.0, SAMPLE_EVERY - (time.monotonic() - tick)))
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    elapsed = time.monotonic() - begin
    catchup_start = time.monotonic()
    while next(s for s in replication_status(settings) if s.name == "r1").lag_bytes:
        if time.monotonic() - catchup_start > 60:
            raise SystemExit("the replica did not catch up within 60 s")
        time.sleep(0.01)
    catchup = time.monotonic() - catchup_start

    rows = sum(counts)
    mode = "sync (remote_apply)" if args.sync else "async"
    print(
        f"load: {args.writers} writers x {args.batch}-row batches, {mode}, "
        f"fsync {'on' if args.durable else 'off'}, {elapsed:.1f} s"
    )
    print(f"rows: {rows:,} ({rows / elapsed:,.0f} rows/s)")
    print(f"samples: {len(lag_bytes)} (each took {percentile(sample_costs, 0.5) * 1e3:.1f} ms)")
    print(f"{'':14}{'p50':>12}{'p99':>12}{'max':>12}")
    print(
        f"{'lag bytes':14}"
        + "".join(f"{percentile(lag_bytes, q):>12,.0f}" for q in (0.5, 0.99, 1.0))
    )
    print(
        f"{'lag ms':14}"
        + "".join(f"{percentile(lag_seconds, q) * 1e3:>12.1f}" for q in (0.5, 0.99, 1.0))
    )
    print(f"caught up {catchup * 1e3:.0f} ms after the load stopped")


if __name__ == "__main__":
    main()
