"""Moving a big partition under a steady write load: the longest write stall, and whether every
acknowledged write arrived, for the blocking move (``--offline``: before issue 23) and the
online move (after), in one run.

    .venv/bin/python bench/bench_partition_move.py [--rows 5000000] [--rate 200] [--writers 4]
                                                   [--no-shard] [--pg-repack]

Starts a primary and a shard server (LocalPostgres) in a temp directory, migrates the
primary, adds two tablespaces and two shard databases on the shard server (``shard1``,
``shard2``), and loads ROWS ratings into ``ratings_p1`` (100 ratings for each user whose id
hashes to it; bulk mode, no triggers). Then moves ``ratings_p1``, in turn:

1. offline, default tablespace -> tablespace ``disk_a`` (the blocking move);
2. online, ``disk_a`` -> ``disk_b`` (same size, same kind of move);
3. (``--pg-repack``) ``disk_b`` -> ``disk_c`` by pg_repack 1.4 (``pg_repack -t ratings_p1
   --tablespace disk_c --moveidx``: its own trigger log and swap, for comparison; Debian's
   postgresql-15-repack, which ops/install-test-tools.sh installs);
4. offline, -> ``shard1`` (postgres_fdw);
5. online, ``shard1`` -> ``shard2``.

During each move WRITERS threads write RATE writes/s in total to the moving partition's
users (half new ratings, half changed ones; one transaction each, autocommit), from 1 s
before the move to 1 s after it. Per move it prints the move's time, the writes, their p50,
p99 and longest latency, the longest time without any acknowledged write, the move's own
account of its locks (``PlaceReport.held_s``: from the lock to the commit's return, an upper
bound), and how many acknowledged writes failed or are missing or have another value
afterwards (must be 0). Markdown.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psycopg
from sqlalchemy.engine import make_url

from movierec.config import load_settings
from movierec.db import LocalPostgres, upgrade
from movierec.db.partitions import add_server, add_tablespace, place
from movierec.db.tools import give_to_server_user

PER_USER = 100  # seeded ratings per user, movies 1..100
NEW_MOVIES = range(101, 1101)  # movies the writers add ratings for
LOAD_STATEMENT_USERS = 5000


@dataclass
class Writes:
    """What the writers saw during one move."""

    took: list[float] = field(default_factory=list)
    acked_at: list[float] = field(default_factory=list)
    expected: dict[tuple[int, int], float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def writer(dsn: str, users: list[int], rate: float, stop: threading.Event, out: Writes, seed: int):
    """Writes at ``rate``/s until ``stop``: a new rating or a changed one, alternately."""
    rng = random.Random(seed)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET lock_timeout = 0")
        due = time.perf_counter()
        step = 0
        while not stop.is_set():
            user = rng.choice(users)
            if step % 2:
                movie, value = rng.choice(NEW_MOVIES), 4.5
                statement = (
                    "INSERT INTO ratings (user_id, movie_id, rating) VALUES (%s, %s, %s) "
                    "ON CONFLICT DO NOTHING"
                )
                params = (user, movie, value)
            else:
                movie, value = rng.randint(1, PER_USER), rng.randint(1, 10) / 2
                statement = "UPDATE ratings SET rating = %s WHERE user_id = %s AND movie_id = %s"
                params = (value, user, movie)
            started = time.perf_counter()
            try:
                conn.execute(statement, params)
            except psycopg.Error as exc:
                with out.lock:
                    out.errors.append(str(exc).splitlines()[0])
            else:
                done = time.perf_counter()
                with out.lock:
                    out.took.append(done - started)
                    out.acked_at.append(done)
                    out.expected[(user, movie)] = value
            step += 1
            due += 1 / rate
            time.sleep(max(0.0, due - time.perf_counter()))


def missing(dsn: str, expected: dict[tuple[int, int], float]) -> int:
    """Acknowledged writes whose row is missing or holds another value now."""
    keys = list(expected)
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT r.user_id, r.movie_id, r.rating FROM ratings r "
            "JOIN unnest(%s::bigint[], %s::bigint[]) k(u, m) "
            "ON r.user_id = k.u AND r.movie_id = k.m",
            ([k[0] for k in keys], [k[1] for k in keys]),
        ).fetchall()
    found = {(u, m): float(r) for u, m, r in rows}
    return sum(1 for k, v in expected.items() if found.get(k) != v)


def load(dsn: str, rows: int) -> list[int]:
    """Users hashing to ratings_p1 with PER_USER ratings each (ROWS in all); returns them."""
    wanted = max(1, rows // PER_USER)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute(
            "INSERT INTO movies (id, title, year, source, source_id) "
            "SELECT i, 'Film ' || i, 1950 + i %% 70, 'bench', i FROM generate_series(1, %s) i",
            (NEW_MOVIES.stop,),
        )
        conn.execute("SELECT setval('movies_id_seq', %s)", (NEW_MOVIES.stop,))
        conn.execute(
            "INSERT INTO users (id, username) SELECT i, 'u' || i FROM generate_series(1, %s) i",
            (wanted * 4 + 1000,),
        )
        users = [
            u
            for (u,) in conn.execute(
                "SELECT id FROM users WHERE satisfies_hash_partition("
                "'ratings'::regclass, 4, 1, id) ORDER BY id LIMIT %s",
                (wanted,),
            )
        ]
        started = time.perf_counter()
        for first in range(0, len(users), LOAD_STATEMENT_USERS):
            chunk = users[first : first + LOAD_STATEMENT_USERS]
            conn.execute(
                "INSERT INTO ratings (user_id, movie_id, rating, rated_at) "
                "SELECT u, m, 0.5 + (u * m) %% 10 / 2.0, timestamptz '2020-01-01' + m * "
                "interval '1 h' FROM unnest(%s::bigint[]) u, generate_series(1, %s) m",
                (chunk, PER_USER),
            )
        conn.execute("VACUUM ANALYZE ratings_p1")
        conn.execute("CHECKPOINT")
    took = time.perf_counter() - started
    print(f"loaded {len(users) * PER_USER:,} ratings into ratings_p1 in {took:.0f} s", flush=True)
    return users


@dataclass(frozen=True)
class Repacked:
    """What :func:`move` needs of a pg_repack run (it reports none of this itself)."""

    rows: int
    online: bool = True
    held_s: float = float("nan")


def pg_repack(dsn: str, tablespace: str) -> Repacked:
    """Move ratings_p1 into ``tablespace`` with pg_repack (the extension is created first)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_repack")
        rows = conn.execute("SELECT count(*) FROM ratings_p1").fetchone()[0]
    url = make_url(dsn)
    subprocess.run(
        [
            "/usr/lib/postgresql/15/bin/pg_repack", "--no-superuser-check", "-h", url.host,
            "-p", str(url.port), "-U", url.username, "-d", url.database, "-t", "ratings_p1",
            "--tablespace", tablespace, "--moveidx", "--wait-timeout", "60",
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "PGPASSWORD": url.password or "", "LC_ALL": "C"},
        timeout=3600,
    )  # fmt: skip
    return Repacked(rows)


