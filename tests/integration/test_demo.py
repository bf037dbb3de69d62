"""The README's demo path, headless, end to end: ``movierec demo`` in a subprocess.

It starts a private PostgreSQL, generates data, trains a model, serves the AI and web servers;
we log in as the demo user over real HTTP, see recommendations, then Ctrl-C stops everything.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests

from movierec.db.local_server import free_port

pytestmark = pytest.mark.integration

CSRF_FIELD = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
UP = re.compile(r"movierec is up: (\S+)")
LOGIN = re.compile(r"demo login: (\S+) / (\S+)")


def _read_until_up(process: subprocess.Popen, timeout: float) -> tuple[str, str, str]:
    """The web URL, user and password the demo prints, or fail with everything it said."""
    deadline, said = time.monotonic() + timeout, []
    os.set_blocking(process.stdout.fileno(), False)
    while time.monotonic() < deadline and process.poll() is None:
        line = process.stdout.readline()
        if not line:
            time.sleep(0.1)
            continue
        said.append(line)
        text = "".join(said)
        if UP.search(text) and LOGIN.search(text):
            return UP.search(text).group(1), *LOGIN.search(text).groups()
    raise AssertionError(f"demo did not come up:\n{''.join(said)}")


@pytest.fixture
def demo_dir():
    path = Path(tempfile.mkdtemp(prefix="movierec-demo-"))
    os.chmod(path, 0o755)  # the postgres OS user must enter the state dir inside it
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


def test_demo_serves_recommendations_and_stops_cleanly(demo_dir):
    web_port, ai_port = free_port(), free_port()
    env = {
        **os.environ,
        "MOVIEREC_WEB_PORT": str(web_port),
        "MOVIEREC_AI_PORT": str(ai_port),
        "TERM": "dumb",
        "COLUMNS": "200",
    }
    env.pop("MOVIEREC_DATABASE_URL", None)
    command = [sys.executable, "-m", "movierec", "demo", "--movies", "600", "--users", "400"]
    process = subprocess.Popen(
        [*command, "--ratings", "30000"],
        cwd=demo_dir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url, user, password = _read_until_up(process, timeout=180)
        assert url == f"http://127.0.0.1:{web_port}/"
        browser = requests.Session()
        token = CSRF_FIELD.search(browser.get(url + "auth/login", timeout=10).text).group(1)
        browser.post(
            url + "auth/login",
            data={"username": user, "password": password, "csrf_token": token},
            timeout=10,
        )
        page = browser.get(url + "for-you", timeout=10)
        assert page.status_code == 200 and "temporarily limited" not in page.text
        assert len(re.findall(r'href="/movies/\d+"', page.text)) >= 10
        api = browser.get(url + "api/recommendations?k=5", timeout=10).json()
        assert len(api["items"]) == 5
    finally:
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=60)
    assert process.returncode == 0, out
    for port in (web_port, ai_port):
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/", timeout=2)
    pgdata = demo_dir / ".state" / "postgres" / "pgdata"
    assert not (pgdata / "postmaster.pid").exists(), "PostgreSQL still running after Ctrl-C"
