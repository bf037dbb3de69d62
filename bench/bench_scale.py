"""The whole product at scale (issue 23, section 2): a ``--topology full`` cluster on this
machine with a synthetic catalogue of ``--movies``, ``--users`` and ``--ratings``, and one
table of what each part costs at that size.

    .venv/bin/python bench/bench_scale.py --movies 1000000 --users 1000000 --ratings 20000000 \\
        --state-dir /tmp/scale-full [--phases up,pages,serving,backup,replica] [--keep-up]

Phases (``--phases``, in this order; a phase re-run on a kept ``--state-dir`` replaces its rows,
the table shows every row measured there so far):

* ``up``: ``cluster up --topology full`` (a Patroni group of primary + replica, two shard
  servers holding ratings_p2 and _p3, the tablespace disk2 holding ratings_p0, pgBackRest)
  with the data made by this script: the catalogue drawn (NumPy) and loaded (COPY, one
  transaction), one user given 5,000 ratings and the admin role, the two models the site
  serves trained by ``movierec model train`` in a child process each (wall time, peak RSS,
  artifact size, hold-out NDCG@10 of the model and of popularity), then the rest of
  ``up`` (each step's seconds, from its progress lines). Database size per partition and
  server. A training that fails, passes ``--train-timeout`` or ``--train-max-gb`` is
  reported and replaced by ALS (so the rest can run).
* ``pages``: the moderate selections through the director, wrk per page (``--duration``
  seconds, 2 threads, 8 connections): title search (full text, typos; distinct queries),
  a movie page (random movies, the most rated ones), the account page of the user with
  5,000 ratings, the admin page, the home page (popular movies); plus the popular-movies and
  admin-count statements timed once each, as a worker runs them when its cache is empty.
* ``serving``: "for you" cold (every request another user, each once) and warm (50 users)
  through the director, and the memory (RSS, PSS) of each AI and web worker.
* ``backup``: a full backup, 1 % of ratings changed, an incremental backup, then a
  point-in-time restore of every server (``movierec backup restore --time``) to the moment
  before a deliberate mistake (the ratings of 0.1 % of users deleted), checked by count.
* ``replica``: ``movierec db replica create`` (Patroni clones the primary), then removed.
* ``taste`` (no cluster): the catalogue drawn in this process, each user's latest 20 % held
  out, NDCG@10 of ALS (what trains at any size) against popularity's.

The cluster is taken down at the end unless ``--keep-up``; a later run on the same
``--state-dir`` starts it again on its data and models (``up`` then reuses both).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import requests
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serving import cpu_seconds, session_cookies, wrk  # noqa: E402

from movierec import cluster  # noqa: E402
from movierec.ai.algorithms import get_algorithm  # noqa: E402
from movierec.ai.artifact import read_artifact  # noqa: E402
from movierec.ai.dataset import ratings_from_arrays  # noqa: E402
from movierec.ai.registry import newest_of_kind  # noqa: E402
from movierec.ai.train import popularity_baseline, ranking_metrics, time_split  # noqa: E402
from movierec.cluster.members import member_alive  # noqa: E402
from movierec.cluster.spec import port_free  # noqa: E402
from movierec.config import Settings, load_settings  # noqa: E402
from movierec.data import generate_catalogue, sample_catalogue  # noqa: E402
from movierec.data.synthetic import catalogue as synthetic  # noqa: E402
from movierec.data.synthetic.words import ADJECTIVES, NOUNS  # noqa: E402
from movierec.db import Database, Movie  # noqa: E402
from movierec.db import backup as lib  # noqa: E402
from movierec.db.connect import connect  # noqa: E402
from movierec.db.partitions import list_partitions  # noqa: E402
from movierec.db.partitions.catalog import primary  # noqa: E402
from movierec.db.partitions.servers import connect_server  # noqa: E402
from movierec.demo import demo_password, ensure_demo_user  # noqa: E402

PHASES = ("taste", "up", "pages", "serving", "backup", "replica")
HEAVY_USER = 1  # given HEAVY_RATINGS ratings and the admin role
HEAVY_RATINGS = 5000
COLD_USERS = 20_000  # "for you" cold: each once, from user 1,001 on
COLD_WARMUP = 500
WARM_USERS = 50
VENV_BIN = Path(sys.executable).parent
MB = 2**20

Say = Callable[[str], None]


class Results:
    """Rows of the table, kept in ``state_dir/scale-results.json`` so that phases run apart
    make one table. A row: phase, what, figure, note."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: list[list[str]] = json.loads(path.read_text()) if path.exists() else []

    def start(self, phase: str) -> None:
        self.rows = [r for r in self.rows if r[0] != phase]
        self.save()

    def add(self, phase: str, what: str, figure: str, note: str = "") -> None:
        self.rows.append([phase, what, figure, note])
        print(f"  [{phase}] {what}: {figure}  {note}", file=sys.stderr, flush=True)
        self.save()

    def save(self) -> None:
        order = {p: i for i, p in enumerate(PHASES)}
        self.rows.sort(key=lambda r: order.get(r[0], -1))  # stable: within a phase, as made
        self.path.write_text(json.dumps(self.rows, indent=1))

    def table(self, title: str) -> Table:
        table = Table(title=title, show_lines=False)
        for column in ("phase", "what", "figure", "note"):
            table.add_column(column, justify="right" if column == "figure" else "left")
        for row in self.rows:
            table.add_row(*row)
        return table


