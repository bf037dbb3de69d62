"""History rollback: how long a dry run and a rollback of N recorded changes take, and the
longest stall a steady writer on other rows sees while the rollback runs.

    .venv/bin/python bench/bench_rollback.py [--changes 1000,10000,100000] [--timeout 900]
                                             [--shard]

For each N: a fresh database on a private server (LocalPostgres, fsync off, in a temp dir)
gets USERS users, MOVIES movies and RATINGS_PER_USER ratings per user as one bulk change set
(not recorded row by row), then N recorded changes in transactions of 1,000 rows: rating
updates (40 %), new ratings (25 %), deleted ratings (15 %), user email changes (10 %),
preferences (5 %) and movie titles (5 %), all by users of the first half. Then
``rollback(dry_run=True)`` and ``rollback()`` to the point before them, each in its own
transaction (timed to its commit), while a writer thread updates ratings of the second half's
users, one autocommit statement at a time, and records the longest single write during the
rollback. It also prints how fast the N changes were recorded, and (on the smallest N's
database, before its changes) what the history trigger adds to each inserted and updated
rating row: 2,000-row statements with and without it, rolled back. A run that outlasts
``--timeout`` seconds is cancelled and reported as such.
``--shard`` starts a second server and places two of the four ratings partitions
(``ratings_p1``, ``ratings_p3``) there (postgres_fdw), after the seed.

The code measured is whichever ``movierec`` is imported: the "before" column of BENCHMARKS.md
ran this script with ``PYTHONPATH=<a worktree at b64d87b>`` (the old engine; its migrations
too). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from pathlib import Path

import psycopg

from movierec.config import load_settings
from movierec.db import Database, LocalPostgres, upgrade
from movierec.db.engines import libpq_conninfo
from movierec.db.history import bulk_change_set, rollback
from movierec.db.partitions import add_server, place

USERS = 20_000
MOVIES = 5_000
RATINGS_PER_USER = 20
MIX = (  # (share, statement for n rows) - every row one recorded change
    (0.40, "UPDATE ratings SET rating = 0.5 + (movie_id % 10) / 2.0 WHERE (user_id, movie_id) IN "
     "(SELECT user_id, movie_id FROM ratings WHERE user_id <= {half} AND rating <> "
     "0.5 + (movie_id % 10) / 2.0 ORDER BY random() LIMIT {n})"),
    # New (user, movie) pairs: the seed gave user u the movies of k = 1..20, these go on.
    (0.25, "INSERT INTO ratings (user_id, movie_id, rating) SELECT u, "
     "1 + (u * 7 + k * 13) % {movies}, 3 FROM (SELECT 1 + c % {half} AS u, "
     "21 + c / {half} AS k FROM generate_series({left} - {n}, {left} - 1) c) x"),
    (0.15, "DELETE FROM ratings WHERE (user_id, movie_id) IN (SELECT user_id, movie_id FROM "
     "ratings WHERE user_id <= {half} ORDER BY random() LIMIT {n})"),
    (0.10, "UPDATE users SET email = 'u' || id || '-' || {left} || '@example.org' WHERE id IN "
     "(SELECT id FROM users WHERE id <= {half} ORDER BY random() LIMIT {n})"),
    (0.05, "INSERT INTO preferences (user_id, genres) SELECT id, '{{Drama}}' FROM users "
     "WHERE id <= {half} AND id NOT IN (SELECT user_id FROM preferences) LIMIT {n}"),
    (0.05, "UPDATE movies SET title = title || '!' WHERE id IN "
     "(SELECT id FROM movies ORDER BY random() LIMIT {n})"),
)  # fmt: skip


def _conninfo(url: str) -> str:
    return libpq_conninfo(url, "bench_rollback")


def seed(url: str, database: Database) -> None:
    with database.session() as session:
        tables = {"tables": ["users", "movies", "ratings"]}
        with bulk_change_set(session, "bench seed", tables):
            for statement in (
                "INSERT INTO users (id, username) SELECT i, 'u' || i "
                "FROM generate_series(1, :users) i",
                "INSERT INTO movies (id, title) SELECT i, 'Movie ' || i "
                "FROM generate_series(1, :movies) i",
                "INSERT INTO ratings (user_id, movie_id, rating) SELECT u, "
                "1 + (u * 7 + k * 13) % :movies, 3 FROM generate_series(1, :users) u, "
                "generate_series(1, :per_user) k",
            ):
                sizes = {"users": USERS, "movies": MOVIES, "per_user": RATINGS_PER_USER}
                session.execute(_text(statement), sizes)
    with psycopg.connect(_conninfo(url), autocommit=True) as conn:
        conn.execute("ANALYZE")


def _text(statement: str):
    from sqlalchemy import text

    return text(statement)


def make_changes(url: str, total: int) -> tuple[int, int]:
    """Record about ``total`` changes; returns the history ids before and after them."""
    with psycopg.connect(_conninfo(url), autocommit=True) as conn:
        point = conn.execute("SELECT coalesce(max(id), 0) FROM change_history").fetchone()[0]
        for share, template in MIX:
            left = int(total * share)
            while left > 0:
                n = min(left, 1000)
                conn.execute(template.format(n=n, half=USERS // 2, movies=MOVIES, left=left))
                left -= n
        conn.execute("ANALYZE")
        last = conn.execute("SELECT max(id) FROM change_history").fetchone()[0]
        made = conn.execute("SELECT count(*) FROM change_history WHERE id > %s", (point,))
        print(f"  recorded {made.fetchone()[0]} changes", flush=True)
    return point, last


TRIGGER_ROWS = 2000
TRIGGER_STATEMENTS = (
    "INSERT INTO ratings (user_id, movie_id, rating) "
    "SELECT u, %(movie)s, 3 FROM generate_series(1, %(rows)s) u",
    "UPDATE ratings SET rating = 4 WHERE movie_id = %(movie)s",
)


def trigger_cost(url: str, rounds: int = 3) -> tuple[float, float]:
    """Microseconds the history trigger adds to an inserted and to an updated rating row: the
    same statements with it and without it (ALTER TABLE ... DISABLE TRIGGER, rolled back),
    best of ``rounds``."""
    best = {True: [float("inf")] * 2, False: [float("inf")] * 2}
    with psycopg.connect(_conninfo(url)) as conn:
        for _ in range(rounds):
            for recorded in (True, False):
                with conn.transaction(force_rollback=True):
                    conn.execute(
                        "INSERT INTO movies (id, title) VALUES (%s, 'unrated')", (MOVIES + 1,)
                    )
                    if not recorded:
                        conn.execute(
                            "ALTER TABLE ratings DISABLE TRIGGER movierec_history, "
                            "DISABLE TRIGGER movierec_history_update"
                        )
                    for i, statement in enumerate(TRIGGER_STATEMENTS):
                        started = time.perf_counter()
                        conn.execute(statement, {"movie": MOVIES + 1, "rows": TRIGGER_ROWS})
                        took = time.perf_counter() - started
                        best[recorded][i] = min(best[recorded][i], took)
    on, off = best[True], best[False]
    return tuple((on[i] - off[i]) / TRIGGER_ROWS * 1e6 for i in range(2))


class Writer(threading.Thread):
    """Updates ratings of the second half's users, one autocommit statement at a time, and
    keeps when each write started and ended."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.stop = url, threading.Event()
        self.writes: list[tuple[float, float]] = []

    def run(self) -> None:
        with psycopg.connect(_conninfo(self.url), autocommit=True) as conn:
            user = USERS // 2
            while not self.stop.is_set():
                user = user + 1 if user < USERS else USERS // 2 + 1
                started = time.perf_counter()
                try:
                    conn.execute(
                        "UPDATE ratings SET rating = 6 - rating WHERE user_id = %s", (user,)
                    )
                except psycopg.OperationalError:  # the server stops at the end of a run
                    return
                self.writes.append((started, time.perf_counter()))
                time.sleep(0.005)

    def during(self, start: float, end: float) -> tuple[float, int]:
        """The longest write that overlapped [start, end] (a write blocked by the rollback
        ends after it), and how many overlapped."""
        overlapping = [e - s for s, e in self.writes if s < end and e > start]
        return max(overlapping, default=0.0), len(overlapping)


