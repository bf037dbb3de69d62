"""Fixtures for the director tests: a short private state directory (Unix socket paths are
limited to 107 bytes), stand-in backends, and cleanup that stops every director started."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from director_support import spawn_standins

from movierec import director
from movierec.config import load_settings
from movierec.director.haproxy import haproxy_binary
from movierec.errors import OpsCommandFailed


@pytest.fixture(scope="session")
def haproxy():
    try:
        return haproxy_binary()
    except OpsCommandFailed as exc:
        pytest.skip(f"{exc} (ops/install-system.sh installs it)")


@pytest.fixture
def state_dir():
    path = Path(tempfile.mkdtemp(prefix="mrd-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def director_settings(state_dir, haproxy):
    settings = load_settings(environ={}, toml_path=None, overrides={"state_dir": state_dir})
    yield settings
    root = director.director_files(settings).root
    started = {p.name for p in root.iterdir() if p.is_dir()} if root.is_dir() else set()
    for name in started | set(director.known_directors(settings)):
        director.stop(settings, name, timeout=5)


@pytest.fixture
def standins():
    """``standins("a", "b")`` starts stand-in backends; all are killed after the test."""
    started = []

    def spawn(*names: str):
        items = spawn_standins(list(names))
        started.extend(items)
        return items

    yield spawn
    for item in started:
        if item.process.poll() is None:
            item.kill()
