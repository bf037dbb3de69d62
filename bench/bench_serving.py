"""Serving throughput: requests/s and p50/p99 latency of the "for you" page and
/api/recommendations for logged-in users, with cold and warm caches, over local clusters of
1 or 2 web instances and 1 or 2 AI instances, through the director (HAProxy) when it is
installed, else straight to web-1.

Load comes from wrk (Debian package ``wrk``), loopback only, each run bounded (``--duration``
seconds). Users are the synthetic catalogue's; their login sessions are signed with the
cluster's own secret key (what a login would set). *Cold*: each request is a different user,
so every request misses the recommendations caches (the web's and the recommender's) and asks
the recommender, after a warm-up of the processes on 500 other users (a server measured in
its first seconds would be paging in its model and compiling its templates); *warm*: 50
users, after a warm-up run.

Each row is the median of ``--repeat`` runs (3), its range shown: on this 2-core VM one run
can differ from the next by 15 % either way. The demo data is made with 12,000 users, so
each of 3 cold runs has 3,833 users of its own, and asks for each of them once: a run that
gets through them in less than ``--duration`` ends there (10 s at 380 requests/s).
Prints a markdown table, with the CPU time each request cost the web, AI, PostgreSQL and
HAProxy processes.

``--routes switch,direct``: the database as a Patroni group with a replica behind the
director's lower level (the database switch, HAProxy in TCP mode), and each row measured
both ways, alternating run by run: the web and AI servers reaching the group through the
switch (as ``cluster up --replicas`` starts them), then restarted with URLs straight to the
primary's and the replica's own ports; the cold runs split the users between both. A route
may name other code for the servers, ``switch@DIR`` (DIR holding a ``movierec`` package,
put first on their PYTHONPATH, e.g. an earlier commit's ``git archive``): before/after
figures of a change, alternating in one run.

    .venv/bin/python bench/bench_serving.py [--duration 10] [--repeat 3] [--state-dir DIR]
        [--configs 1x1,...] [--pages for-you,movie,search] [--routes switch,direct]

Code A against code B: alternate runs on one ``--state-dir`` (the data is made once), the
old tree's with ``PYTHONPATH=bench/code_from:<its worktree>`` (see bench/code_from).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import requests
from flask import Flask
from flask.sessions import SecureCookieSessionInterface

from movierec import cluster
from movierec.cluster.launch import load_launch, save_launch
from movierec.cluster.spec import port_free
from movierec.config import load_settings
from movierec.db.patroni import leader, load_group
from movierec.demo import DemoOptions, prepare
from movierec.web.auth.sessions import GENERATION, LOGGED_IN_AT, SEEN_AT, SESSION_ID

DATA = DemoOptions(users=12_000, ratings=1_200_000)
COLD_USERS = 11_500
COLD_WARMUP_USERS = range(COLD_USERS + 1, DATA.users + 1)
WARM_USERS = 50
WARMUP_SECONDS = 3
ENDPOINTS = ("/for-you", "/api/recommendations?k=10")
# The pages by name (--pages): logged-in users each, the movie and search pages rotating over
# 50 popular movies and 10 genre searches (the pages shared by users stay warm; what is each
# user's own, their stars, is what cold measures).
PAGES = {
    "for-you": ("/for-you", ["/for-you"]),
    "api": ("/api/recommendations?k=10", ["/api/recommendations?k=10"]),
    "movie": ("/movies/ID", [f"/movies/{m}" for m in range(1, 51)]),
    "search": ("/search?genre=G", [
        f"/search?genre={g}"
        for g in ("Drama", "Comedy", "Action", "Thriller", "Romance", "Adventure", "Crime",
                  "Sci-Fi", "Horror", "Children")
    ]),
    # What a search page's script asks for after it (static/stars.js): a page's 20 movies.
    "stars": ("/stars?movies=20 IDS", [
        "/stars?movies=" + ",".join(str(m) for m in range(start, start + 20))
        for start in range(1, 200, 20)
    ]),
}  # fmt: skip
CPU_ROLES = {
    "web": "web", "ai": "AI", "primary": "PG", "director": "HAProxy", "dbswitch": "switch",
}  # fmt: skip
LUA = """
cookies = {%s}
paths = {%s}
stretch = %d
counter = 0
local started = 0
threads = {}
function setup(thread)
  thread:set("offset", started * stretch)
  started = started + 1
  table.insert(threads, thread)