class Log:
    """``say`` for ``cluster.up``: prints each line with the seconds since the previous one,
    and keeps them: the seconds before a line are the step it reports (a partition moved,
    a replica cloned)."""

    def __init__(self) -> None:
        self.last = time.perf_counter()
        self.lines: list[tuple[float, str]] = []

    def __call__(self, text: str) -> None:
        now = time.perf_counter()
        self.lines.append((now - self.last, text))
        print(f"(+{now - self.last:6.1f} s) {text}", file=sys.stderr, flush=True)
        self.last = now

    def mark(self) -> None:
        self.last = time.perf_counter()


# --- the cluster ------------------------------------------------------------------------


def bench_settings(root: Path) -> Settings:
    return load_settings(
        environ={}, toml_path=None,
        overrides={"state_dir": root / "state", "model_dir": root / "state" / "models"},
    )  # fmt: skip


def free_base() -> int:
    """A port P with the full topology's ports free: P..P+2, P+100..P+102, P+190..P+210."""
    for base in range(23000, 40000, 500):
        wanted = [base, base + 1, base + 2, base + 100, base + 101, base + 102]
        if all(port_free(p) for p in [*wanted, *range(base + 190, base + 211)]):
            return base
    raise SystemExit("no free ports")


def admin_env(settings: Settings) -> dict[str, str]:
    """The environment of a ``movierec`` admin command on this cluster (the owner's URL)."""
    return {
        **os.environ,
        "MOVIEREC_STATE_DIR": str(settings.state_dir.resolve()),
        "MOVIEREC_MODEL_DIR": str(settings.model_dir.resolve()),
        "MOVIEREC_DATABASE_URL": owner_url(settings),
    }


def owner_url(settings: Settings) -> str:
    return cluster.admin_url_file(settings).read_text().strip()


def admin_settings(settings: Settings) -> Settings:
    """``settings`` with the owner's URL, for the library's admin functions."""
    return settings.replace(database_url=owner_url(settings))


def libpq(url: str) -> str:
    """A SQLAlchemy URL (``postgresql+psycopg://``) as libpq takes it."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def running(settings: Settings) -> bool:
    record = cluster.load_record(settings.state_dir.resolve())
    return record is not None and any(
        member_alive(m) for m in record.members if m.role in ("web", "ai")
    )


def bring_up(settings: Settings, args, results: Results | None) -> cluster.ClusterRecord:
    """The cluster, started (with data and models) unless it runs; with ``results``, the
    ``up`` phase's rows."""
    state = settings.state_dir.resolve()
    if running(settings):
        return cluster.load_record(state)
    log = Log()
    spec = cluster.ClusterSpec.on_port(
        **cluster.with_topology({"topology": "full", "port": free_base()})
    )
    started = time.perf_counter()
    times: dict[str, float] = {}
    record = cluster.up(settings, spec, log, prepare(args, log, results, times))
    total = time.perf_counter() - started
    if results is not None:
        layout_rows(results, log, times)
        results.add("up", "`cluster up --topology full`, all of it", f"{total:,.0f} s",
                    "with the data and models above")  # fmt: skip
        size_rows(settings, results)
    return record


