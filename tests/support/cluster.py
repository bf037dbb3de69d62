"""A local cluster for tests and drills: a state directory the postgres OS user can enter, a
spec on free loopback ports, a tiny catalogue with a trained model, and the CLI run as a user
would run it.

>>> with cluster_home("movierec-drill-") as home:          # doctest: +SKIP
...     spec = free_spec(web=2, ai=2)
...     record = cluster.up(home.settings, spec, print, tiny_catalogue)
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import requests
from argon2 import PasswordHasher
from sqlalchemy import func, select

from movierec import cluster
from movierec.ai import train_model
from movierec.cluster.members import reap_children
from movierec.config import Settings, load_settings
from movierec.db import Database, LocalPostgres, Movie, Rating, User
from movierec.ports import port_free

PASSWORD = "cluster test password"
MOVIES = 120


def tiny_catalogue(database: Database, settings: Settings) -> None:
    """120 movies, 60 users with tastes, a login user ``alice`` (password :data:`PASSWORD`)
    and a trained model; nothing when the catalogue is already there (a second ``up``)."""
    with database.session(readonly=True) as session:
        if session.scalar(select(func.count()).select_from(Movie)):
            return
    rng = np.random.default_rng(5)
    with database.session() as session:
        session.add_all(
            Movie(id=m, title=f"Movie {m}", year=1990 + m % 30, genres=["Drama"])
            for m in range(1, MOVIES + 1)
        )
        users = [User(username=f"u{u}") for u in range(60)]
        users.append(User(username="alice", password_hash=PasswordHasher().hash(PASSWORD)))
        session.add_all(users)
        session.flush()
        for user in users:
            for movie in rng.choice(MOVIES, size=25, replace=False):
                rating = float(rng.integers(1, 11)) / 2
                session.add(Rating(user_id=user.id, movie_id=int(movie) + 1, rating=rating))
    train_model(database, settings.model_dir)


def crash(member: cluster.Member) -> None:
    """What a crash does to a member: SIGKILL (a web or AI instance's whole process group),
    no chance to clean up; returns once the process is gone."""
    if member.role in ("web", "ai"):
        os.killpg(member.pid, signal.SIGKILL)
    else:
        os.kill(member.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if psutil.Process(member.pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.05)
    raise AssertionError(f"{member.name} (pid {member.pid}) outlived SIGKILL")


def start_by_hand(member: cluster.Member, like: cluster.Member) -> subprocess.Popen:
    """``movierec serve`` on the member's port as an operator would, with the environment of
    a sibling that runs (``like``), and wait until it answers."""
    env = psutil.Process(like.pid).environ()
    env["MOVIEREC_INSTANCE_NAME"] = member.name
    args = ["serve", member.role, "--port", str(member.port), "--workers", "1"]
    process = subprocess.Popen(
        [sys.executable, "-m", "movierec", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(member.health_url, timeout=1).status_code == 200:
                return process
        except requests.RequestException:
            pass
        time.sleep(0.2)
    process.kill()
    raise AssertionError(f"{member.name} started by hand did not answer")


def free_spec(**options: Any) -> cluster.ClusterSpec:
    """``ClusterSpec.on_port(base, **options)`` on a base port whose every port is free.

    Below the kernel's ephemeral range (32768 and up): the cluster's PostgreSQL servers take a
    free port from there once these were checked, and must not take one of them.
    """
    for _ in range(100):
        spec = cluster.ClusterSpec.on_port(random.randrange(20_000, 32_000), **options)
        if all(port_free(p) for p in spec.ports()):
            return spec
    raise AssertionError("no free ports")


@dataclass(frozen=True)
class ClusterHome:
    """Where a test's cluster keeps its state."""

    root: Path

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def settings(self) -> Settings:
        overrides = {"state_dir": self.state_dir, "model_dir": self.state_dir / "models"}
        return load_settings(environ={}, toml_path=None, overrides=overrides)

    def admin_conninfo(self, dbname: str = "movierec") -> str:
        """The superuser's conninfo for the cluster's primary, from its LocalPostgres (the one
        place the server's credentials come from)."""
        primary = LocalPostgres(self.state_dir / "postgres")
        primary.port = primary.recorded_port() or 0
        return primary.admin_conninfo(dbname)

    def cli(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        """``movierec ARGS`` in a subprocess, as an operator runs it (a wide terminal)."""
        return movierec_cli(self.state_dir, *args, timeout=timeout)

    def admin_cli(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        """``movierec ARGS`` as an admin runs it against the cluster: with the owner's URL
        that ``cluster up`` left in a file (``export MOVIEREC_DATABASE_URL="$(cat ...)"``)
        and the cluster's model directory."""
        url = cluster.admin_url_file(self.settings).read_text().strip()
        extra = {"MOVIEREC_DATABASE_URL": url, "MOVIEREC_MODEL_DIR": str(self.settings.model_dir)}
        return movierec_cli(self.state_dir, *args, timeout=timeout, extra=extra)


def movierec_cli(
    state_dir: Path, *args: str, timeout: float = 180, extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    env = {**os.environ, "MOVIEREC_STATE_DIR": str(state_dir), "COLUMNS": "200", "TERM": "dumb"}
    for name in ("MOVIEREC_DATABASE_URL", "MOVIEREC_REPLICA_URL"):
        env.pop(name, None)
    env.update(extra or {})
    return subprocess.run(
        [sys.executable, "-m", "movierec", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@contextmanager
def cluster_home(prefix: str = "movierec-cluster-") -> Iterator[ClusterHome]:
    """A fresh state directory; whatever cluster runs from it at the end is taken down."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(root, 0o755)  # the postgres OS user must enter it when we are root
    home = ClusterHome(root)
    try:
        yield home
    finally:
        if cluster.load_record(home.state_dir) is not None:
            cluster.down(home.settings, lambda _text: None)
        reap_children()  # servers this process started, stopped by a `cluster down` elsewhere
        shutil.rmtree(root, ignore_errors=True)
