"""Time pgBackRest backups and point-in-time restores of a ratings-like table.

A private PostgreSQL (durable settings, WAL archiving) in a temp directory gets N rows shaped
like ``ratings`` (primary key (user_id, movie_id), index on movie_id). Then: full backup,
1 % of the rows changed, incremental backup, a mass DELETE, an in-place restore to the moment
before it (``--delta``: only changed files are rewritten) and a side-by-side restore into an
empty directory (every file copied). Prints a markdown table.

    .venv/bin/python bench/bench_backup.py            # 1M rows
    .venv/bin/python bench/bench_backup.py --10m      # 10M rows (a few minutes, ~1.5 GB)
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from movierec.db import LocalPostgres
from movierec.db import backup as lib
from movierec.db.pgbackrest import BackupConfig, BackupServer
from movierec.db.restore import plan_restore, run_restore

FILL = """
INSERT INTO ratings_bench (user_id, movie_id, rating, rated_at)
SELECT (i - 1) / 100 + 1,
       ((i - 1) %% 100) * 500 + ((i - 1) / 100) %% 500 + 1,
       ((i %% 10) + 1) / 2.0,
       now() - make_interval(secs => i)
FROM generate_series(1, %s::int) AS i
"""


def sql(server: LocalPostgres, query: str, params: tuple = ()) -> Any:
    with psycopg.connect(
        host="127.0.0.1", port=server.port, user="postgres", dbname="bench", autocommit=True
    ) as conn:
        cur = conn.execute(query, params)
        return cur.fetchone() if cur.description else None


def timed(rows: list[tuple[str, str, str]], step: str, fn: Callable[[], Any], note: str = ""):
    start = time.perf_counter()
    result = fn()
    rows.append((step, f"{time.perf_counter() - start:.1f}", note))
    return result


def mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


def run(n_rows: int, root: Path) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    server = LocalPostgres(root / "postgres").start()
    server.create_database("bench")
    servers = [BackupServer("primary", server)]
    config = BackupConfig(base_dir=root / "pgbackrest")
    timed(rows, "setup (archiving on, restart, stanza)", lambda: lib.setup(config, servers))
    sql(
        server,
        "CREATE TABLE ratings_bench (user_id int, movie_id int, rating numeric(2, 1), "
        "rated_at timestamptz, PRIMARY KEY (user_id, movie_id))",
    )
    timed(rows, f"fill {n_rows:,} rows", lambda: sql(server, FILL, (n_rows,)))
    sql(server, "CREATE INDEX ON ratings_bench (movie_id)")
    size = sql(server, "SELECT pg_database_size('bench')")[0]
    full = timed(rows, "full backup + restore point", lambda: lib.create_backup(config, servers))
    backups = lib.list_backups(config)
    rows[-1] = (*rows[-1][:2], f"db {mib(size)}, repo +{mib(backups[-1].repo_size)}")
    sql(server, "UPDATE ratings_bench SET rating = 5 WHERE user_id %% 100 = 0")
    timed(rows, "incr backup after 1 % updated", lambda: lib.create_backup(config, servers, "incr"))
    rows[-1] = (*rows[-1][:2], f"repo +{mib(lib.list_backups(config)[-1].repo_size)}")
    before = sql(server, "SELECT count(*) FROM ratings_bench")[0]
    target = sql(server, "SELECT now()")[0]
    time.sleep(0.01)
    sql(server, "DELETE FROM ratings_bench")
    plan = plan_restore(config, servers, at=target.isoformat())
    timed(rows, "PITR in place (--delta), to before DELETE", lambda: run_restore(config, plan))
    after = sql(server, "SELECT count(*) FROM ratings_bench")[0]
    rows[-1] = (*rows[-1][:2], f"{after:,} of {before:,} rows back")
    copy = root / "copy"
    plan = plan_restore(config, servers, backup=full.labels["primary"], target_dir=copy)
    restored = timed(rows, "restore full backup side by side", lambda: run_restore(config, plan))
    LocalPostgres(restored[0].state_dir).stop()
    server.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--10m", dest="ten_million", action="store_true", help="10M rows")
    parser.add_argument("--keep", action="store_true", help="keep the temp directory")
    args = parser.parse_args()
    n_rows = 10_000_000 if args.ten_million else args.rows
    root = Path(tempfile.mkdtemp(prefix="movierec-bench-backup-"))
    os.chmod(root, 0o755)  # the postgres OS user must enter it when we are root
    try:
        rows = run(n_rows, root)
    finally:
        for data in (root / "copy" / "primary", root / "postgres"):
            if (data / "pgdata").exists():
                LocalPostgres(data).stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\npgBackRest {n_rows:,} ratings-like rows, {os.cpu_count()} CPUs, zstd level 3\n")
    print("| step | seconds | notes |")
    print("|---|---:|---|")
    for step, seconds, note in rows:
        print(f"| {step} | {seconds} | {note} |")


if __name__ == "__main__":
    main()
