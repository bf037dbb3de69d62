"""The local cluster with real processes on 127.0.0.1: PostgreSQL, two web instances (gunicorn),
two AI instances (gunicorn) and two directors (HAProxy) in front.

Through either director, requests reach both web instances; with one AI instance killed pages still
get recommendations, with both killed they still render; ``movierec cluster down`` leaves no
process behind.
"""

from __future__ import annotations

import os
import re
import signal
import stat
import time
from pathlib import Path

import pytest
import requests
from support.cluster import PASSWORD, cluster_home, free_spec, tiny_catalogue

from movierec import cluster
from movierec.cluster.members import group_members, reap_children
from movierec.cluster.spec import port_free
from movierec.config import load_settings
from movierec.director.haproxy import process_alive
from movierec.errors import BadInput, ConfigError, NotFound

pytestmark = pytest.mark.integration

CSRF_FIELD = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
INSTANCE = re.compile(r'instance="(web-\d+)"')


def log_in(url: str) -> requests.Session:
    browser = requests.Session()
    token = CSRF_FIELD.search(browser.get(url + "auth/login", timeout=10).text).group(1)
    answer = browser.post(
        url + "auth/login",
        data={"username": "alice", "password": PASSWORD, "csrf_token": token},
        timeout=10,
    )
    assert answer.status_code == 200 and "Log out" in answer.text
    return browser


@pytest.fixture
def home():
    with cluster_home() as home:
        yield home


def test_one_port_lays_out_the_cluster_and_bad_layouts_are_refused(tmp_path):
    spec = cluster.ClusterSpec.on_port(9000, web=3, ai=2)
    assert spec.ports() == [9000, 9100, 9001, 9002, 9003, 9101, 9102]
    assert cluster.ClusterSpec.on_port(9000, directors=1).ports() == [9000, 9001, 9002, 9101, 9102]
    assert cluster.ClusterSpec.on_port(9000, director=False).director_port is None
    with pytest.raises(BadInput, match="directors must be"):
        cluster.ClusterSpec.on_port(9000, directors=3)
    with pytest.raises(BadInput, match="share a port"):
        cluster.ClusterSpec(web_ports=(9001,), ai_ports=(9001,))
    with pytest.raises(BadInput, match="web must be"):
        cluster.ClusterSpec.on_port(9000, web=0)
    toml = tmp_path / "cluster.toml"
    toml.write_text("[cluster]\nweb = 3\nai = 1\nport = 9500\n")
    assert cluster.ClusterSpec.on_port(**cluster.read_cluster_toml(toml)).web_ports == (
        9501,
        9502,
        9503,
    )
    toml.write_text("[cluster]\nwebs = 3\n")
    with pytest.raises(ConfigError, match="webs"):
        cluster.read_cluster_toml(toml)
    settings = load_settings(environ={}, toml_path=None, overrides={"state_dir": tmp_path})
    with pytest.raises(NotFound, match="no cluster"):
        cluster.down(settings, print)


def test_web_instances_split_the_machines_cores_unless_told_their_workers():
    assert cluster.ClusterSpec.on_port(9000, web=1).workers_per_web(cores=2) == 2
    assert cluster.ClusterSpec.on_port(9000, web=2).workers_per_web(cores=2) == 1
    assert cluster.ClusterSpec.on_port(9000, web=3).workers_per_web(cores=8) == 2
    assert cluster.ClusterSpec.on_port(9000, web=4).workers_per_web(cores=2) == 1
    assert cluster.ClusterSpec.on_port(9000, web=2, web_workers=3).workers_per_web(cores=2) == 3


def test_cluster_spreads_survives_ai_failures_and_stops_everything(home):
    settings, state_dir = home.settings, home.state_dir
    spec = free_spec(web=2, ai=2, web_workers=1, ai_workers=1)
    base = spec.director_port
    said: list[str] = []
    record = cluster.up(settings, spec, said.append, tiny_catalogue)
    members = {m.name: m for m in record.members}
    assert set(members) == {
        "director-1", "director-2", "postgres", "redis", "web-1", "web-2", "ai-1", "ai-2"
    }  # fmt: skip
    assert record.url == f"http://127.0.0.1:{base}/"
    assert members["director-2"].port == base + 100
    with pytest.raises(Exception, match="already runs"):
        cluster.up(settings, spec, said.append)

    # Through either director, round robin reaches both web instances.
    for director_url in (record.url, f"http://127.0.0.1:{base + 100}/"):
        seen = [
            INSTANCE.search(requests.get(director_url + "metrics", timeout=5).text).group(1)
            for _ in range(8)
        ]
        assert set(seen) == {"web-1", "web-2"}, seen

    status = home.cli("cluster", "status")
    assert status.returncode == 0, status.stderr
    for name in (
        "director-1", "director-2", "web-1", "web-2", "ai-1", "ai-2", "postgres", "redis"
    ):  # fmt: skip
        assert re.search(rf"{name}\s.*ok", status.stdout), status.stdout

    browser = log_in(record.url)
    page = browser.get(record.url + "for-you", timeout=10)
    assert page.status_code == 200 and "temporarily limited" not in page.text
    assert len(re.findall(r'href="/movies/\d+"', page.text)) >= 10

    # The web instances share the cluster's Redis for their login limits; its password is in
    # a file only the owner may read, never on a command line.
    assert stat.S_IMODE((state_dir / "redis_password").stat().st_mode) == 0o600
    redis_password = (state_dir / "redis_password").read_text().strip()
    assert redis_password not in Path(f"/proc/{members['redis'].pid}/cmdline").read_text()
    assert redis_password not in status.stdout + status.stderr

    # The AI instances answer only the web instances' key, kept for the owner alone.
    key_file = state_dir / "ai_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    recommend = f"http://127.0.0.1:{members['ai-1'].port}/recommend?user=1"
    assert requests.get(recommend, timeout=5).status_code == 401
    keyed = {"Authorization": f"Bearer {key_file.read_text().strip()}"}
    assert requests.get(recommend, headers=keyed, timeout=5).status_code == 200

    # One AI instance dies: every call still gets recommendations (each k is a cache miss).
    os.killpg(members["ai-1"].pid, signal.SIGKILL)
    for k in range(3, 11):
        answer = browser.get(record.url + f"api/recommendations?k={k}", timeout=10).json()
        assert not answer["limited"] and len(answer["items"]) == k, answer

    # Both die: pages still render, with popular movies and a note.
    os.killpg(members["ai-2"].pid, signal.SIGKILL)
    answer = browser.get(record.url + "api/recommendations?k=17", timeout=10).json()
    assert answer["limited"] and answer["items"]
    page = browser.get(record.url + "movies/1", timeout=10)
    assert page.status_code == 200 and "Similar movies are unavailable" in page.text
    page = browser.get(record.url + "for-you", timeout=10)
    assert page.status_code == 200 and 'href="/movies/' in page.text

    down = home.cli("cluster", "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert not (state_dir / "cluster.json").exists()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(
        group_members(m.pid) for m in record.members if m.role in ("web", "ai")
    ):
        time.sleep(0.1)
    ours = [m.pid for m in record.members]  # the drills' cluster may run meanwhile
    assert reap_children(ours) == 0  # they were our children: collect their exit status
    for member in record.members:
        if member.role in ("web", "ai"):
            assert group_members(member.pid) == [], member
        else:
            assert not process_alive(member.pid), member
    for port in spec.ports():
        assert port_free(port), port
    assert not (state_dir / "postgres" / "pgdata" / "postmaster.pid").exists()
