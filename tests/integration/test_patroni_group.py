"""A cluster with a replica runs its database under Patroni (with etcd) behind the database
switch, and everything follows the primary by itself.

One cluster for the module (``movierec cluster up --replicas 1 --tablespace --backup``, a
small catalogue), the site on its director, the tests in order: the tablespace is apart on
each member, ``cluster status`` shows roles and timelines; the primary's postmaster is killed
under a steady writer through the site (Patroni promotes the synchronous standby, the site
takes writes again without a restart of any web or AI server, no acknowledged write is lost,
the old primary rejoins); a planned switchover under load fails no request but those in
flight when the old primary stopped, and those with a 503 and Retry-After; with etcd killed
the site keeps taking writes (failsafe mode); after the failover a backup works, and a
point-in-time restore brings every deleted row back on every member.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psycopg
import pytest
from support.commands import movierec
from support.writer import SteadyWriter, make_writers, movie_ids

from movierec import cluster
from movierec.cluster import ha
from movierec.cluster.members import is_running
from movierec.config import Settings, load_settings
from movierec.db import Database
from movierec.db.engines import libpq_conninfo
from movierec.db.patroni import Group, cluster_view, leader, load_group
from movierec.errors import BadInput
from movierec.ports import port_free

pytestmark = pytest.mark.integration
FAILOVER_GOAL_S = 15.0  # with Patroni's default ttl 30 / loop_wait 10


def free_base_port() -> int:
    """A port P with the cluster's ports (site, web, AI, database layer) free."""
    for _ in range(50):
        base = int(np.random.default_rng().integers(20_000, 32_000))  # below the ephemeral ports
        wanted = (base, base + 1, base + 101, *ha.ports(base, 1))
        if all(port_free(p) for p in wanted):
            return base
    raise AssertionError("no free ports")


@dataclass
class HACluster:
    state: Path
    base: int
    url: str  # the admin URL cluster up left (through the switch)

    @property
    def site(self) -> str:
        return f"http://127.0.0.1:{self.base}"

    @property
    def settings(self) -> Settings:
        overrides = {"state_dir": self.state, "database_url": self.url}
        return load_settings(environ={}, toml_path=None, overrides=overrides)

    def group(self) -> Group:
        return load_group(self.state / "postgres")

    def web_and_ai(self) -> list:
        record = cluster.load_record(self.state)
        return [m for m in record.members if m.role in ("web", "ai")]

    def wait(self, ready, what: str, timeout: float = 90.0):
        deadline = time.monotonic() + timeout
        views = []
        while time.monotonic() < deadline:
            try:
                views = cluster_view(self.group())
                if ready(views):
                    return views
            except Exception:  # noqa: BLE001 - a member may not answer mid-failover
                pass
            time.sleep(0.3)
        raise AssertionError(f"not {what} after {timeout} s: {views}")

    def healthy(self, views) -> bool:
        """A running leader and every other member streaming on its timeline."""
        lead = [v for v in views if v.is_leader and v.state == "running"]
        return (
            len(lead) == 1
            and len(views) == 2
            and all(v.state == "streaming" and v.timeline == lead[0].timeline for v in views
                    if not v.is_leader)
        )  # fmt: skip


@pytest.fixture(scope="module")
def ha_cluster():
    root = Path(tempfile.mkdtemp(prefix="movierec-ha-"))
    os.chmod(root, 0o755)  # the postgres OS user must enter it when we are root
    state = root / "state"
    base = free_base_port()
    up = movierec(
        state,
        "cluster", "up", "--web", "1", "--ai", "1", "--port", str(base),
        "--replicas", "1", "--tablespace", "--backup",
        "--movies", "200", "--users", "150", "--ratings", "5000",
    )  # fmt: skip
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        url = (state / "postgres" / "database_url").read_text().strip()
        yield HACluster(state, base, url)
    finally:
        if (state / "cluster.json").exists():
            down = movierec(state, "cluster", "down")
            assert down.returncode == 0, down.stdout + down.stderr
        shutil.rmtree(root, ignore_errors=True)


