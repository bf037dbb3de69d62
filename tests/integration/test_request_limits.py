"""Request lines past what the servers take, answered by us: gunicorn (a real one, as
`movierec serve` runs it) refuses a request line over its limit before the app sees it, and
that answer is JSON {"error"} like every other error of the API and the recommender, not
gunicorn's HTML page. Below the limit, the app's own rules answer (a 400 naming the value)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from support.keys import AI_KEY

from movierec.db.local_server import free_port
from movierec.db.roles import WEB_ROLE

pytestmark = pytest.mark.integration
MOVIEREC = str(Path(sys.executable).parent / "movierec")  # the console script beside python


@contextmanager
def serving(kind: str, env: dict[str, str], logs) -> Iterator[str]:
    port = free_port()
    log = open(logs / f"{kind}.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [MOVIEREC, "serve", kind, "--port", str(port), "--workers", "1"],
        env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(f"{url}/openapi.json" if kind == "ai" else f"{url}/healthz", timeout=2)
                break
            except requests.ConnectionError:
                assert process.poll() is None, (logs / f"{kind}.log").read_text()
                assert time.monotonic() < deadline, f"{kind} did not start"
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def _assert_json_error(response, status: int, words: str) -> None:
    assert response.status_code == status, response.text[:200]
    assert response.headers["Content-Type"].startswith("application/json")
    assert words in response.json()["error"]


def test_an_overlong_request_line_is_a_json_414(settings, as_role, tmp_path):
    env = {
        "MOVIEREC_DATABASE_URL": as_role(settings.database_url, WEB_ROLE),
        "MOVIEREC_SECRET_KEY": "test-secret-key",
        "MOVIEREC_AI_KEY": AI_KEY,
        "MOVIEREC_MODEL_DIR": str(tmp_path / "models"),
        "MOVIEREC_STATE_DIR": str(tmp_path / "state"),
    }
    with serving("web", env, tmp_path) as web, serving("ai", env, tmp_path) as ai:
        long_query = "x" * 20_000
        _assert_json_error(
            requests.get(f"{web}/api/search", params={"q": long_query}, timeout=10),
            414, "request line is longer than",
        )  # fmt: skip
        _assert_json_error(
            requests.get(f"{ai}/recommend", params={"user": 1, "exclude": long_query}, timeout=10),
            414, "request line is longer than",
        )  # fmt: skip
        # Within the limit, the app's own rule names the value.
        _assert_json_error(
            requests.get(f"{web}/api/search", params={"q": "x" * 5_000}, timeout=10),
            400, "q must be at most 200 characters",
        )  # fmt: skip
