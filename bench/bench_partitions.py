"""Partitions: insert throughput through a partitioned parent, local vs foreign partitions, and
one-user read latency on a local vs a foreign (postgres_fdw) partition.

    .venv/bin/python bench/bench_partitions.py [--rows 100000] [--reads 2000] [--read-users 20000]

Starts a primary and a shard server (LocalPostgres, fsync off) in a temp directory and
migrates the primary. Insert throughput is measured two ways, each with ROWS fresh rating
rows of 10 movies per user: COPY (one COPY ... FROM STDIN) and INSERT batches (INSERT ...
SELECT FROM unnest() of 1000 rows, a commit every 10). Tables:

* ``plain``: an unpartitioned table, primary key + movie index, no triggers (the baseline);
* ``hash 4 local``: hash-partitioned by user, 4 local partitions, same indexes, no triggers;
* ``hash 4 foreign``: the same 4 partitions as postgres_fdw foreign tables on the shard
  (server option batch_size 1000); ``batch_size 1``: the same without batching;
* ``ratings``: the real table (history trigger, reference checks), 4 local partitions; then
  with 2 of its 4 partitions placed on the shard (``movierec.db.partitions.place``); the
  importer's bulk mode (``session_replication_role = replica``, a bulk change set: no per-row
  triggers) is shown for the local case.

Reads: READ_USERS users x 25 ratings in ``ratings`` with ratings_p1 on the shard; READS
queries ``SELECT movie_id, rating FROM ratings WHERE user_id = $1`` (prepared, one
connection) for random users of ratings_p0 (local) and of ratings_p1 (foreign). Prints
markdown.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import psycopg
from psycopg import sql

from movierec.config import load_settings
from movierec.db import LocalPostgres, upgrade
from movierec.db.partitions import add_server, place
from movierec.db.partitions.loading import direct_foreign_inserts

MAX_ROWS = 2_000_000
BATCH = 1000
COMMIT_EVERY = 10

SYNTHETIC = {
    "plain": [
        "CREATE TABLE plain (user_id bigint NOT NULL, movie_id bigint NOT NULL, "
        "rating numeric(2,1) NOT NULL, rated_at timestamptz NOT NULL DEFAULT now(), "
        "PRIMARY KEY (user_id, movie_id))",
        "CREATE INDEX ON plain (movie_id)",
    ],
    "hash4": [
        "CREATE TABLE hash4 (user_id bigint NOT NULL, movie_id bigint NOT NULL, "
        "rating numeric(2,1) NOT NULL, rated_at timestamptz NOT NULL DEFAULT now()) "
        "PARTITION BY HASH (user_id)",
        *[
            f"CREATE TABLE hash4_p{r} PARTITION OF hash4 FOR VALUES WITH (MODULUS 4, REMAINDER {r})"
            for r in range(4)
        ],
        *[f"ALTER TABLE hash4_p{r} ADD PRIMARY KEY (user_id, movie_id)" for r in range(4)],
        "CREATE INDEX ON hash4 (movie_id)",
    ],
}
SHARD_TABLE = (
    "CREATE TABLE {name} (user_id bigint NOT NULL, movie_id bigint NOT NULL, "
    "rating numeric(2,1) NOT NULL, rated_at timestamptz NOT NULL DEFAULT now(), "
    "PRIMARY KEY (user_id, movie_id)); CREATE INDEX ON {name} (movie_id)"
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rows_for(first_user: int, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    i = np.arange(count, dtype=np.int64)
    users = first_user + i // 10
    movies = 1 + (i * 7 + users) % 5000
    ratings = 0.5 + (i % 10) / 2.0
    return users, movies, ratings


def copy_in(conn: psycopg.Connection, table: str, rows) -> float:
    users, movies, ratings = rows
    started = time.perf_counter()
    with conn.transaction(), conn.cursor() as cur:
        statement = sql.SQL("COPY {} (user_id, movie_id, rating) FROM STDIN")
        with cur.copy(statement.format(sql.Identifier(table))) as copy:
            for u, m, r in zip(users.tolist(), movies.tolist(), ratings.tolist(), strict=True):
                copy.write_row((u, m, r))
    return len(users) / (time.perf_counter() - started)


def insert_batches(conn: psycopg.Connection, table: str, rows) -> float:
    users, movies, ratings = rows
    statement = sql.SQL(
        "INSERT INTO {} (user_id, movie_id, rating) "
        "SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::numeric[])"
    ).format(sql.Identifier(table))
    started = time.perf_counter()
    batches = range(0, len(users), BATCH)
    for n, start in enumerate(batches):
        if n % COMMIT_EVERY == 0:
            if n:
                conn.commit()
        part = slice(start, start + BATCH)
        conn.execute(
            statement, (users[part].tolist(), movies[part].tolist(), ratings[part].tolist())
        )
    conn.commit()
    return len(users) / (time.perf_counter() - started)


def routed_insert(conn: psycopg.Connection, rows) -> float:
    """The bulk loaders' path (movierec.db.bulk.upsert_ratings in bulk mode): rows staged
    in a temp table, a shard's share inserted straight into a trigger-less foreign table
    (batched), the rest through the parent. Includes the COPY into staging."""
    users, movies, ratings = rows
    started = time.perf_counter()
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            "CREATE TEMP TABLE staged (user_id bigint, movie_id bigint, rating numeric(2,1)) "
            "ON COMMIT DROP"
        )
        with cur.copy("COPY staged FROM STDIN") as copy:
            for row in zip(users.tolist(), movies.tolist(), ratings.tolist(), strict=True):
                copy.write_row(row)
        columns = sql.SQL("user_id, movie_id, rating")
        with direct_foreign_inserts(conn, "ratings") as routes:
            assert routes, "bulk mode with foreign partitions gives routes"
            user = sql.Identifier("user_id")
            for route in routes:
                cur.execute(
                    sql.SQL("INSERT INTO {} ({}) SELECT {} FROM staged WHERE {}").format(
                        sql.Identifier(route.relation), columns, columns, route.condition(user)
                    )
                )
            elsewhere = sql.SQL(" OR ").join(r.condition(user) for r in routes)
            cur.execute(
                sql.SQL("INSERT INTO ratings ({}) SELECT {} FROM staged WHERE NOT ({})").format(
                    columns, columns, elsewhere
                )
            )
    return len(users) / (time.perf_counter() - started)


def bulk_mode(conn: psycopg.Connection) -> None:
    """What the importer does: a bulk change set (history off) and replica mode (no per-row
    trigger) for the transaction."""
    conn.execute("SET session_replication_role = replica")


def measure(conn, label: str, table: str, first_user: int, count: int, results: list) -> int:
    copy_rate = copy_in(conn, table, rows_for(first_user, count))
    first_user += count // 10
    insert_rate = insert_batches(conn, table, rows_for(first_user, count))
    first_user += count // 10
    results.append((label, copy_rate, insert_rate))
    print(f"  {label}: COPY {copy_rate:,.0f} rows/s, INSERT {insert_rate:,.0f} rows/s", flush=True)
    return first_user


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--read-users", type=int, default=20_000)
    args = parser.parse_args()
    rows = max(BATCH, min(args.rows, MAX_ROWS))

    root = Path(tempfile.mkdtemp(prefix="movierec-bench-parts-"))
    os.chmod(root, 0o755)  # the postgres OS user must enter it when we are root
    primary = LocalPostgres(root / "primary").start()
    shard = LocalPostgres(root / "shard").start()
    try:
        run(primary, shard, root, rows, args)
    finally:
        primary.stop()
        shard.stop()
        shutil.rmtree(root, ignore_errors=True)


def run(primary: LocalPostgres, shard: LocalPostgres, root: Path, rows: int, args) -> None:
    url = primary.create_database("movierec")
    upgrade(url)
    shard_url = shard.create_database("shard").replace("postgresql+psycopg://", "postgresql://")
    settings = load_settings(
        environ={}, toml_path=None, overrides={"database_url": url, "state_dir": root / "state"}
    )
    add_server(settings, "shard1", shard_url)
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    users_needed = 4 * rows // 10 + args.read_users + 10
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute(
            "INSERT INTO users (id, username) SELECT i, 'u' || i FROM generate_series(1, %s) i",
            (users_needed,),
        )
        conn.execute(
            "INSERT INTO movies (id, title) SELECT i, 'Film ' || i FROM generate_series(1, 5000) i"
        )
        conn.execute("RESET session_replication_role")
        conn.execute("VACUUM ANALYZE users, movies")
        for statements in SYNTHETIC.values():
            for statement in statements:
                conn.execute(statement)
    with psycopg.connect(shard_url, autocommit=True) as conn:
        for r in range(4):
            conn.execute(SHARD_TABLE.format(name=f"remote_p{r}"))

    results: list[tuple[str, float, float]] = []
    print(f"inserting {rows:,} rows per method and table ...", flush=True)
    with psycopg.connect(dsn) as conn:
        measure(conn, "plain table, no triggers", "plain", 1, rows, results)
        measure(conn, "hash 4 local, no triggers", "hash4", 1, rows, results)
        foreign = [
            "ALTER TABLE hash4 RENAME TO hash4_local",
            "CREATE TABLE hash4 (user_id bigint NOT NULL, movie_id bigint NOT NULL, "
            "rating numeric(2,1) NOT NULL, rated_at timestamptz NOT NULL DEFAULT now()) "
            "PARTITION BY HASH (user_id)",
            *[
                f"CREATE FOREIGN TABLE hash4_f{r} PARTITION OF hash4 "
                f"FOR VALUES WITH (MODULUS 4, REMAINDER {r}) SERVER shard1 "
                f"OPTIONS (table_name 'remote_p{r}')"
                for r in range(4)
            ],
        ]
        for statement in foreign:
            conn.execute(statement)
        conn.commit()
        measure(conn, "hash 4 foreign (batch_size 1000), no triggers", "hash4", 1, rows, results)
        for r in range(4):
            conn.execute(f"ALTER FOREIGN TABLE hash4_f{r} OPTIONS (ADD batch_size '1')")
        conn.commit()
        small = max(BATCH, rows // 4)
        measure(
            conn, "hash 4 foreign (batch_size 1), no triggers", "hash4", 1 + rows, small, results
        )
        first = measure(conn, "ratings, 4 local, triggers", "ratings", 1, rows, results)
        bulk_mode(conn)
        first = measure(conn, "ratings, 4 local, bulk mode", "ratings", first, rows, results)
        conn.execute("RESET session_replication_role")
        conn.commit()

    moved = []
    for name in ("ratings_p1", "ratings_p3"):
        report = place(settings, name, server="shard1")
        moved.append(report)
    with psycopg.connect(dsn) as conn:
        first = measure(
            conn, "ratings, 2 of 4 on the shard, triggers", "ratings", first, rows // 2, results
        )
        bulk_mode(conn)
        first = measure(
            conn, "ratings, 2 of 4 on the shard, bulk mode", "ratings", first, rows // 2, results
        )
        rate = routed_insert(conn, rows_for(first, rows // 2))
        first += rows // 20
        label = "ratings, 2 of 4 on the shard, bulk mode, direct to shard (the loaders' path)"
        results.append((label, float("nan"), rate))
        print(f"  {label}: staged COPY + INSERT {rate:,.0f} rows/s", flush=True)
        conn.execute("RESET session_replication_role")
        conn.commit()

        # Reads: users of ratings_p0 (local) and ratings_p1 (shard).
        read_first = first
        users, movies, ratings = rows_for(read_first, args.read_users * 25)
        users = read_first + np.arange(args.read_users * 25, dtype=np.int64) // 25
        bulk_mode(conn)
        copy_in(conn, "ratings", (users, movies, ratings))
        conn.execute("RESET session_replication_role")
        conn.commit()
        conn.autocommit = True
        conn.execute("ANALYZE ratings_p0")
        candidates = list(range(read_first, read_first + args.read_users))
        by_partition = {}
        for r in (0, 1):
            picked = conn.execute(
                "SELECT array_agg(u) FROM unnest(%s::bigint[]) u "
                "WHERE satisfies_hash_partition('ratings'::regclass, 4, %s, u)",
                (candidates, r),
            ).fetchone()[0]
            by_partition[r] = picked
        latency = {}
        rng = random.Random(7)
        for r, label in (
            (0, "local partition (ratings_p0)"),
            (1, "foreign partition (ratings_p1)"),
        ):
            times = []
            for _ in range(50):  # warm up: plans, fdw connection
                conn.execute(
                    "SELECT movie_id, rating FROM ratings WHERE user_id = %s",
                    (by_partition[r][0],),
                    prepare=True,
                ).fetchall()
            for _ in range(args.reads):
                user = rng.choice(by_partition[r])
                started = time.perf_counter()
                got = conn.execute(
                    "SELECT movie_id, rating FROM ratings WHERE user_id = %s", (user,), prepare=True
                ).fetchall()
                times.append(time.perf_counter() - started)
                assert len(got) == 25, (user, len(got))
            latency[label] = times

    print()
    print(
        f"### Insert throughput ({rows:,} rows per cell; batch_size 1: {rows // 4:,}; "
        f"2 of 4 on the shard: {rows // 2:,})"
    )
    print()
    print("| table | COPY rows/s | INSERT (1000-row batches) rows/s |")
    print("|---|---:|---:|")
    for label, copy_rate, insert_rate in results:
        copied = "-" if copy_rate != copy_rate else f"{copy_rate:,.0f}"  # NaN: not measured
        print(f"| {label} | {copied} | {insert_rate:,.0f} |")
    print()
    print("### `place` to the shard (copy in 50k-row chunks through batch_size 1000, verify, swap)")
    print()
    print("| partition | rows | seconds | rows/s |")
    print("|---|---:|---:|---:|")
    for report in moved:
        rate = report.rows / report.seconds if report.seconds else 0
        print(f"| {report.partition} | {report.rows:,} | {report.seconds:.2f} | {rate:,.0f} |")
    print()
    print(f"### One-user read latency ({args.reads:,} queries, 25 ratings per user)")
    print()
    print("| partition | p50 ms | p99 ms |")
    print("|---|---:|---:|")
    for label, times in latency.items():
        p50, p99 = percentile(times, 0.5) * 1e3, percentile(times, 0.99) * 1e3
        print(f"| {label} | {p50:.3f} | {p99:.3f} |")


if __name__ == "__main__":
    main()
