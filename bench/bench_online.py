"""Online evaluation of the demo: a scripted session of ratings on the real site, then the
online hit rate and NDCG@10 per model version as ``movierec model report`` prints them.

A local cluster (1 web, 1 AI instance, no director) on the demo's synthetic data (5,000
movies, 3,000 users, 300,000 ratings, seed 0), with every user's lists recorded
(``impression_sample=1``). The scripted users are the catalogue's own: the generator's seed
gives back each user's genre affinities, which decide what they do. Each of ``--users``
users, for ``--rounds`` rounds, opens "for you" (the site records the list it computes),
looks at the top 10, rates the shown movies they like best (taste above their own 80th
percentile over the catalogue; at most 2 a round) 4.5 stars through the JSON API and says
"not interested" to one they like least (below their 20th percentile), as a person would on
the page; a rating changes their taste, so the next round's list is computed afresh. Halfway
(``--refresh``), ``movierec model refresh --force`` trains and promotes a new ranking model
on the ratings so far and the second half of the users meet it: the report then compares it
online with the one before it.

    .venv/bin/python bench/bench_online.py [--users 200] [--rounds 3] [--no-refresh]
        [--state-dir DIR]

Logged-in users are session cookies signed with the cluster's own secret key (as in
bench_serving.py). Prints the report; the figures depend on the script's simple users, so
they describe the pipeline end to end, not how real people would respond.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests
from bench_serving import free_base, session_cookies

from movierec import cluster
from movierec.config import load_settings
from movierec.data.synthetic.catalogue import sample_catalogue
from movierec.db.schema import GENRES
from movierec.demo import DemoOptions, prepare

DATA = DemoOptions()
LISTED = re.compile(r'<li>\s*<a href="/movies/(\d+)"')
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
LOOKED_AT = 10
LIKES_A_ROUND = 2


class Tastes:
    """Each catalogue user's taste for each movie: the mean of their genre affinities over
    the movie's genres (the generator's own model of what users like)."""

    def __init__(self) -> None:
        catalogue = sample_catalogue(DATA.movies, DATA.users, DATA.ratings, seed=DATA.seed)
        self.affinity = catalogue.affinity
        present = catalogue.genres >= 0
        self.genre = np.where(present, catalogue.genres, 0).astype(np.intp)
        self.weight = present / present.sum(axis=1, keepdims=True)
        assert len(GENRES) == self.affinity.shape[1]

    def of_user(self, user_id: int) -> np.ndarray:
        """Taste of the user (database id) for every movie (index = movie id - 1)."""
        return (self.affinity[user_id - 1, self.genre] * self.weight).sum(axis=1)


def session_round(web: str, cookie: str, taste: np.ndarray, high: float, low: float) -> int:
    """One look at "for you" and what the user does about it; the ratings made."""
    client = requests.Session()
    client.cookies.set("session", cookie)
    page = client.get(f"{web}/for-you", timeout=30)
    page.raise_for_status()
    shown = [int(m) for m in LISTED.findall(page.text)][:LOOKED_AT]
    token = CSRF_META.search(page.text).group(1)
    liked = sorted((m for m in shown if taste[m - 1] > high), key=lambda m: -taste[m - 1])
    for movie in liked[:LIKES_A_ROUND]:
        answer = client.post(
            f"{web}/api/ratings", json={"movie_id": movie, "rating": 4.5},
            headers={"X-CSRFToken": token}, timeout=30,
        )  # fmt: skip
        answer.raise_for_status()
    disliked = [m for m in shown if taste[m - 1] < low]
    if disliked:
        answer = client.post(
            f"{web}/for-you/not-interested",
            data={"movie_id": disliked[-1], "csrf_token": token}, timeout=30,
            allow_redirects=False,
        )  # fmt: skip
        assert answer.status_code == 302, answer.status_code
    return len(liked[:LIKES_A_ROUND])


def run_session(web, secret, users, tastes, rounds, say) -> None:
    cookies = session_cookies(secret, users)
    rated = 0
    for user, cookie in zip(users, cookies, strict=True):
        taste = tastes.of_user(user)
        high, low = np.quantile(taste, 0.8), np.quantile(taste, 0.2)
        for _ in range(rounds):
            rated += session_round(web, cookie, taste, high, low)
    say(f"session: {len(users)} users x {rounds} rounds, {rated} ratings")


def movierec(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "movierec", *args], env={**os.environ, **env},
        capture_output=True, text=True, timeout=3600, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"movierec {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def wait_for_model(ai_url: str, old: str, say, timeout: float = 300.0) -> str:
    """The AI instance's version once it serves another than ``old``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        version = requests.get(f"{ai_url}/health", timeout=5).json().get("model_version")
        if version and version != old:
            say(f"ai-1 serves {version}")
            return version
        time.sleep(2)
    raise SystemExit(f"the AI instance still serves {old} after {timeout:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-refresh", dest="refresh", action="store_false")
    parser.add_argument("--state-dir", type=Path, help="reuse this cluster state (data, model)")
    args = parser.parse_args()

    os.environ["MOVIEREC_IMPRESSION_SAMPLE"] = "1"  # the servers inherit it
    os.environ.setdefault("MOVIEREC_SESSION_IDLE_MINUTES", "480")
    root = args.state_dir or Path(tempfile.mkdtemp(prefix="movierec-online-"))
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)  # the postgres OS user must enter it when we are root
    settings = load_settings(
        environ={}, toml_path=None,
        overrides={"state_dir": root / "state", "model_dir": root / "state" / "models"},
    )  # fmt: skip
    say = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    spec = cluster.ClusterSpec.on_port(free_base(), web=1, ai=1, director=False)
    record = cluster.up(settings, spec, say, prepare(DATA, say))
    try:
        web = record.url.rstrip("/")
        ai_url = f"http://127.0.0.1:{spec.ai_ports[0]}"
        secret = (settings.state_dir / "secret_key").read_text().strip()
        admin = cluster.admin_url_file(settings).read_text().strip()
        env = {
            "MOVIEREC_DATABASE_URL": admin,
            "MOVIEREC_STATE_DIR": str(settings.state_dir),
            "MOVIEREC_MODEL_DIR": str(settings.model_dir),
        }
        movierec(env, "model", "promote", requests.get(f"{ai_url}/health").json()["model_version"])
        tastes = Tastes()
        users = list(range(1, args.users + 1))
        half = len(users) // 2 if args.refresh else len(users)
        run_session(web, secret, users[:half], tastes, args.rounds, say)
        if args.refresh:
            old = requests.get(f"{ai_url}/health", timeout=5).json()["model_version"]
            say(movierec(env, "model", "refresh", "--force").strip())
            wait_for_model(ai_url, old, say)
            run_session(web, secret, users[half:], tastes, args.rounds, say)
        # A wide console: the report's table is printed whole, not squeezed to 80 columns.
        print(movierec({**env, "COLUMNS": "160"}, "model", "report", "--days", "1"))
    finally:
        cluster.down(settings, say)
    if args.state_dir is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
