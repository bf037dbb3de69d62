"""The "for you" page (or a movie's page) served in-process, code A against code B in one run:
web CPU and wall time per cold and warm page, and the statements each page sends to
PostgreSQL.

One PostgreSQL (private, on 127.0.0.1) holds a synthetic catalogue; one real recommender
(``movierec serve ai``, the site's two models trained once, as the demo trains them: the
ranking model and the rating model whose predicted stars the pages show) answers both codes.
Each round is a fresh Python process with one code's tree first on ``sys.path``, building the
site with ``create_app`` (as the ``movierec_web`` role) and asking pages through Flask's test
client, logged in with session cookies signed by the site's key (what a login leaves). Rounds
alternate A B B A ..., so the machine's drift (20 % and more on a shared VM) falls on both.

``--page movie``: the pages of the 50 most-rated movies in turn (each movie's own part is
shared by every user and stays cached; a cold page is a user's first, so their predicted stars
are asked for). ``--page search``: 10 genre searches in turn (the results are everyone's and stay
cached; a cold page is a user's first search).

*Cold*: a user the process has not served (neither their row nor their list is cached), after
a warm-up of the process on other users; every such page asks the recommender. *Warm*: the
page again for users served before (every cache hits). CPU is the web process's own
(``time.process_time``), which the recommender and PostgreSQL do not add to; wall time
includes them. Statements are counted on the site's engine (``before_cursor_execute``):
each is one round trip (the hot reads run in autocommit, without BEGIN or COMMIT).

    .venv/bin/python bench/bench_for_you.py --a REV [--b DIR] [--pairs 4] [--cold 300]
        [--page for-you|movie|search] [--profile DIR]

``--a`` is a git revision (exported with ``git archive``) or a directory; ``--b`` defaults to
this checkout. ``--profile DIR`` runs each round's cold pages under cProfile and writes
``DIR/A-1.prof`` ... (read with ``python -m pstats``): where a difference comes from, not how
big it is, since profiling slows Python code several times over.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MOVIES, USERS, RATINGS = 3_000, 12_000, 600_000
WARMUP_USERS = 60
WARM_USERS, WARM_REPEAT = 40, 25
# A page's path for a user: "for you", the pages of the 50 most-rated movies in turn (the
# synthetic catalogue's ids 1..50) or 10 genre searches in turn, as bench_serving.py asks.
SEARCHED = ("Drama", "Comedy", "Action", "Thriller", "Romance", "Adventure", "Crime", "Sci-Fi",
            "Horror", "Children")  # fmt: skip
PAGES = {
    "for-you": lambda user: "/for-you",
    "movie": lambda user: f"/movies/{1 + user % 50}",
    "search": lambda user: f"/search?genre={SEARCHED[user % 10]}",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", required=True, help="git revision or directory of code A")
    parser.add_argument("--b", default=str(ROOT), help="directory of code B (default: here)")
    parser.add_argument("--pairs", type=int, default=4, help="A/B pairs of rounds")
    parser.add_argument("--cold", type=int, default=300, help="cold pages per round")
    parser.add_argument("--page", choices=sorted(PAGES), default="for-you")
    parser.add_argument("--profile", type=Path, help="write each round's cold-page cProfile here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # a round's JSON job
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_round(json.loads(args.worker))))
        return
    rounds_needed = 2 * args.pairs * (args.cold + WARMUP_USERS)
    if rounds_needed > USERS:
        raise SystemExit(f"{rounds_needed} users needed, {USERS} generated: fewer --pairs/--cold")
    with tempfile.TemporaryDirectory(prefix="movierec-bench-for-you-") as tmp:
        root = Path(tmp)
        os.chmod(root, 0o755)  # the postgres OS user must enter it when we are root
        trees = {"A": code_tree(args.a, root / "a"), "B": Path(args.b).resolve()}
        compare(root, trees, args.pairs, args.cold, args.page, args.profile)


def code_tree(where: str, target: Path) -> Path:
    """A directory holding the ``movierec`` package of ``where`` (a directory or a revision)."""
    if Path(where).is_dir():
        return Path(where).resolve()
    target.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", where, "movierec"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def compare(
    root: Path, trees: dict[str, Path], pairs: int, cold: int, page: str, profile: Path | None
) -> None:
    from movierec.config import load_settings
    from movierec.data import generate_catalogue
    from movierec.db import Database, LocalPostgres, upgrade
    from movierec.db.roles import APP_ROLES
    from movierec.demo import ensure_model
    from movierec.ports import port_free
    from movierec.processes import Child

    say = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    server = LocalPostgres(root / "pg").start()
    ai = None
    try:
        url = server.create_database("movierec")
        upgrade(url)
        server.give_passwords(*APP_ROLES)
        settings = load_settings(
            environ={}, toml_path=None,
            overrides={"database_url": url, "model_dir": root / "models", "state_dir": root},
        )  # fmt: skip
        with Database(settings) as database:
            say("data: generating ...")
            generate_catalogue(database, MOVIES, USERS, RATINGS, seed=1)
            ensure_model(database, settings, say)
        port = next(p for p in range(24001, 24100) if port_free(p))
        key = secrets.token_urlsafe(24)
        ai = Child.start(
            "ai", ["serve", "ai", "--port", str(port), "--workers", "2"], root / "ai.log",
            f"http://127.0.0.1:{port}/health",
            env={"MOVIEREC_DATABASE_URL": server.as_role(url, "movierec_ai"),
                 "MOVIEREC_MODEL_DIR": str(settings.model_dir), "MOVIEREC_AI_KEY": key},
        )  # fmt: skip
        ai.wait_healthy(120)
        job = {
            "database_url": server.as_role(url, "movierec_web"),
            "ai_urls": f"http://127.0.0.1:{port}",
            "ai_key": key,
            "secret_key": secrets.token_hex(16),
            "page": page,
        }
        results: dict[str, list[dict]] = {"A": [], "B": []}
        order = [name for pair in range(pairs) for name in ("AB" if pair % 2 == 0 else "BA")]
        for index, name in enumerate(order):
            first = 1 + index * (cold + WARMUP_USERS)
            users = list(range(first, first + cold + WARMUP_USERS))
            round_job = {**job, "users": users}
            if profile is not None:
                profile.mkdir(parents=True, exist_ok=True)
                round_job["profile"] = str(profile.resolve() / f"{name}-{index + 1}.prof")
            result = one_round(trees[name], round_job)
            say(f"round {index + 1}/{len(order)} {name}: {json.dumps(result)}")
            results[name].append(result)
        print(report(results, trees, pairs, cold))
    finally:
        if ai is not None:
            ai.stop()
        server.stop()


def one_round(tree: Path, job: dict) -> dict:
    """One round in a fresh process with ``tree``'s movierec first on its path."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, __file__, "--a", "-", "--worker", json.dumps(job)],
        env=env, capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"a round failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_round(job: dict) -> dict:
    """In the round's process: the site of this tree, cold pages, then warm ones."""
    from flask import Flask
    from flask.sessions import SecureCookieSessionInterface
    from sqlalchemy import event

    import movierec
    from movierec.web import close_app, create_app
    from movierec.web.auth.sessions import GENERATION, LOGGED_IN_AT, SEEN_AT, SESSION_ID

    app = create_app(
        {"database_url": job["database_url"], "ai_urls": job["ai_urls"],
         "ai_key": job["ai_key"], "secret_key": job["secret_key"]}
    )  # fmt: skip
    # What a server does once its app is loaded (movierec.serving.freeze_startup_objects).
    # Without it every full collection walked the startup objects, a cost the servers do not
    # pay: cold pages of 340dfe2 against 22ebd92 measured B/A 1.19 without, 1.07 with.
    gc.freeze()
    signer = Flask("bench")
    signer.secret_key = job["secret_key"]
    serializer = SecureCookieSessionInterface().get_signing_serializer(signer)
    now = int(time.time())

    def cookie(user: int) -> str:
        return serializer.dumps(
            {"_user_id": str(user), GENERATION: 0, "_fresh": False,
             "csrf_token": os.urandom(20).hex(), SESSION_ID: os.urandom(18).hex(),
             LOGGED_IN_AT: now, SEEN_AT: now}
        )  # fmt: skip

    statements = 0

    def counted(*_args) -> None:
        nonlocal statements
        statements += 1

    event.listen(app.extensions["movierec.db"].primary, "before_cursor_execute", counted)
    client = app.test_client()
    sessions = {user: cookie(user) for user in job["users"]}

    def pages(users: list[int]) -> dict:
        nonlocal statements
        statements, cpu, wall = 0, [], []
        for user in users:
            client.set_cookie("session", sessions[user])
            c0, w0 = time.process_time(), time.perf_counter()
            response = client.get(PAGES[job["page"]](user))
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
            if response.status_code != 200 or b"recommender unavailable" in response.data:
                raise SystemExit(f"user {user}: {response.status_code} {response.data[:300]!r}")
        return {
            "pages": len(users),
            "cpu_ms": 1000 * sum(cpu) / len(users),
            "wall_ms": 1000 * sum(wall) / len(users),
            "wall_p50_ms": 1000 * statistics.median(wall),
            "statements": statements / len(users),
        }

    try:
        pages(job["users"][:WARMUP_USERS])  # imports, templates, pools, the change listener
        cold_users = job["users"][WARMUP_USERS:]
        if "profile" in job:
            import cProfile

            with cProfile.Profile() as profiler:
                cold = pages(cold_users)
            profiler.dump_stats(job["profile"])
        else:
            cold = pages(cold_users)
        warm = pages(cold_users[:WARM_USERS] * WARM_REPEAT)
    finally:
        close_app(app)
    return {"code": str(Path(movierec.__file__).parents[1]), "cold": cold, "warm": warm}