def prepare(args, log: Log, results: Results | None, times: dict[str, float]):
    """``cluster.up``'s data step: the catalogue, the heavy admin user, the two models."""

    def run(database: Database, settings: Settings) -> None:
        with database.session(readonly=True) as session:
            loaded = session.query(Movie.id).limit(1).first() is not None
        if not loaded:
            generate(database, args, results)
            heavy_user(settings.database_url, results)
        ensure_demo_user(database, demo_password(settings))
        train(settings, args, results)
        times["prepared"] = time.perf_counter()
        log.mark()

    return run


def generate(database: Database, args, results: Results | None) -> None:
    marks: dict[int, float] = {}

    def progress(step: int, _steps: int) -> None:
        marks[step] = time.perf_counter()
        print(f"  generate: step {step} of {_steps}", file=sys.stderr, flush=True)

    summary = generate_catalogue(
        database, args.movies, args.users, args.ratings, seed=args.seed, progress=progress
    )
    if results is None:
        return
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    drawn, loaded = marks[1] - marks[0], marks[6] - marks[1]
    results.add("up", "generate: draw the catalogue (NumPy)", f"{drawn:,.1f} s",
                f"{summary.movies:,} movies, {summary.users:,} users, {summary.ratings:,} "
                f"ratings; this process's peak RSS {peak / MB:,.0f} MB; "
                f"{generator_note(args.seed)}")  # fmt: skip
    results.add("up", "import: COPY + upsert, one transaction, + ANALYZE", f"{loaded:,.1f} s",
                f"{summary.ratings / loaded:,.0f} ratings/s, "
                f"{(summary.ratings + summary.movies + summary.users) / loaded:,.0f} rows/s "
                f"({summary.ratings / (marks[6] - marks[0]):,.0f} ratings/s "
                "with the draw)")  # fmt: skip


def generator_note(seed: int) -> str:
    """Which catalogue the figures are of. The medium run's ALS lost to popularity (0.0108
    against 0.0337) on the generator of then (niches of 100 movies, followed half the time),
    and the taste phase's 0.065 against 0.017 on the next one (50 niches, 80 %) was read
    beside it as the same data: a row now names its generator."""
    share = f"{synthetic.NICHE_SHARE * 100:.0f} %"
    return (f"generator: {synthetic.NICHES} niches, {share} of what a user considers from "
            f"their {synthetic.FAN_NICHES}, seed {seed}")  # fmt: skip


def heavy_user(url: str, results: Results | None) -> None:
    """User ``HEAVY_USER`` gets ratings up to ``HEAVY_RATINGS`` (the movies they have not
    rated, by id) and the admin role."""
    started = time.perf_counter()
    with connect(libpq(url), "the primary") as conn:
        have = conn.execute(
            "SELECT count(*) FROM ratings WHERE user_id = %s", (HEAVY_USER,)
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO ratings (user_id, movie_id, rating, rated_at) "
            "SELECT %(u)s, m.id, 0.5 + (m.id %% 10) * 0.5, "
            "now() - make_interval(mins => m.id::int) "
            "FROM movies m WHERE NOT EXISTS "
            "(SELECT 1 FROM ratings r WHERE r.user_id = %(u)s AND r.movie_id = m.id) "
            "ORDER BY m.id LIMIT %(n)s",
            {"u": HEAVY_USER, "n": max(HEAVY_RATINGS - have, 0)},
        )
        conn.execute("UPDATE users SET is_admin = true WHERE id = %s", (HEAVY_USER,))
        now = conn.execute(
            "SELECT count(*) FROM ratings WHERE user_id = %s", (HEAVY_USER,)
        ).fetchone()[0]
    if results is not None:
        results.add("up", f"user {HEAVY_USER}: ratings added, admin role",
                    f"{time.perf_counter() - started:,.1f} s", f"{now:,} ratings now")  # fmt: skip


# --- training ---------------------------------------------------------------------------


