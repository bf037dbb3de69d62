"""Fixtures shared by every test: one real PostgreSQL per session, a fresh database per test.

The server is private (initdb into a temp dir, free loopback port). The schema is migrated
once into a template database; each test gets a copy of it (CREATE DATABASE ... TEMPLATE),
made ahead while earlier tests run (support/databases.py), which isolates tests completely.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from support.databases import DatabasePool
from support.keys import AI_KEY

from movierec.config import load_settings
from movierec.db import Database, LocalPostgres, upgrade
from movierec.db.roles import APP_ROLES

# The login-test harness (a real OpenID Connect provider, headless Chromium) as plugins here,
# once: a second import in a sub-directory's conftest would start a second Playwright, which
# Playwright's sync API refuses.
pytest_plugins = ["support.browser", "support.oidc"]

TEMPLATE = "movierec_template"
DRILLS = os.environ.get("MOVIEREC_DRILLS") == "1"


def pytest_collection_modifyitems(config, items):
    """Slow drills (marker ``drill_slow``, anywhere under tests/) run only when asked for:
    ``make drills`` (``-m "drill or drill_slow"``) or MOVIEREC_DRILLS=1. Plain ``pytest`` (and
    ``make test``, which has a 15-minute budget) skips them, saying so."""
    if DRILLS or "drill_slow" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="slow drill: `make drills` runs it")
    for item in items:
        if "drill_slow" in item.keywords:
            item.add_marker(skip)


MOVIELENS_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "movielens"


@pytest.fixture(scope="session")
def pg_server():
    root = Path(tempfile.mkdtemp(prefix="movierec-test-"))
    os.chmod(root, 0o755)  # the postgres OS user must enter it when we are root
    server = LocalPostgres(root / "pg").start()
    upgrade(server.create_database(TEMPLATE))
    server.give_passwords(*APP_ROLES)
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def _databases(pg_server):
    pool = DatabasePool(pg_server, TEMPLATE)
    yield pool
    pool.close()


@pytest.fixture
def db_url(pg_server, _databases):
    name = _databases.take()
    yield pg_server.url(name)
    pg_server.drop_database(name)


@pytest.fixture(scope="session")
def as_role(pg_server):
    """``as_role(url, role)``: a test database's URL as one of the app's roles
    (``movierec.db.roles``), with the credentials the test server gave that role."""
    return pg_server.as_role


@pytest.fixture
def settings(db_url, tmp_path):
    return load_settings(
        environ={},
        toml_path=None,
        overrides={
            "database_url": db_url,
            "secret_key": "test-secret-key",
            "ai_key": AI_KEY,
            "model_dir": tmp_path / "models",
            "state_dir": tmp_path / "state",
        },
    )


@pytest.fixture
def database(settings):
    db = Database(settings)
    yield db
    db.dispose()


@pytest.fixture
def movielens_dir():
    """The shared MovieLens copies; tests that need them skip, saying why, when absent."""
    if not MOVIELENS_DIR.is_dir():
        pytest.skip(f"optional MovieLens data not found at {MOVIELENS_DIR}")
    return MOVIELENS_DIR