def timed_rollback(
    database: Database, url: str, window: tuple[int, int], dry_run: bool, timeout: float
):
    """Seconds to roll back (or dry-run) and commit, or None after ``timeout``."""
    with psycopg.connect(_conninfo(url), autocommit=True) as watcher:
        done = threading.Event()
        pid: list[int] = []

        def cancel() -> None:
            if not done.wait(timeout) and pid:
                watcher.execute("SELECT pg_cancel_backend(%s)", (pid[0],))

        guard = threading.Thread(target=cancel, daemon=True)
        started = time.perf_counter()
        try:
            with database.session() as session:
                pid.append(session.execute(_text("SELECT pg_backend_pid()")).scalar())
                guard.start()
                # Capped where the changes end, as the CLI does: the writer's own changes
                # come later and are not the rollback's business.
                rollback(session, to_id=window[0], through_id=window[1], dry_run=dry_run)
        except Exception as exc:  # noqa: BLE001 - a cancelled run is a result here
            if "cancel" not in str(exc).lower():
                raise
            return None
        finally:
            done.set()
        return time.perf_counter() - started


def measure(root: Path, changes: int, timeout: float, sharded: bool) -> dict:
    server = LocalPostgres(root / f"pg{changes}").start()
    shard = LocalPostgres(root / f"shard{changes}").start() if sharded else None
    try:
        url = server.create_database("bench")
        upgrade(url)
        settings = load_settings(
            environ={},
            toml_path=None,
            overrides={"database_url": url, "statement_timeout_ms": 3_600_000},
        )
        database = Database(settings)
        seed(url, database)
        trigger = trigger_cost(url) if changes == min(ARGS_CHANGES) else None
        if shard is not None:
            shard_url = shard.create_database("bench_shard")
            add_server(settings, "shard1", shard_url.replace("postgresql+psycopg", "postgresql"))
            for partition in ("ratings_p1", "ratings_p3"):
                place(settings, partition, server="shard1")
        started = time.perf_counter()
        window = make_changes(url, changes)
        recording = time.perf_counter() - started
        writer = Writer(url)
        writer.start()
        time.sleep(0.5)
        dry = timed_rollback(database, url, window, True, timeout)
        started = time.perf_counter()
        real = timed_rollback(database, url, window, False, timeout)
        ended = time.perf_counter()
        time.sleep(0.5)  # a write the rollback held up ends after it
        writer.stop.set()
        writer.join(10)
        stall, writes = writer.during(started, ended)
        database.dispose()
        return {
            "dry": dry,
            "real": real,
            "stall": stall,
            "writes": writes,
            "recorded_per_s": changes / recording,
            "trigger_us": trigger,
        }
    finally:
        server.stop()
        if shard is not None:
            shard.stop()


