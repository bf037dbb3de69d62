"""Failover, switchover, rejoin and replica rebuild of the main database under Patroni, timed
through the site.

    .venv/bin/python bench/bench_failover.py [--ratings 1000000] [--rounds 3] [--port 26000]

Starts ``movierec cluster up --replicas 1 --web 1 --ai 1`` (a synthetic catalogue of RATINGS
ratings) in a temp directory, then, ROUNDS times each, under a steady writer that rates movies
through the director's ``POST /api/ratings`` (4 API-token users, a new (user, movie) pair per
request):

* failover: ``kill -9`` of the primary's postmaster; the time until the site acknowledges
  writes again (the end of the longest stretch without an acknowledgement: a write held
  while the site waits for the new primary counts), the acknowledged writes missing
  afterwards, the failed requests, the slowest answer;
* rejoin: from the failover until the old primary streams again on the new timeline;
* switchover: ``movierec db replica promote <replica>``; the same figures;

and once: ``db replica remove`` + ``db replica create`` of the replica (a full rebuild:
pg_basebackup of every rating). Patroni's default ttl 30 / loop_wait 10. Bounded: every wait
has a deadline, and the cluster is taken down at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.writer import SteadyWriter, make_writers, movie_ids  # noqa: E402

from movierec.config import load_settings  # noqa: E402
from movierec.db import Database  # noqa: E402
from movierec.db.patroni import cluster_view, leader, load_group  # noqa: E402


def movierec(state: Path, *args: str, timeout: float = 1800) -> str:
    env = {**os.environ, "MOVIEREC_STATE_DIR": str(state), "COLUMNS": "200"}
    env.pop("MOVIEREC_DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "movierec", *args],
        env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"movierec {' '.join(args)} failed: {done.stdout}{done.stderr}")
    return done.stdout


def wait(state: Path, ready, timeout: float = 120.0) -> float:
    """Seconds until ``ready(views)``; raises SystemExit after ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if ready(cluster_view(load_group(state / "postgres"))):
                return time.monotonic() - started
        except Exception:  # noqa: BLE001 - a member may not answer mid-change
            pass
        time.sleep(0.2)
    raise SystemExit(f"not ready after {timeout} s")


def healthy(views) -> bool:
    lead = [v for v in views if v.is_leader and v.state == "running"]
    return bool(lead) and any(
        v.role == "sync_standby" and v.state == "streaming" and v.timeline == lead[0].timeline
        for v in views
    )


def drill(state: Path, site: str, database: Database, kind: str, round_: int) -> dict:
    wait(state, healthy)
    group = load_group(state / "postgres")
    old = leader(group)
    other = next(m.name for m in group.members if m.name != old)
    writer = SteadyWriter(
        site, make_writers(database, 4, f"{kind}{round_}_{int(time.time())}_"),
        movie_ids(database), max_seconds=120,
    ).start()  # fmt: skip
    time.sleep(2)
    started = time.monotonic()
    if kind == "failover":
        member = group.member(old)
        os.kill(int((member.local.data_dir / "postmaster.pid").read_text().split()[0]), 9)
    else:
        movierec(state, "db", "replica", "promote", other, "--yes")
    wait(state, lambda views: any(v.is_leader and v.name != old for v in views), 60)
    wait(state, healthy, 120)
    rejoined_at = time.monotonic() - started
    time.sleep(3)
    writer.stop()
    failed = writer.failed()
    return {
        "outage": writer.outage_after(started),
        "stall": writer.stall_after(started),
        "lost": len(writer.lost(database)),
        "acknowledged": len(writer.acknowledged()),
        "failed": len(failed),
        # The longest a write was held (waiting for the new primary) before its answer.
        "slowest": max(o.took for o in writer.outcomes if o.at >= started),
        "statuses": sorted({o.status for o in failed}),
        "rejoin": rejoined_at,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ratings", type=int, default=1_000_000)
    parser.add_argument("--movies", type=int, default=5000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--port", type=int, default=26_000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="movierec-bench-failover-"))
    os.chmod(root, 0o755)
    state = root / "state"
    try:
        started = time.monotonic()
        movierec(
            state, "cluster", "up", "--replicas", "1", "--web", "1", "--ai", "1",
            "--port", str(args.port), "--movies", str(args.movies), "--users", str(args.users),
            "--ratings", str(args.ratings),
        )  # fmt: skip
        print(f"cluster up: {time.monotonic() - started:.0f} s ({args.ratings:,} ratings)")
        url = (state / "postgres" / "database_url").read_text().strip()
        overrides = {"database_url": url, "state_dir": state}
        database = Database(load_settings(environ={}, toml_path=None, overrides=overrides))
        site = f"http://127.0.0.1:{args.port}"
        for kind in ("failover", "switchover"):
            results = [drill(state, site, database, kind, r) for r in range(args.rounds)]
            for r in results:
                print(
                    f"{kind}: writes OK after {r['outage']:.1f} s (the longest stretch "
                    f"without an acknowledged write {r['stall']:.1f} s), {r['lost']} of "
                    f"{r['acknowledged']} acknowledged lost, {r['failed']} failed "
                    f"{r['statuses']}, slowest answer {r['slowest']:.1f} s, healthy again "
                    f"(rejoined) after {r['rejoin']:.1f} s"
                )
            outages = [r["outage"] for r in results]
            print(f"{kind}: median {statistics.median(outages):.1f} s, max {max(outages):.1f} s, "
                  f"lost {sum(r['lost'] for r in results)}")  # fmt: skip
        wait(state, healthy)
        group = load_group(state / "postgres")
        replica = next(m.name for m in group.members if m.name != leader(group))
        movierec(state, "db", "replica", "remove", replica, "--yes")
        started = time.monotonic()
        movierec(state, "db", "replica", "create")
        print(f"replica re-created (pg_basebackup of {args.ratings:,} ratings, streaming): "
              f"{time.monotonic() - started:.1f} s")  # fmt: skip
        database.dispose()
    finally:
        if (state / "cluster.json").exists():
            movierec(state, "cluster", "down")
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    main()