def move(settings, dsn: str, users: list[int], label: str, rate: float, count: int, **where):
    out, stop = Writes(), threading.Event()
    threads = [
        threading.Thread(target=writer, args=(dsn, users, rate / count, stop, out, i), daemon=True)
        for i in range(count)
    ]
    for t in threads:
        t.start()
    time.sleep(1.0)
    started = time.perf_counter()
    if "repack" in where:
        report = pg_repack(dsn, where["repack"])
    else:
        report = place(settings, "ratings_p1", **where)
    seconds = time.perf_counter() - started
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(60)
    took = np.array(out.took) * 1000
    acked = sorted(out.acked_at)
    gap = max(b - a for a, b in zip(acked, acked[1:], strict=False)) * 1000
    lost = missing(dsn, out.expected)
    held = f"{report.held_s * 1000:,.0f}" if report.online else "whole move"
    if isinstance(report, Repacked):
        held = "?"
    print(
        f"| {label} | {report.rows:,} | {seconds:.1f} | {len(took):,} | "
        f"{np.percentile(took, 50):.1f} | {np.percentile(took, 99):.0f} | {took.max():,.0f} | "
        f"{gap:,.0f} | {held} | {len(out.errors)} | {lost} |",
        flush=True,
    )
    if out.errors:
        print(f"  errors, e.g.: {out.errors[0]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--rate", type=float, default=200.0, help="writes/s in all")
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--no-shard", action="store_true", help="only the tablespace moves")
    parser.add_argument("--pg-repack", action="store_true", help="a pg_repack move too")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="movierec-bench-move-"))
    os.chmod(root, 0o755)  # the postgres OS user must enter it when we are root
    primary = LocalPostgres(root / "primary").start()
    shard = LocalPostgres(root / "shard").start()
    try:
        url = primary.create_database("movierec")
        upgrade(url)
        settings = load_settings(
            environ={}, toml_path=None, overrides={"database_url": url, "state_dir": root / "st"}
        )
        for name in ("disk_a", "disk_b", "disk_c"):
            (root / name).mkdir()
            give_to_server_user(root / name)
            add_tablespace(settings, name, root / name)
        for name in ("shard1", "shard2"):
            shard_url = shard.create_database(name)
            add_server(settings, name, shard_url.replace("postgresql+psycopg://", "postgresql://"))
        dsn = url.replace("postgresql+psycopg://", "postgresql://")
        users = load(dsn, args.rows)
        print(
            f"\n{args.writers} writers, {args.rate:.0f} writes/s in all (half new ratings, "
            "half changed), to ratings_p1's users\n"
        )
        print(
            "| move of ratings_p1 | rows | move s | writes | p50 ms | p99 ms | longest ms "
            "| longest without an ack, ms | move's own lock, ms | failed | lost |"
        )
        print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
        moves = [
            ("offline -> tablespace disk_a (before)", False, {"tablespace": "disk_a"}),
            ("online -> tablespace disk_b (after)", True, {"tablespace": "disk_b"}),
        ]
        if args.pg_repack:
            moves.append(("pg_repack -> tablespace disk_c", True, {"repack": "disk_c"}))
        if not args.no_shard:
            moves += [
                ("offline -> shard1 (before)", False, {"server": "shard1"}),
                ("online -> shard2 (after)", True, {"server": "shard2"}),
            ]
        for label, online, where in moves:
            if "repack" not in where:
                where = {**where, "online": online}
            move(settings, dsn, users, label, args.rate, args.writers, **where)
    finally:
        primary.stop()
        shard.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