def report(results: dict[str, list[dict]], trees: dict[str, Path], pairs: int, cold: int) -> str:
    """A markdown table: per code and kind of page, the median over rounds (and the range)."""
    lines = [
        f"{pairs} A/B pairs of rounds (A B B A ...), each {cold} cold pages after "
        f"{WARMUP_USERS} warm-up users, then {WARM_USERS * WARM_REPEAT} warm pages; "
        f"A = {trees['A']}, B = {trees['B']}",
        "",
        "| page | code | web CPU ms/page | wall ms/page | wall p50 ms | statements/page |",
        "|---|---|---|---|---|---|",
    ]
    for kind in ("cold", "warm"):
        for name in ("A", "B"):
            rows = [r[kind] for r in results[name]]

            def cell(field: str, rows: list[dict] = rows) -> str:
                values = [r[field] for r in rows]
                return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"

            statements = statistics.median(r["statements"] for r in rows)
            lines.append(
                f"| {kind} | {name} | {cell('cpu_ms')} | {cell('wall_ms')} | "
                f"{cell('wall_p50_ms')} | {statements:.2f} |"
            )
    lines.append("")
    for kind in ("cold", "warm"):
        # Each pair ran back to back: its ratio is what the machine's drift disturbs least.
        ratios = sorted(
            b[kind]["cpu_ms"] / a[kind]["cpu_ms"]
            for a, b in zip(results["A"], results["B"], strict=True)
        )
        lines.append(
            f"{kind}: web CPU per page B/A, median of the pairs {statistics.median(ratios):.3f} "
            f"(pairs: {', '.join(f'{r:.3f}' for r in ratios)})"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