def train(settings: Settings, args, results: Results | None) -> None:
    """The ranking model (``auto``) and the rating model, each by ``movierec model train``
    in a child process, unless the model directory has one of that kind."""
    for kind, algo in (("ranking", "auto"), ("rating", "svd")):
        if newest_of_kind(settings.model_dir, kind):
            continue
        limit = args.ranking_timeout if kind == "ranking" else args.train_timeout
        found = train_child(settings, algo, args, limit)
        if results is not None:
            train_rows(results, settings, kind, algo, found)
        if not found["ok"] and kind == "ranking":  # something must serve: ALS, fast at any size
            fallback = train_child(settings, "als", args, args.train_timeout)
            if results is not None:
                train_rows(results, settings, kind, "als (fallback)", fallback)


def train_child(settings: Settings, algo: str, args, timeout: float) -> dict:
    """Run ``movierec model train --algo ALGO``; wall seconds, peak RSS, whether it made a
    model and why not. Killed past ``--train-timeout`` seconds or ``--train-max-gb``."""
    env = admin_env(settings)
    log_path = settings.state_dir / "logs" / f"train-{algo}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(log_path, "w") as log:
        child = subprocess.Popen(
            [str(VENV_BIN / "movierec"), "model", "train", "--algo", algo],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        killed, peak = watch_child(child.pid, timeout, args.train_max_gb * 2**30)
        _, status, _usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    tail = log_path.read_text().strip().splitlines()[-1:] or [""]
    return {
        "ok": child.returncode == 0 and not killed,
        "seconds": seconds,
        "peak": peak,
        "why": killed or (f"exit {child.returncode}: {tail[0][:160]}" if child.returncode else ""),
    }


def watch_child(pid: int, timeout: float, max_bytes: float) -> tuple[str, int]:
    """Wait while ``pid`` runs; kill it past ``timeout`` s or ``max_bytes`` of RSS (the
    machine is shared: a blow-up must not take the others' memory). Why it was killed, and
    its peak RSS (VmHWM: the rusage of a child forked from this process starts at this
    process's own peak, the generator's gigabytes)."""
    started, peak = time.monotonic(), 0
    while True:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            if state == "Z":
                return "", peak
            with open(f"/proc/{pid}/status") as f:
                fields = dict(line.split(":", 1) for line in f if line.startswith("Vm"))
            rss = int(fields["VmRSS"].split()[0]) * 1024
            peak = max(peak, int(fields["VmHWM"].split()[0]) * 1024)
        except (OSError, KeyError):
            return "", peak
        if rss > max_bytes:
            os.kill(pid, 9)
            return f"killed at {rss / 2**30:.1f} GB RSS (limit {max_bytes / 2**30:.0f} GB)", peak
        if time.monotonic() - started > timeout:
            os.kill(pid, 9)
            return f"killed after {timeout:.0f} s, not finished", peak
        time.sleep(0.5)


def train_rows(results: Results, settings: Settings, kind: str, algo: str, found: dict) -> None:
    label = f"train the {kind} model, `--algo {algo}`"
    if not found["ok"]:
        results.add("up", label, "FELL OVER", f"{found['why']}; {found['seconds']:,.0f} s, "
                    f"peak RSS {found['peak'] / MB:,.0f} MB")  # fmt: skip
        return
    info = read_artifact(settings.model_dir, newest_of_kind(settings.model_dir, kind))
    path, meta = info.path, info.meta
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    quality = ""
    if meta.get("top_n"):
        quality = (f"; hold-out NDCG@10 {meta['top_n']['ndcg']:.4f}, popularity "
                   f"{meta['baseline_top_n']['ndcg']:.4f}")  # fmt: skip
    elif meta.get("metrics"):
        quality = f"; hold-out RMSE {meta['metrics']['rmse']:.4f}"
    results.add("up", label, f"{found['seconds']:,.0f} s",
                f"{meta.get('algorithm', algo)}, evaluation + final fit "
                f"({meta.get('train_seconds', 0):,.0f} s); peak RSS "
                f"{found['peak'] / MB:,.0f} MB; served artifact {size / MB:,.0f} MB"
                f"{', ANN index' if meta.get('ann') else ''}{quality}")  # fmt: skip


# --- what up did, and the sizes ---------------------------------------------------------

STEPS = (  # progress lines of cluster.up whose preceding seconds are the step's
    ("partitions: ratings_", "move a ratings partition (online)"),
    ("partitions: searches_", "move a searches partition (online)"),
    ("partitions: preferences_", "move a preferences partition (online)"),
    ("streams from the primary", "clone the replica (pg_basebackup)"),
    ("archives from the group's start", "pgBackRest stanza of a new group, before its data"),
    ("backups:", "pgBackRest set up"),
    ("ai-1:", "start the AI instances (load the models)"),
)


def layout_rows(results: Results, log: Log, times: dict[str, float]) -> None:
    for seconds, line in log.lines:
        for part, label in STEPS:
            if part in line:
                results.add("up", f"up: {label}", f"{seconds:,.1f} s", line[:110])
                break


def size_rows(settings: Settings, results: Results) -> None:
    """Each partition's rows and bytes where it lives, and each server's database size."""
    settings = admin_settings(settings)
    for part in list_partitions(settings):
        if part.table not in ("ratings", "searches", "preferences") or part.bytes is None:
            continue
        if part.table != "ratings" and part.bytes < 10 * MB:
            continue
        rows = "?" if part.rows is None else f"{part.rows:,}"
        results.add("up", f"size: {part.name}", f"{part.bytes / MB:,.0f} MB",
                    f"{part.placement.value} {part.where}, ~{rows} rows")  # fmt: skip
    with primary(settings) as conn:
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        results.add("up", "size: database on the primary", f"{size / MB:,.0f} MB",
                    "tablespace disk2 included")  # fmt: skip
        archiver_row(conn, results)
        servers = [r[0] for r in conn.execute("SELECT srvname FROM pg_foreign_server")]
        for name in sorted(servers):
            with connect_server(conn, name) as remote:
                size = remote.execute("SELECT pg_database_size(current_database())").fetchone()[0]
            results.add("up", f"size: database on {name}", f"{size / MB:,.0f} MB")


def archiver_row(conn, results: Results) -> None:
    """The primary's failed WAL archive attempts since it started: the data step's WAL waited
    in pg_wal (17 GB at 20M ratings) while the stanza did not exist yet."""
    failed, archived = conn.execute(
        "SELECT failed_count, archived_count FROM pg_stat_archiver"
    ).fetchone()
    results.add("up", "WAL archiving on the primary: failed attempts", f"{failed:,}",
                f"{archived:,} segments archived")  # fmt: skip


# --- pages ------------------------------------------------------------------------------


def taste_rows(args, results: Results) -> None:
    """Whether the data have taste a model learns: ALS against popularity on the hold-out."""
    drawn = sample_catalogue(args.movies, args.users, args.ratings, seed=args.seed)
    data = ratings_from_arrays(
        drawn.rating_user + 1, drawn.rating_movie + 1, drawn.half_stars / 2, drawn.rated_epoch
    )
    del drawn
    split = time_split(data, 0.2, 0)
    als = get_algorithm("als")
    model = ranking_metrics(data, als, als.resolve(None), split, 0)
    base = popularity_baseline(data, split, 0).ndcg
    results.add("taste", "hold-out NDCG@10: ALS against popularity", f"{model.ndcg:.4f}",
                f"popularity {base:.4f}; each user's latest 20 %, {model.n_users:,} users "
                f"sampled{'' if model.ndcg > base else ' (POPULARITY WINS)'}; "
                f"{generator_note(args.seed)}")  # fmt: skip


def typo(word: str, rng: random.Random) -> str:
    """``word`` with two neighbouring letters after the first swapped."""
    i = rng.randrange(1, len(word) - 1)
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def page_runs(settings: Settings, record, args, results: Results) -> None:
    rng = random.Random(0)
    base = record.url.rstrip("/")
    secret = (settings.state_dir / "secret_key").read_text().strip()
    heavy = session_cookies(secret, [HEAVY_USER])
    users = session_cookies(secret, range(1001, 1001 + 2000))
    pairs = [(a, n) for a in ADJECTIVES for n in NOUNS]
    rng.shuffle(pairs)
    with connect(libpq(owner_url(settings)), "the primary") as conn:
        movies = conn.execute("SELECT max(id) FROM movies").fetchone()[0]
        top = popular_statement(conn, results)
        admin_statement(conn, results)
        movie_statement(conn, top[0], results)
    runs = [
        ("title search, full text (2 words)", [f"/search?q={a}+{n}" for a, n in pairs], []),
        ("title search, typos (2 misspelt words)",
         [f"/search?q={typo(a, rng)}+{typo(n, rng)}" for a, n in pairs], []),
        ("title search, one common word", [f"/search?q={n}" for n in NOUNS], []),
        ("movie page, random movies, logged in",
         [f"/movies/{rng.randrange(1, movies + 1)}" for _ in range(20_000)], users),
        ("movie page, the 50 most rated, logged in", [f"/movies/{m}" for m in top], users),
        (f"account page, {HEAVY_RATINGS:,} ratings", ["/account"], heavy),
        ("admin page (counts)", ["/admin"], heavy),
        ("home page (popular movies)", ["/"], []),
    ]  # fmt: skip
    for label, paths, cookies in runs:
        check = requests.get(
            base + paths[0], cookies={"session": cookies[0]} if cookies else None, timeout=60
        )
        found = wrk(base, paths, cookies, args.duration, 2, 8)
        note = (f"{found['requests']:,} requests, {found['rps']:,.0f}/s, p50 "
                f"{found['p50']:.1f} ms; first answer HTTP {check.status_code}")  # fmt: skip
        if found["errors"] or found["socket_errors"]:
            note += f"; errors {found['errors']} {found['socket_errors']}"
        results.add("pages", label, f"p99 {found['p99']:,.0f} ms", note)
        time.sleep(1)


def popular_statement(conn, results: Results) -> list[int]:
    """The home page's statement (catalog.popular, 500 movies) as a worker runs it once a
    minute, timed; the 50 most rated ids."""
    started = time.perf_counter()
    rows = conn.execute(
        "SELECT m.id FROM movies m JOIN (SELECT movie_id, count(*) AS n, avg(rating) "
        "FROM ratings GROUP BY movie_id) s ON s.movie_id = m.id ORDER BY s.n DESC, m.id LIMIT 500"
    ).fetchall()
    seconds = time.perf_counter() - started
    results.add("pages", "popular movies: the statement a worker runs once a minute",
                f"{seconds * 1000:,.0f} ms", "count and average per movie over every rating "
                "(statement_timeout of the site: 5,000 ms)")  # fmt: skip
    return [r[0] for r in rows[:50]]


def movie_statement(conn, movie: int, results: Results) -> None:
    """A movie page's rating statistics (catalog.with_rating_stats) for the most rated
    movie, timed as a worker runs it when the movie is not in its cache."""
    started = time.perf_counter()
    count = conn.execute(
        "SELECT count(*), avg(rating) FROM ratings WHERE movie_id = %s", (movie,)
    ).fetchone()[0]
    results.add("pages", "a movie page's rating statistics, the most rated movie",
                f"{(time.perf_counter() - started) * 1000:,.0f} ms",
                f"movie {movie}: {count:,} ratings")  # fmt: skip


def admin_statement(conn, results: Results) -> None:
    started = time.perf_counter()
    conn.execute(
        "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM users WHERE is_admin), "
        "(SELECT count(*) FROM movies), (SELECT count(*) FROM ratings)"
    ).fetchone()
    results.add("pages", "admin counts by count(*), as a page view ran them before",
                f"{(time.perf_counter() - started) * 1000:,.0f} ms", "")  # fmt: skip


# --- serving ----------------------------------------------------------------------------


def serving_runs(settings: Settings, record, args, results: Results) -> None:
    base = record.url.rstrip("/")
    secret = (settings.state_dir / "secret_key").read_text().strip()
    n_cold = min(COLD_USERS, max(args.users - 1000 - COLD_WARMUP, 100))
    cold = session_cookies(secret, range(1001, 1001 + n_cold))
    others = session_cookies(secret, range(1001 + n_cold, 1001 + n_cold + COLD_WARMUP))
    warm = session_cookies(secret, range(1001, 1001 + WARM_USERS))
    for kind, cookies in (("cold", cold), ("warm", warm)):
        wrk(base, ["/for-you"], others if kind == "cold" else warm, 3, 2, 16)
        before = cpu_seconds(record.members)
        found = wrk(base, ["/for-you"], cookies, args.duration, 2, 16, once=kind == "cold")
        after = cpu_seconds(record.members)
        cpu = ", ".join(
            f"{role} {1000 * (after[role] - before.get(role, 0)) / max(found['requests'], 1):.1f}"
            for role in after
            if role in ("web", "AI", "PG")
        )
        note = (f"{found['requests']:,} requests in {found['seconds']:.1f} s, p50 "
                f"{found['p50']:.1f} ms, p99 {found['p99']:.0f} ms; "
                f"CPU ms/request {cpu}")  # fmt: skip
        if found["errors"] or found["socket_errors"]:
            note += f"; errors {found['errors']} {found['socket_errors']}"
        results.add("serving", f"'for you' {kind}, through the director (wrk -t2 -c16)",
                    f"{found['rps']:,.0f} req/s", note)  # fmt: skip
        time.sleep(1)
    for member in record.members:
        if member.role not in ("ai", "web") or member.pid is None:
            continue
        for pid in children(member.pid):
            rss, pss = memory(pid)
            shared = " (the model's pages, mapped from its files, count in each RSS)"
            results.add("serving", f"memory: {member.name} worker {pid}",
                        f"{pss / MB:,.0f} MB PSS", f"RSS {rss / MB:,.0f} MB"
                        f"{shared if member.role == 'ai' else ''}")  # fmt: skip


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return sorted(found)


def memory(pid: int) -> tuple[int, int]:
    rss = pss = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Rss:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith("Pss:"):
            pss = int(line.split()[1]) * 1024
    return rss, pss


# --- backups and replicas ---------------------------------------------------------------


def movierec(settings: Settings, *argv: str, timeout: float = 7200) -> float:
    """Run ``movierec ARGV`` as an admin would; its wall seconds. Raises SystemExit with its
    last lines when it fails."""
    started = time.perf_counter()
    done = subprocess.run(
        [str(VENV_BIN / "movierec"), *argv], env=admin_env(settings), capture_output=True,
        text=True, timeout=timeout,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    if done.returncode:
        raise RuntimeError(f"movierec {' '.join(argv)}: {(done.stderr or done.stdout)[-400:]}")
    return seconds


def repo_size(settings: Settings) -> int:
    return sum(b.repo_size for b in lib.list_backups(lib.backup_config(settings)))


def backup_runs(settings: Settings, args, results: Results) -> None:
    url = owner_url(settings)
    before = repo_size(settings)
    seconds = movierec(settings, "backup", "create", "--type", "full")
    full = repo_size(settings)
    results.add("backup", "full backup of every server (`backup create --type full`)",
                f"{seconds:,.0f} s", f"repository +{(full - before) / MB:,.0f} MB")  # fmt: skip
    with connect(libpq(url), "the primary") as conn:
        started = time.perf_counter()
        changed = conn.execute(
            "UPDATE ratings SET rating = CASE WHEN rating < 5 THEN rating + 0.5 ELSE 4.5 END "
            "WHERE (user_id + movie_id) % 100 = 0"
        ).rowcount
        results.add("backup", "1 % of ratings changed (one UPDATE, history recorded)",
                    f"{time.perf_counter() - started:,.0f} s", f"{changed:,} ratings")  # fmt: skip
    seconds = movierec(settings, "backup", "create", "--type", "incr")
    results.add("backup", "incremental backup after it (`--type incr`)", f"{seconds:,.0f} s",
                f"repository +{(repo_size(settings) - full) / MB:,.0f} MB")  # fmt: skip
    with connect(libpq(url), "the primary") as conn:
        count = conn.execute("SELECT count(*) FROM ratings").fetchone()[0]
        target = conn.execute("SELECT now()").fetchone()[0]
        time.sleep(1)
        lost = conn.execute("DELETE FROM ratings WHERE user_id % 1000 = 7").rowcount
    seconds = movierec(settings, "backup", "restore", "--time", target.isoformat(), "--yes")
    with connect(libpq(url), "the primary") as conn:
        back = conn.execute("SELECT count(*) FROM ratings").fetchone()[0]
    results.add("backup", "point-in-time restore of every server, in place",
                f"{seconds:,.0f} s", f"to before a DELETE of {lost:,} ratings: {back:,} of "
                f"{count:,} ratings there after{'' if back == count else ' (MISMATCH)'}; "
                "replicas re-made from the restored primaries")  # fmt: skip


def replica_runs(settings: Settings, results: Results) -> None:
    from movierec.cluster import ha
    from movierec.db.patroni import load_group

    root = ha.group_root(settings.state_dir.resolve(), ha.MAIN_SCOPE)
    names = {m.name for m in load_group(root).members}
    seconds = movierec(settings, "db", "replica", "create")
    new = sorted({m.name for m in load_group(root).members} - names)
    with primary(admin_settings(settings)) as conn:
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    results.add("replica", "a new replica of the primary (`db replica create`)",
                f"{seconds:,.0f} s", f"{size / MB:,.0f} MB database cloned, streaming")  # fmt: skip
    for name in new:
        movierec(settings, "db", "replica", "remove", name, "--yes")


# --- main -------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--movies", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--ratings", type=int, default=400_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--phases", default=",".join(PHASES), help=", ".join(PHASES))
    parser.add_argument("--state-dir", type=Path, help="keep the cluster's state here")
    parser.add_argument("--duration", type=int, default=10, help="wrk seconds per row")
    parser.add_argument(
        "--train-timeout", type=float, default=1800, help="seconds for the rating model"
    )
    parser.add_argument(
        "--ranking-timeout", type=float, default=1800, help="seconds for the ranking model"
    )
    parser.add_argument("--train-max-gb", type=float, default=14, help="RSS limit of training")
    parser.add_argument("--keep-up", action="store_true", help="leave the cluster running")
    args = parser.parse_args()
    phases = [p for p in args.phases.split(",") if p]
    if unknown := set(phases) - set(PHASES):
        raise SystemExit(f"unknown phases: {', '.join(sorted(unknown))}")
    if shutil.which("wrk") is None and {"pages", "serving"} & set(phases):
        raise SystemExit("wrk not found: apt-get install -y wrk")
    os.environ.setdefault("MOVIEREC_SESSION_IDLE_MINUTES", "480")  # see bench_serving
    root = args.state_dir or Path(tempfile.mkdtemp(prefix="movierec-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)  # the postgres OS user must enter it when we are root
    settings = bench_settings(root)
    results = Results(root / "scale-results.json")
    say = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    if "taste" in phases:
        results.start("taste")
        taste_rows(args, results)
        phases.remove("taste")
    try:
        if "up" in phases:
            results.start("up")
            if running(settings):
                raise SystemExit("a cluster runs there: `up` measures a start; stop it first")
        record = bring_up(settings, args, results if "up" in phases else None) if phases else None
        for phase in phases:
            if phase == "up":
                continue
            results.start(phase)
            say(f"--- {phase} ---")
            if phase == "pages":
                page_runs(settings, record, args, results)
            elif phase == "serving":
                serving_runs(settings, record, args, results)
            elif phase == "backup":
                backup_runs(settings, args, results)
            elif phase == "replica":
                replica_runs(settings, results)
            record = cluster.load_record(settings.state_dir.resolve())
    finally:
        if not args.keep_up and cluster.load_record(settings.state_dir.resolve()) is not None:
            cluster.down(settings, say)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    Console(width=200).print(
        results.table(
            f"movierec at {args.movies:,} movies, {args.users:,} users, "
            f"{args.ratings:,} ratings ({os.cpu_count()} CPUs, {when})"
        )  # fmt: skip
    )
    print(markdown(results))
    if args.state_dir is None:
        shutil.rmtree(root, ignore_errors=True)


def markdown(results: Results) -> str:
    lines = ["| phase | what | figure | note |", "|---|---|---:|---|"]
    lines += [f"| {' | '.join(row)} |" for row in results.rows]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
