"""Requests/s and p50/p99 latency of one recommender (AI) instance under gunicorn (2 workers):
``/recommend`` with a cold and a warm per-user result cache, exact scoring and ANN.

Data: a synthetic catalogue (``--movies``, ``--users``, ``--ratings``) in a private PostgreSQL
on 127.0.0.1, and an ALS model (what ``--algo auto`` trains above 20,000 movies) with its ANN
index (the catalogue is above ``ann_min_items``). The same artifact is served twice: exact
(``MOVIEREC_ANN_NPROBE=0``) and ANN (nprobe 32). Every request reads the user's ratings,
preferences and searches from the database, as in production.

Load: wrk (Debian package ``wrk``), loopback, each run ``--duration`` seconds. *Cold*: each
request is a different user (the per-user cache misses); *warm*: 100 users, after a warm-up
run, so every worker's cache holds them. The hit rate is read from both workers' /metrics.

    .venv/bin/python bench/bench_ai_server.py [--duration 10] [--connections 8]
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from sqlalchemy import text

from movierec.ai import TrainParams, train_model
from movierec.config import load_settings
from movierec.data import generate_catalogue
from movierec.db import Database, LocalPostgres, upgrade
from movierec.db.local_server import free_port

WARM_USERS = 100
WARMUP_SECONDS = 3
AI_KEY = secrets.token_urlsafe(24)  # the server this bench starts demands it (movierec.ai.keys)
LUA = """
paths = {%s}
counter = 0
local started = 0
function setup(thread)
  thread:set("offset", started * 7919)
  started = started + 1
end
function request()
  counter = counter + 1
  return wrk.format("GET", paths[((offset or 0) + counter) %% #paths + 1])
end
"""


def wrk(url: str, paths: list[str], seconds: int, connections: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(LUA % ",".join(f'"{p}"' for p in paths))
    try:
        out = subprocess.run(
            ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script.name,
             "-H", f"Authorization: Bearer {AI_KEY}", url],
            capture_output=True, text=True, timeout=seconds + 30, check=True,
        ).stdout  # fmt: skip
    finally:
        os.unlink(script.name)

    def latency(pct: str) -> float:
        value, unit = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": latency("50"),
        "p99": latency("99"),
        "errors": int(errors.group(1)) if errors else 0,
    }


def cache_counts(url: str, workers: int = 2) -> dict[str, tuple[float, float]]:
    """(hits, misses) of the per-user cache, per worker pid."""
    found: dict[str, tuple[float, float]] = {}
    for _ in range(200):
        body = requests.get(f"{url}/metrics", timeout=5).text
        pid = re.search(r'pid="(\d+)"', body).group(1)
        counts = []
        for name in ("hits", "misses"):
            hit = re.search(
                rf'^movierec_recommender_cache_{name}_total{{[^}}]*cache="recommend"}} (\S+)$',
                body, re.M,
            )  # fmt: skip
            counts.append(float(hit.group(1)) if hit else 0.0)
        found[pid] = (counts[0], counts[1])
        if len(found) >= workers:
            break
    return found


def hit_rate(before: dict, after: dict) -> float:
    hits = sum(after[p][0] - before.get(p, (0, 0))[0] for p in after)
    misses = sum(after[p][1] - before.get(p, (0, 0))[1] for p in after)
    return hits / (hits + misses) if hits + misses else float("nan")


def serve(root: Path, db_url: str, port: int, nprobe: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "MOVIEREC_DATABASE_URL": db_url,
        "MOVIEREC_MODEL_DIR": str(root / "models"),
        "MOVIEREC_ANN_NPROBE": str(nprobe),
        "MOVIEREC_INSTANCE_NAME": f"ai-bench-{nprobe}",
        "MOVIEREC_AI_KEY": AI_KEY,
    }
    movierec = Path(sys.executable).parent / "movierec"
    process = subprocess.Popen(
        [str(movierec), "serve", "ai", "--port", str(port), "--workers", "2"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).ok:
                return process
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit("the AI server did not become healthy in 60 s")


def worker_memory(master: int) -> list[dict[str, int]]:
    """Rss, Pss and the shared part (kB) of each gunicorn worker: the model's mapped pages
    are counted in every worker's Rss but split between them in Pss."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    out = []
    for pid in children:
        fields = {}
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
            name, value = line.split(":", 1)
            fields[name] = int(value.split()[0])
        out.append(fields)
    return out


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--movies", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--ratings", type=int, default=1_000_000)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    say = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    root = Path(tempfile.mkdtemp(prefix="movierec-bench-ai-"))
    os.chmod(root, 0o755)  # the postgres OS user must enter it when we run as root
    server = LocalPostgres(root / "pg")
    rows, memory = [], []
    try:
        server.start()
        url = server.create_database("bench")
        upgrade(url)
        database = Database(
            load_settings(environ={}, toml_path=None, overrides={"database_url": url})
        )
        try:
            clock = time.perf_counter()
            generate_catalogue(database, args.movies, args.users, args.ratings, seed=0)
            say(f"generated in {time.perf_counter() - clock:.0f} s")
            clock = time.perf_counter()
            report = train_model(
                database, root / "models", TrainParams(test_size=0), algo="als",
            )  # fmt: skip
            meta = report.artifact.meta
            took = time.perf_counter() - clock
            say(f"trained {report.artifact.version} in {took:.0f} s; ann {meta['ann']}")
            with database.session(readonly=True) as session:
                users = [int(u) for u in session.scalars(text("SELECT id FROM users ORDER BY id"))]
        finally:
            database.dispose()
        cold = [f"/recommend?user={u}&k=10" for u in users]
        warm = cold[:WARM_USERS]
        for label, nprobe in (("exact", 0), ("ANN nprobe=32", 32)):
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            process = serve(root, url, port, nprobe)
            try:
                for kind, paths in (("cold", cold), ("warm", warm)):
                    if kind == "warm":
                        wrk(base, paths, WARMUP_SECONDS, args.connections)
                    before = cache_counts(base)
                    result = wrk(base, paths, args.duration, args.connections)
                    result["hit_rate"] = hit_rate(before, cache_counts(base))
                    rows.append((label, kind, result))
                    say(f"{label} {kind}: {result}")
                memory.append((label, worker_memory(process.pid)))
            finally:
                stop(process)
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"\nOne AI instance, gunicorn 2 workers × 4 threads, ALS ({args.movies:,} movies, "
        f"{args.users:,} users, {args.ratings:,} ratings), wrk 2 threads × {args.connections} "
        f"connections, {args.duration} s per run, k=10, {os.cpu_count()} CPUs shared by wrk, "
        "gunicorn and PostgreSQL.\n"
    )
    print("| scoring | per-user cache | requests/s | p50 ms | p99 ms | hit rate | errors |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for label, kind, r in rows:
        print(f"| {label} | {kind} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | "
              f"{r['hit_rate']:.0%} | {r['errors']} |")  # fmt: skip
    print("\nMemory of the two workers after the runs (MB): Rss counts the mapped model in each "
          "worker, Pss splits shared pages between the processes mapping them.\n")  # fmt: skip
    print("| scoring | worker | Rss | Pss | shared (clean + dirty) | private anonymous |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, workers in memory:
        for i, m in enumerate(workers, 1):
            shared = (m.get("Shared_Clean", 0) + m.get("Shared_Dirty", 0)) / 1024
            print(f"| {label} | {i} | {m['Rss'] / 1024:.0f} | {m['Pss'] / 1024:.0f} | "
                  f"{shared:.0f} | {m.get('Anonymous', 0) / 1024:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