end
function request()
  counter = counter + 1
  local i = (offset or 0) + counter
  -- wrk.format takes this table instead of wrk.headers (the -H ones): copy them in.
  local headers = {}
  for name, value in pairs(wrk.headers) do headers[name] = value end
  if #cookies > 0 then headers["Cookie"] = "session=" .. cookies[i %% #cookies + 1] end
  return wrk.format("GET", paths[i %% #paths + 1], headers)
end
"""
# With ``once``: a thread stops while its requests so far, and those its connections have in
# flight, stay within its stretch (they may each ask once more before it stops). wrk's own
# rate divides by the whole --duration whenever threads stop, so the script times its answers
# (LuaJIT's FFI: wrk's Lua has no clock finer than a second) and prints their rate.
LUA_ONCE = """
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_usec; } bench_timeval;
int gettimeofday(bench_timeval *tv, void *tz);
]]
local function now()
  local tv = ffi.new("bench_timeval")
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) + tonumber(tv.tv_usec) / 1e6
end
answered = 0
local ask = request
function request()
  if first == nil then first = now() end
  return ask()
end
function response()
  answered = answered + 1
  last = now()
  if answered >= stretch - %d then wrk.thread:stop() end
end
function done(summary, latency, requests)
  local from, to, n = math.huge, 0, 0
  for _, t in ipairs(threads) do
    from = math.min(from, t:get("first") or math.huge)
    to = math.max(to, t:get("last") or 0)
    n = n + t:get("answered")
  end
  io.write(string.format("Answered %%d in %%.6f s\\n", n, to - from))
end
"""


def session_cookies(secret_key: str, user_ids: Iterable[int]) -> list[str]:
    """Flask session cookies logging in ``user_ids``: what a browser holds after logging in
    and seeing its first page (which gave the session its CSRF token). wrk sends the same
    cookie every time, so without the token every page would make and send a new session."""
    app = Flask("bench")
    app.secret_key = secret_key
    signer = SecureCookieSessionInterface().get_signing_serializer(app)
    # Logged in and seen now. A browser stores the cookie the site rewrites once per eighth
    # of the idle timeout; wrk does not, so main() sets a long idle timeout, whose eighth
    # (an hour) outlasts a whole run: no page rewrites the cookie, as for browsers.
    now = int(time.time())
    return [
        signer.dumps(
            {
                "_user_id": str(u),
                GENERATION: 0,
                "_fresh": False,
                "csrf_token": os.urandom(20).hex(),
                SESSION_ID: os.urandom(18).hex(),
                LOGGED_IN_AT: now,
                SEEN_AT: now,
            }  # fmt: skip
        )
        for u in user_ids
    ]


def wrk(
    url: str,
    paths: list[str],
    cookies: list[str],
    seconds: int,
    threads: int,
    conns: int,
    once: bool = False,
    headers: Iterable[str] = (),
) -> dict:
    """Run wrk against ``url``, rotating over ``paths`` and login ``cookies`` (and sending
    ``headers``, "Name: value" each); its figures.

    Each thread walks its own stretch of the longer list. With ``once``, no cookie (or path)
    is used twice: a thread stops when its stretch runs out, which can end the run before
    ``seconds`` (wrk's rate is over the time it ran)."""
    walked = cookies if len(cookies) >= len(paths) else paths
    stretch = max(len(walked) // threads, 1)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        quoted = lambda items: ",".join(f'"{i}"' for i in items)  # noqa: E731
        script.write(LUA % (quoted(cookies), quoted(paths), stretch))
        if once:
            script.write(LUA_ONCE % (2 * math.ceil(conns / threads)))
    try:
        out = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--latency", "-s",
             script.name, *(arg for h in headers for arg in ("-H", h)), url],
            capture_output=True, text=True, timeout=seconds + 30, check=True,
        ).stdout  # fmt: skip
    finally:
        os.unlink(script.name)

    def latency(pct: str) -> float:
        value, unit = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    timed = re.search(r"^Answered (\d+) in ([\d.]+) s$", out, re.M)
    if timed:  # from the threads' first request to their last answer (once)
        requests, ran = int(timed.group(1)), float(timed.group(2))
    else:
        requests, ran = int(re.search(r"(\d+) requests in ", out).group(1)), float(seconds)
    return {
        "rps": requests / ran if timed else float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]),
        "requests": requests,
        "seconds": ran,
        "p50": latency("50"),
        "p99": latency("99"),
        "errors": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "",
    }