def test_each_member_has_its_own_tablespace_directory_and_status_shows_roles(ha_cluster):
    ha_cluster.wait(ha_cluster.healthy, "healthy")  # the replica streams (not just runs)
    group = ha_cluster.group()
    assert [m.name for m in group.members] == ["pg1", "pg2"]
    assert group.tablespaces == ("disk2",)
    places = {}
    for member in group.members:
        links = list((member.local.data_dir / "pg_tblspc").iterdir())
        assert len(links) == 1, links
        target = links[0].resolve()
        assert target == group.tablespace_dir(member, "disk2").resolve()
        # ratings_p0 lives there: files of their own on each member
        assert any(target.rglob("[0-9]*")), f"no relation files in {target}"
        places[member.name] = target
    assert places["pg1"] != places["pg2"]
    assert not places["pg1"].is_relative_to(places["pg2"])

    # A tablespace made now would be replayed by the replica into the primary's directory.
    extra = ha_cluster.state / "later"
    extra.mkdir()
    shutil.chown(extra, "postgres", "postgres") if os.geteuid() == 0 else None
    env_url = {"MOVIEREC_DATABASE_URL": ha_cluster.url}
    refused = subprocess.run(
        [sys.executable, "-m", "movierec", "db", "partitions", "add-tablespace", "later",
         str(extra)],
        env={**os.environ, **env_url, "MOVIEREC_STATE_DIR": str(ha_cluster.state)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 1
    assert "add tablespaces before replicas" in refused.stderr
    assert list(extra.iterdir()) == []

    status = movierec(ha_cluster.state, "cluster", "status")
    assert status.returncode == 0, status.stderr
    assert re.search(r"main-pg1\s.*ok.*leader running, timeline 1", status.stdout), status.stdout
    assert re.search(r"main-pg2\s.*ok.*(sync_standby|replica) streaming, timeline 1, lag \d+ B",
                     status.stdout), status.stdout  # fmt: skip
    for name in ("etcd", "dbswitch", "web-1", "ai-1", "director"):
        assert re.search(rf"{name}\s.*ok", status.stdout), status.stdout


def test_kill_9_of_the_primary_fails_over_with_no_acknowledged_write_lost(ha_cluster, request):
    database = Database(ha_cluster.settings)
    # Also when an assertion fails: a connection left open was reported by a later test of
    # the layout (only movierec.db may hold the driver) as its own failure.
    request.addfinalizer(database.dispose)
    servers_before = ha_cluster.web_and_ai()
    ha_cluster.wait(ha_cluster.healthy, "healthy")
    group = ha_cluster.group()
    old = group.member(leader(group))
    writer = SteadyWriter(
        ha_cluster.site, make_writers(database, 4, "kill9_"), movie_ids(database), max_seconds=90
    ).start()
    try:
        time.sleep(2)
        postmaster = int((old.local.data_dir / "postmaster.pid").read_text().split()[0])
        killed = time.monotonic()
        os.kill(postmaster, signal.SIGKILL)
        ha_cluster.wait(
            lambda views: any(v.is_leader and v.name != old.name and v.state == "running"
                              for v in views), "failed over", 40,
        )  # fmt: skip
        time.sleep(4)  # writes go on through the new primary
    finally:
        writer.stop()
    outage = writer.outage_after(killed)
    acknowledged, lost = writer.acknowledged(), writer.lost(database)
    failed = len(writer.failed())
    print(f"failover: site writes OK again {outage:.1f} s after kill -9; "
          f"{len(acknowledged)} acknowledged, {len(lost)} lost, {failed} failed")  # fmt: skip
    for outcome in writer.failed():
        print(f"  failed: {outcome.at - killed:+.2f} s after the kill, took {outcome.took:.2f} s,"
              f" status {outcome.status}")  # fmt: skip
    assert lost == set()
    assert outage <= FAILOVER_GOAL_S
    assert acknowledged and [o for o in writer.outcomes if o.at > killed and o.status == 200]
    # What failed was told to come back: 503 with Retry-After, never a 500.
    assert {o.status for o in writer.failed()} <= {503}, writer.failed()
    assert all(o.retry_after for o in writer.failed())
    # Held no longer than the failover may take (a request in flight at the kill waits
    # through it: 12 s seen).
    assert all(o.took <= FAILOVER_GOAL_S for o in writer.failed()), writer.failed()
    # Nothing was restarted: the same web and AI processes serve.
    assert ha_cluster.web_and_ai() == servers_before
    assert all(is_running(m) for m in servers_before)

    # The old primary rejoins as a replica on the new timeline by itself (pg_rewind).
    rejoined = time.monotonic()
    views = ha_cluster.wait(ha_cluster.healthy, "rejoined", 90)
    print(f"rejoin: {old.name} streams again {time.monotonic() - rejoined:.1f} s later")
    assert next(v for v in views if v.name == old.name).role in ("replica", "sync_standby")


@dataclass
class LastBreath:
    """When a primary stopped serving: the last answer it gave on a session of its own (polled
    every 50 ms) and the first failure after it. A site request was in flight at that moment
    when it was sent before ``gone`` and answered after ``last_ok``."""

    conninfo: str
    last_ok: float = 0.0
    gone: float = 0.0

    def watch(self, timeout: float) -> LastBreath:
        deadline = time.monotonic() + timeout
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            while time.monotonic() < deadline:
                try:
                    in_recovery = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
                except psycopg.Error:
                    in_recovery = True
                if in_recovery:
                    self.gone = time.monotonic()
                    return self
                self.last_ok = time.monotonic()
                time.sleep(0.05)
        raise AssertionError(f"the primary was still serving after {timeout} s")


def test_switchover_under_load_fails_only_requests_in_flight_at_the_switch(ha_cluster, request):
    """Three clients write through the site while `db replica promote` hands over. A request
    that arrives while there is no primary waits for the new one (database_connect_wait)
    instead of failing; only those in flight when the old primary stopped may fail, and
    those with a 503 and Retry-After."""
    database = Database(ha_cluster.settings)
    request.addfinalizer(database.dispose)
    # In synchronous mode Patroni hands over only to the synchronous standby.
    ha_cluster.wait(
        lambda views: ha_cluster.healthy(views) and any(v.role == "sync_standby" for v in views),
        "healthy with a synchronous standby",
    )
    group = ha_cluster.group()
    old = leader(group)
    candidate = next(m.name for m in group.members if m.name != old)
    stamp = int(time.time())
    writers = [
        SteadyWriter(
            ha_cluster.site, make_writers(database, 2, f"switch{i}_{stamp}_"),
            movie_ids(database), max_seconds=60,
        ).start()
        for i in range(3)
    ]  # fmt: skip
    breath = LastBreath(group.member(old).local.admin_conninfo("movierec"))
    watcher = ThreadPoolExecutor(1).submit(breath.watch, 45)
    try:
        time.sleep(2)
        started = time.monotonic()
        promoted = movierec(ha_cluster.state, "db", "replica", "promote", candidate, "--yes")
        assert promoted.returncode == 0, promoted.stdout + promoted.stderr
        assert candidate in promoted.stdout
        ha_cluster.wait(lambda views: leader(ha_cluster.group()) == candidate and
                        ha_cluster.healthy(views), "switched over", 60)  # fmt: skip
        watcher.result(timeout=1)
        time.sleep(3)
    finally:
        for writer in writers:
            writer.stop()
    outcomes = [o for w in writers for o in w.outcomes]
    failed = [o for w in writers for o in w.failed()]
    in_flight = [o for o in outcomes if o.at <= breath.gone and o.at + o.took >= breath.last_ok]
    stall = max(w.stall_after(started) for w in writers)
    print(f"switchover: {len(failed)} of {len(outcomes)} requests failed, {len(in_flight)} "
          f"in flight when the old primary stopped ({breath.gone - started:.1f} s after the "
          f"request); the slowest answer took {max(o.took for o in outcomes):.1f} s; the "
          f"longest stretch without an acknowledged write {stall:.1f} s")  # fmt: skip
    assert all(w.lost(database) == set() for w in writers)
    assert len([o for o in outcomes if o.at > breath.gone and o.status == 200]) > 20
    assert [o for o in failed if o not in in_flight] == []
    assert {o.status for o in failed} <= {503}
    assert all(o.retry_after for o in failed)


@pytest.mark.drill_slow  # `make drills`: 30-45 s of the suite's 15-minute budget
def test_with_etcd_killed_the_primary_keeps_taking_writes(ha_cluster, request):
    """Patroni's failsafe_mode: without the DCS, a leader that every member's REST API still
    calls the leader keeps its role past the lock's TTL, instead of demoting itself."""
    database = Database(ha_cluster.settings)
    request.addfinalizer(database.dispose)
    ha_cluster.wait(ha_cluster.healthy, "healthy")
    etcd = cluster_etcd(ha_cluster)
    writer = SteadyWriter(
        ha_cluster.site, make_writers(database, 4, "noetcd_"), movie_ids(database),
        max_seconds=60, pause=0.1,
    ).start()  # fmt: skip
    try:
        time.sleep(1)
        os.kill(etcd.daemon.pid(), signal.SIGKILL)
        killed = time.monotonic()
        time.sleep(ha_cluster.group().timing.ttl + 8)  # past the leader lock's TTL
    finally:
        writer.stop()
        etcd.start()
    after = [o for o in writer.outcomes if o.at > killed]
    print(f"etcd down: {len(after)} writes through the site, {len(writer.failed())} failed")
    assert len(after) > 50
    assert writer.failed() == []
    assert writer.lost(database) == set()
    ha_cluster.wait(ha_cluster.healthy, "healthy with etcd back")


def test_cluster_restart_brings_back_a_patroni_member_and_the_switch(ha_cluster):
    """Patroni restarts a crashed PostgreSQL by itself; what restarts a Patroni and the
    database switch when they die is ``cluster restart``, on their ports."""
    ha_cluster.wait(ha_cluster.healthy, "healthy")
    state_only = load_settings(
        environ={}, toml_path=None, overrides={"state_dir": ha_cluster.state}
    )
    # Reconcile first: after the etcd drill (`make drills` runs it before this test) its etcd
    # was started by hand, so the record's pid is stale and restart replaces it.
    cluster.restart(state_only, lambda _text: None)
    before = {m.name: m for m in cluster.load_record(ha_cluster.state).members}
    group = ha_cluster.group()
    leader_before = leader(group)
    replica = "main-" + next(m.name for m in group.members if m.name != leader_before)
    crashed = (replica, "dbswitch")  # (etcd alone: the etcd drill)
    for name in crashed:
        os.kill(before[name].pid, signal.SIGKILL)
    shown = movierec(ha_cluster.state, "cluster", "status")
    for name in crashed:
        assert re.search(rf"{name}\s.*down", shown.stdout), shown.stdout
    restarted = cluster.restart(state_only, lambda _text: None)
    assert set(crashed) <= set(restarted), restarted
    after = {m.name: m for m in cluster.load_record(ha_cluster.state).members}
    for name in crashed:
        assert after[name].port == before[name].port and after[name].pid != before[name].pid
    ha_cluster.wait(ha_cluster.healthy, "healthy after cluster restart")
    assert leader(ha_cluster.group()) == leader_before  # the group went on serving
    shown = movierec(ha_cluster.state, "cluster", "status")
    for name in crashed:
        assert re.search(rf"{name}\s.*ok", shown.stdout), shown.stdout


def cluster_etcd(ha_cluster: HACluster):
    from movierec.cluster.ha import etcd_for

    return etcd_for(ha_cluster.state, ha_cluster.base)


@pytest.mark.drill_slow  # `make drills`: 30-45 s of the suite's 15-minute budget
def test_after_a_failover_backup_and_restore_bring_every_row_back_on_every_member(ha_cluster):
    ha_cluster.wait(ha_cluster.healthy, "healthy")
    backed_up = movierec(ha_cluster.state, "backup", "create", "--type", "full")
    assert backed_up.returncode == 0, backed_up.stdout + backed_up.stderr

    def counts(conninfo: str) -> tuple[int, int, bool]:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            return conn.execute(
                "SELECT (SELECT count(*) FROM ratings_p0), (SELECT count(*) FROM ratings_p1),"
                " pg_is_in_recovery()"
            ).fetchone()

    group = ha_cluster.group()
    before = counts(group.members[0].local.admin_conninfo("movierec"))[:2]
    assert min(before) > 100  # ratings_p0 lives in the tablespace
    time.sleep(1.5)
    target = datetime.now(UTC).isoformat()
    time.sleep(1.5)
    admin = libpq_conninfo(ha_cluster.url, "test")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")  # no history rows for this
        assert conn.execute("DELETE FROM ratings WHERE movie_id % 4 <> 0").rowcount > 0
    restored = movierec(ha_cluster.state, "backup", "restore", "--time", target, "--yes")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    views = ha_cluster.wait(ha_cluster.healthy, "healthy after the restore", 120)
    group = ha_cluster.group()
    for member in group.members:
        got = counts(member.local.admin_conninfo("movierec"))
        assert got[:2] == before, (member.name, got, before)
        is_leader = next(v for v in views if v.name == member.name).is_leader
        assert got[2] is not is_leader  # the replica serves the restored rows, read-only
    # The site's read frontend (the replica) has them too.
    reads = libpq_conninfo(ha_cluster.url, "test").replace(
        f"port={group.primary_port}", f"port={group.replica_port}"
    )
    assert counts(reads)[:2] == before


def test_up_refuses_a_taken_database_switch_port_before_starting_anything(tmp_path):
    base = free_base_port()
    spec = cluster.ClusterSpec.on_port(base, web=1, ai=1, replicas=1)
    settings = load_settings(environ={}, toml_path=None, overrides={"state_dir": tmp_path})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", base + 200))
        taken.listen()
        with pytest.raises(BadInput, match=rf"port\(s\) {base + 200} .*database switch"):
            cluster.up(settings, spec, lambda _text: None)
    assert not (tmp_path / "etcd").exists() and not (tmp_path / "postgres").exists()
