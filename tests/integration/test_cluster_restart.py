"""Crashed members of a running cluster, and what the operator's commands say and do about them.

A member is ok only when its own process runs and answers its health check; ``cluster
restart`` starts what is missing on the ports it had (a member restarted by hand is replaced
by the cluster's own), ``cluster restart NAME`` restarts one that runs, and ``cluster down``
stops everything that runs as a member, hand-restarted ones included,
was removed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import psycopg
import pytest
import requests
from support.cluster import (
    ClusterHome,
    cluster_home,
    crash,
    free_spec,
    start_by_hand,
    tiny_catalogue,
)

from movierec import cluster
from movierec.cluster import Member
from movierec.db import LocalPostgres
from movierec.ports import port_free

pytestmark = pytest.mark.integration
DURABILITY = ("fsync", "synchronous_commit", "full_page_writes")


@pytest.fixture(scope="module")
def home() -> Iterator[ClusterHome]:
    with cluster_home("movierec-restart-") as home:
        yield home


@pytest.fixture
def running(home: ClusterHome) -> cluster.ClusterRecord:
    """The module's cluster (2 web, 1 AI, a shard server, two directors), started when it is
    not up, its crashed members restarted when a test before left some. (A replicated
    primary is a Patroni group, whose members test_patroni_group.py restarts.)"""
    if cluster.load_record(home.state_dir) is None:
        spec = free_spec(web=2, ai=1, shards=1, web_workers=1, ai_workers=1)
        return cluster.up(home.settings, spec, lambda _text: None, tiny_catalogue)
    cluster.restart(home.settings, lambda _text: None)
    return cluster.load_record(home.state_dir)


def members(home: ClusterHome) -> dict[str, Member]:
    return {m.name: m for m in cluster.load_record(home.state_dir).members}


def health_of(home: ClusterHome) -> dict[str, str]:
    """``cluster status`` as the operator reads it: each member's health column."""
    shown = home.cli("cluster", "status")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    health = {}
    for name in members(home):
        row = re.search(rf"^\W*{re.escape(name)}\s.*$", shown.stdout, re.M)
        assert row, (name, shown.stdout)
        found = re.search(r"\b(ok|down|HTTP \d+|no answer)\b", row.group(0).split(name, 1)[1])
        health[name] = found.group(1) if found else row.group(0)
    return health


def test_status_tells_the_truth_and_restart_brings_back_every_kind(home, running):
    before = members(home)
    assert set(health_of(home).values()) == {"ok"}
    # How each instance was started, secret key and database URLs included: for its owner only.
    for name in ("web-1", "web-2", "ai-1"):
        launch = home.state_dir / "launch" / f"{name}.json"
        assert launch.stat().st_mode & 0o777 == 0o600, name

    # web-2 crashes and someone starts it again by hand: it answers, but it is not ours.
    crash(before["web-2"])
    stray = start_by_hand(before["web-2"], like=before["web-1"])
    assert health_of(home)["web-2"] == "down"
    refused = home.cli("cluster", "up", "--port", str(before["web-1"].port - 1))
    assert refused.returncode == 1 and "cluster restart" in refused.stderr, refused.stderr

    # Crash one of every other kind.
    crashed = ("ai-1", "director-1", "shard1", "postgres", "redis")
    for name in crashed:
        crash(before[name])
    health = health_of(home)
    assert {name: health[name] for name in crashed} == dict.fromkeys(crashed, "down")

    restarted = home.cli("cluster", "restart")
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    after = members(home)
    for name in ("postgres", "shard1", "redis", "ai-1", "web-2", "director-1"):
        assert after[name].port == before[name].port, name
        assert after[name].pid != before[name].pid, name
        assert f"restarted {name}" in restarted.stdout, restarted.stdout
    assert after["web-1"] == before["web-1"]  # it ran: kept as it was
    with psycopg.connect(home.admin_conninfo()) as conn:
        durable = [conn.execute(f"SHOW {name}").fetchone()[0] for name in DURABILITY]
    assert durable == ["on"] * len(DURABILITY)  # as `up` started it: a crash loses no commit
    assert stray.wait(timeout=15) is not None  # replaced by the cluster's own web-2
    assert set(health_of(home).values()) == {"ok"}
    url = running.url
    assert requests.get(url + "api/search?q=movie", timeout=10).status_code == 200

    # A member that runs is restarted when named.
    again = home.cli("cluster", "restart", "web-1")
    assert again.returncode == 0, again.stdout + again.stderr
    assert members(home)["web-1"].pid != before["web-1"].pid
    assert members(home)["web-1"].port == before["web-1"].port
    assert set(health_of(home).values()) == {"ok"}
    unknown = home.cli("cluster", "restart", "web-9")
    assert unknown.returncode == 1 and "web-9" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1


def test_down_stops_hand_restarted_members(home, running):
    before = members(home)
    crash(before["web-1"])
    stray = start_by_hand(before["web-1"], like=before["web-2"])

    primary = LocalPostgres(home.state_dir / "postgres")
    down = home.cli("cluster", "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "stopped web-1" in down.stdout
    assert not (home.state_dir / "cluster.json").exists()
    assert stray.wait(timeout=15) is not None
    for member in before.values():
        assert port_free(member.port), member.name
    assert not primary.is_running()