ARGS_CHANGES: list[int] = []  # the run's sizes: the trigger cost is measured on the smallest


def _seconds(value: float | None, timeout: float) -> str:
    return f"> {timeout:.0f} (cancelled)" if value is None else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", default="1000,10000,100000")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--shard", action="store_true", help="two ratings partitions remote")
    args = parser.parse_args()
    ARGS_CHANGES.extend(int(c) for c in args.changes.split(","))
    root = Path(tempfile.mkdtemp(prefix="movierec-bench-rollback-"))
    root.chmod(0o755)
    rows = []
    try:
        for changes in (int(c) for c in args.changes.split(",")):
            print(f"{changes} changes ...", flush=True)
            result = measure(root, changes, args.timeout, args.shard)
            rows.append((changes, result))
            print(f"  {result}", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        "\n| changes | dry run (s) | rollback (s) | longest write stall during it (s) | "
        "writes during it | changes recorded/s |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for changes, r in rows:
        print(
            f"| {changes:,} | {_seconds(r['dry'], args.timeout)} | "
            f"{_seconds(r['real'], args.timeout)} | {r['stall']:.3f} | {r['writes']} | "
            f"{r['recorded_per_s']:,.0f} |"
        )
    for _, r in rows:
        if r["trigger_us"] is not None:
            insert_us, update_us = r["trigger_us"]
            print(
                f"\nhistory trigger: {insert_us:.0f} us per inserted rating, "
                f"{update_us:.0f} us per updated rating ({TRIGGER_ROWS} rows, best of 3)"
            )


if __name__ == "__main__":
    main()
