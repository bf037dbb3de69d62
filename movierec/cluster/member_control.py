"""Stop and start one member of a running cluster, as ``cluster down`` and ``cluster restart``
need it: whatever runs as the member is stopped (its recorded process, a web instance someone
restarted by hand, the postmaster of its data directory), and it starts again on the port it
had, the way ``cluster up`` started it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import requests

from movierec import director
from movierec.cluster import ha
from movierec.cluster.launch import load_launch, start_instance
from movierec.cluster.layout import cluster_server
from movierec.cluster.members import (
    ClusterRecord,
    Member,
    postgres_member,
    start_time,
    stop_group,
)
from movierec.cluster.redis_server import ROLE as REDIS
from movierec.cluster.redis_server import restart_redis
from movierec.cluster.strays import find_stray, stop_stray
from movierec.config import Settings
from movierec.db import LocalPostgres
from movierec.db.replicas import start_server
from movierec.errors import OpsCommandFailed
from movierec.ports import port_free

HEALTH_TIMEOUT = 90.0
DIRECTOR_TIMEOUT = 20.0

Say = Callable[[str], None]


def stop_member(
    settings: Settings, record: ClusterRecord, member: Member, say: Say, alone: bool = False
) -> bool:
    """Stop whatever runs as ``member``; False when nothing did. Raises
    :class:`OpsCommandFailed` when a process survives SIGKILL."""
    if member.role == "director":
        return director.stop(settings, record.director_name(member))
    if member.role == REDIS:
        return stop_group(member)
    if member.role in ha.HA_ROLES:
        return bool(ha.stop(settings.state_dir, member, alone))
    if member.role in ("web", "ai"):
        done = stop_group(member)
        stray = find_stray(member)
        if stray is not None and stray.ours:
            stop_stray(stray)
            say(f"{member.name}: stopped pid {stray.pid}, started outside the cluster")
            done = True
        elif stray is not None:
            say(f"{member.name}: {stray.describe()}; left alone")
        return done
    # A PostgreSQL server: pg_ctl stops the postmaster of the data directory, whoever started
    # it. A replica removed since (`db replica remove`) has no data directory left.
    server = LocalPostgres(Path(member.state_dir or ""))
    running = server.is_running()
    server.stop()
    return running


def start_member(settings: Settings, record: ClusterRecord, member: Member) -> Member:
    """Start ``member`` again on its port and return it with its new process, once healthy.

    Raises :class:`OpsCommandFailed` when the port is taken by another program or the member
    does not come up, :class:`NotFound` when the cluster has no record of how to start it.
    """
    if member.role == "director":
        name = record.director_name(member)
        pid = director.start(settings, director.load_state(settings, name))
        wait_for(member.health_url or "", member.name, DIRECTOR_TIMEOUT)
        return Member(member.name, member.role, member.port, pid, start_time(pid), True,
                      member.health_url)  # fmt: skip
    if member.role == REDIS:
        _check_port_free(member)
        return restart_redis(settings, member)
    if member.role in ha.HA_ROLES:
        return ha.restart(settings.state_dir, member)
    if member.role in ("web", "ai"):
        _check_port_free(member)
        launch = load_launch(settings.state_dir, member.name)
        fresh, child = start_instance(settings.state_dir, launch)
        child.wait_healthy(HEALTH_TIMEOUT)
        return fresh
    if member.role == "primary":
        server = cluster_server(Path(member.state_dir or "")).start()
    else:
        # A replica (member replica-r1 is server r1) or a shard: through the topology, which
        # keeps the configuration they were given (archiving, durability) and their port.
        entry = start_server(settings, member.name.removeprefix("replica-"))
        server = LocalPostgres(Path(member.state_dir or ""), port=entry.live_port())
    return postgres_member(member.name, member.role, server, member.owned)


def absent_detail(member: Member) -> str:
    """For ``cluster status``: what holds the port of a member whose own process is gone, and
    what brings it back."""
    stray = find_stray(member)
    if stray is None:
        return "`movierec cluster restart` starts it"
    if stray.ours:
        return f"{stray.describe()}; `movierec cluster restart` replaces it"
    return stray.describe()


def _check_port_free(member: Member) -> None:
    if port_free(member.port):
        return
    stray = find_stray(member)
    what = stray.describe() if stray is not None else "something listens there"
    raise OpsCommandFailed(f"{member.name}: port {member.port} is in use: {what}")


def wait_for(url: str, what: str, timeout: float = DIRECTOR_TIMEOUT) -> None:
    """Poll ``url`` until it answers 200. Raises :class:`OpsCommandFailed`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise OpsCommandFailed(f"{what} did not answer {url} within {timeout:.0f} s")