def cache_counters(web_ports: Iterable[int], workers: int) -> dict[str, tuple[int, int]]:
    """Recommendations cache (hits, misses) of every web worker, by pid: each instance is
    asked until all its ``workers`` answered (gunicorn hands a request to any of them)."""
    per_pid: dict[str, tuple[int, int]] = {}
    for port in web_ports:
        seen: set[str] = set()
        for _ in range(100):
            text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            pid = re.search(r'pid="(\d+)"', text).group(1)
            counts = [
                int(re.search(rf'^{name}{{[^}}]*cache="recommendations"[^}}]*}} (\d+)', text,
                              re.M).group(1))
                for name in ("movierec_cache_hits_total", "movierec_cache_misses_total")
            ]  # fmt: skip
            per_pid[pid] = (counts[0], counts[1])
            seen.add(pid)
            if len(seen) >= workers:
                break
    return per_pid


def cpu_seconds(members: Iterable[cluster.Member]) -> dict[str, float]:
    """CPU seconds used so far by each role's processes (the member's pid and its children:
    gunicorn workers, PostgreSQL backends), from ``/proc``. Per request, this cost moves less
    than the rate does with the VM's speed, and it shows where the time goes."""
    parents: dict[int, int] = {}
    used: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # gone meanwhile
            parents[int(entry)] = int(fields[1])
            used[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    totals: dict[str, float] = {}
    for member in members:
        if member.pid is None or member.role == "replica":
            continue
        role = CPU_ROLES.get(member.role, member.role)
        family = {member.pid} | {pid for pid, parent in parents.items() if parent == member.pid}
        totals[role] = totals.get(role, 0.0) + sum(used.get(pid, 0.0) for pid in family)
    return totals


def hit_rate(before: dict, after: dict) -> float | None:
    hits = sum(after[p][0] - before.get(p, (0, 0))[0] for p in after)
    misses = sum(after[p][1] - before.get(p, (0, 0))[1] for p in after)
    return hits / (hits + misses) if hits + misses else None


def ai_paths(users: int) -> list[str]:
    """Each user once; a k the web runs did not ask for, so that every answer is computed."""
    return [f"/recommend?user={u}&k=20" for u in range(1, users + 1)]


def free_base() -> int:
    for base in range(21000, 40000, 500):
        if all(port_free(p) for p in (base, base + 1, base + 2, base + 101, base + 102)):
            return base
    raise SystemExit("no free ports")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--state-dir", type=Path, help="reuse this cluster state (data, model)")
    parser.add_argument("--configs", default="1x1,2x1,1x2,2x2", help="WEBxAI,... to run")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per row; the row shows the median one"
    )
    parser.add_argument(
        "--pages",
        help=f"only these pages' rows, cold and warm (comma list of {', '.join(PAGES)}); "
        "default: 'for you', the API, anonymous movies and the AI's own row",
    )
    parser.add_argument(
        "--routes", default="",
        help="switch,direct: a replicated group, each row through the database switch and "
        "straight to the members, alternating (see the docstring)",
    )  # fmt: skip
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")

    # The servers inherit it (see session_cookies()).
    os.environ.setdefault("MOVIEREC_SESSION_IDLE_MINUTES", "480")
    root = args.state_dir or Path(tempfile.mkdtemp(prefix="movierec-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)  # the postgres OS user must enter it when we are root
    settings = load_settings(
        environ={}, toml_path=None,
        overrides={"state_dir": root / "state", "model_dir": root / "state" / "models"},
    )  # fmt: skip
    say = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    rows: list = []
    for index, config in enumerate(args.configs.split(",")):
        web, ai = (int(n) for n in config.split("x"))
        rows += bench_cluster(settings, web, ai, args, with_ai_row=index == 0, say=say)
    print(table(rows, args))
    if args.state_dir is None:
        shutil.rmtree(root, ignore_errors=True)


def bench_cluster(settings, web: int, ai: int, args, with_ai_row: bool, say) -> list:
    """Bring a cluster of ``web`` x ``ai`` instances up, measure, take it down; the rows."""
    rows = []
    # One director: the figures go through one, and an idle second one only adds checks.
    routes = [r for r in args.routes.split(",") if r]
    replicas = 1 if routes else 0
    spec = cluster.ClusterSpec.on_port(free_base(), web=web, ai=ai, directors=1, replicas=replicas)
    workers = spec.workers_per_web()
    record = cluster.up(settings, spec, say, prepare(DATA, say))
    route_now = routes[0] if routes else ""
    try:
        secret = (settings.state_dir / "secret_key").read_text().strip()
        cold = session_cookies(secret, range(1, COLD_USERS + 1))
        others = session_cookies(secret, COLD_WARMUP_USERS)
        warm = session_cookies(secret, range(1, WARM_USERS + 1))
        via = "director" if spec.director_port is not None else "web-1 direct"
        base = record.url.rstrip("/")
        check_users(base, others[-1])

        # The recommender's key (movierec.ai.keys), for the AI's own row.
        ai_key = (settings.state_dir / "ai_key").read_text().strip()

        def run(label: str, paths: list[str], cookies: list[str], kind: str, url: str = base):
            nonlocal record, route_now
            ways = routes if routes and url == base else [""]
            repeat = args.repeat if kind != "-" else 1
            runs: dict[str, list[dict]] = {way: [] for way in ways}
            for i in range(repeat):
                for j, way in enumerate(ways):
                    if way and way != route_now:
                        record = set_route(settings, way, say)
                        route_now = way
                    # Cold runs each get users of their own, or the next would hit the caches.
                    step = repeat * len(ways)
                    mine = cookies[i * len(ways) + j :: step] if kind == "cold" else cookies
                    runs[way].append(measure(paths, mine, kind, url))
            for way, done in runs.items():
                result = sorted(done, key=lambda r: r["rps"])[(len(done) - 1) // 2]
                result["rps_range"] = (min(r["rps"] for r in done), max(r["rps"] for r in done))
                result["web_workers"] = workers
                shown = f"{via}, db {way}" if way else via
                rows.append((web, ai, shown if url == base else "direct", label, kind, result))
                say(f"{web} web x {ai} ai {label} {kind} {way}: {result}")

        def measure(paths: list[str], cookies: list[str], kind: str, url: str) -> dict:
            if kind != "-":
                warmup = cookies if kind == "warm" else others
                wrk(url, paths, warmup, WARMUP_SECONDS, args.threads, args.connections)
            before = cache_counters(spec.web_ports, workers)
            cpu_before = cpu_seconds(record.members)
            # Cold runs, and the AI's own row, ask for each user once (see wrk()).
            once = kind != "warm"
            headers = [f"Authorization: Bearer {ai_key}"] if url != base else []
            result = wrk(
                url, paths, cookies, args.duration, args.threads, args.connections, once, headers
            )
            cpu_after = cpu_seconds(record.members)
            after = cache_counters(spec.web_ports, workers)
            result["hit_rate"] = hit_rate(before, after)
            served = max(result["requests"], 1)
            result["cpu_ms"] = {
                role: 1000 * (cpu_after[role] - cpu_before.get(role, 0.0)) / served
                for role in cpu_after
            }
            time.sleep(1)
            return result

        if args.pages:
            for name in args.pages.split(","):
                label, paths = PAGES[name]
                run(label, paths, cold, "cold")
                run(label, paths, warm, "warm")
            return rows
        for path in ENDPOINTS:
            run(path, [path], cold, "cold")
            run(path, [path], warm, "warm")
        if routes:
            return rows  # the comparison of the routes: the pages only
        movies = [f"/api/movies/{m}" for m in range(1, WARM_USERS + 1)]
        run("/api/movies/ID, anonymous", movies, [], "warm")
        if with_ai_row:
            run(
                "AI /recommend",
                ai_paths(COLD_USERS),
                [],
                "-",
                f"http://127.0.0.1:{spec.ai_ports[0]}",
            )
    finally:
        cluster.down(settings, say)
    return rows


def set_route(settings, route: str, say) -> cluster.ClusterRecord:
    """Restart the web and AI servers with database URLs through the switch (``switch``, as
    ``cluster up`` made them) or straight to the members' own ports (``direct``), running
    the code in DIR for ``...@DIR``; the cluster's record with their new pids. Only their
    launch records change."""
    way, _, code = route.partition("@")
    state = settings.state_dir.resolve()
    group = load_group(state / "postgres")
    primary = group.member(leader(group)).pg_port
    replica = next(m.pg_port for m in group.members if m.pg_port != primary)
    frontends = {group.primary_port: primary, group.replica_port: replica}
    record = cluster.load_record(state)
    names = [m.name for m in record.members if m.role in ("web", "ai")]
    for name in names:
        launch = load_launch(state, name)
        env = dict(launch.env)
        for key in ("MOVIEREC_DATABASE_URL", "MOVIEREC_REPLICA_URL"):
            if env.get(key):
                env[key] = route_url(env[key], frontends, direct=way == "direct")
        env.pop("PYTHONPATH", None)
        if code:
            env["PYTHONPATH"] = code
        save_launch(state, dataclasses.replace(launch, env=env))
    cluster.restart(settings, say, names)
    say(f"web and AI servers now reach the database {route}")
    return cluster.load_record(state)


def route_url(url: str, frontends: dict[int, int], direct: bool) -> str:
    """``url`` with the switch's frontend port replaced by its member's port (``direct``), or
    back."""
    for frontend, member in frontends.items():
        old, new = (frontend, member) if direct else (member, frontend)
        if f":{old}/" in url:
            return url.replace(f":{old}/", f":{new}/")
    return url


def check_users(base: str, last_cookie: str) -> None:
    """Stop if the cluster's data lacks the bench's last user: a ``--state-dir`` made by an
    older bench (fewer users) would log every cold request out, not measure it."""
    answer = requests.get(
        f"{base}/api/recommendations?k=1", cookies={"session": last_cookie}, timeout=30
    )
    if answer.status_code == 401:
        raise SystemExit(
            f"the state dir holds fewer than {DATA.users:,} users (user {DATA.users} is "
            "unknown): use a new --state-dir"
        )


def table(rows: list, args: argparse.Namespace) -> str:
    runs = args.repeat * max(len([r for r in args.routes.split(",") if r]), 1)
    lines = [
        f"wrk -t{args.threads} -c{args.connections}, {args.duration} s per run, the median of "
        f"{args.repeat} runs (req/s of all in brackets); cold: {COLD_USERS:,} users, each run "
        f"asking once for each of its own {COLD_USERS // runs:,} (so a fast run ends "
        f"sooner), after a {WARMUP_SECONDS} s warm-up on "
        f"{len(COLD_WARMUP_USERS)} others, warm: {WARM_USERS} users after a "
        f"{WARMUP_SECONDS} s warm-up; hit rate of the recommendations cache during the run "
        "(all web workers); CPU time per request of each role's processes (wrk's own is not "
        "counted).",
        "",
        "| web (workers each) | AI | via | endpoint | cache | req/s | (runs) | p50 ms | p99 ms "
        f"| recs hit rate | errors | CPU ms/req {' / '.join(CPU_ROLES.values())} |",
        "|---:|---:|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for web, ai, via, path, kind, r in rows:
        rate = "" if r["hit_rate"] is None else f"{r['hit_rate']:.0%}"
        errors = str(r["errors"]) + (f" ({r['socket_errors']})" if r["socket_errors"] else "")
        cpu = " / ".join(f"{r['cpu_ms'].get(role, 0.0):.2f}" for role in CPU_ROLES.values())
        low, high = r["rps_range"]
        spread = f"{low:,.0f}-{high:,.0f}" if low != high else ""
        lines.append(
            f"| {web} ({r['web_workers']}) | {ai} | {via} | `{path}` | {kind} | {r['rps']:,.0f} "
            f"| {spread} | {r['p50']:.1f} | {r['p99']:.1f} | {rate} | {errors} | {cpu} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
