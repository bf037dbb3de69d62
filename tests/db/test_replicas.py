"""Replicas of a PostgreSQL group Patroni runs (with a real etcd), through ``movierec db
replica``: create, status, promote (a switchover), rejoin (pg_rewind, or a rebuild), remove,
sync; what Patroni refuses is refused in one line. The database switch in front follows every
change, so the group's one address always reaches the primary.

One group for the module (bootstrap + a clone take ~20 s); each test leaves it with a
running leader and a streaming replica.
"""

from __future__ import annotations

import base64
import os
import shutil
import stat
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg
import pytest
import requests
from typer.testing import CliRunner

from movierec.cli.main import app
from movierec.cluster import ha
from movierec.cluster import patroni as members
from movierec.cluster.members import Member
from movierec.db.patroni import Group, cluster_view, etcd_user, leader, load_group
from movierec.director import database as switch
from movierec.ports import port_free

pytestmark = pytest.mark.integration


@dataclass
class HAGroup:
    state: Path
    base: int

    def group(self) -> Group:
        return load_group(self.state / "postgres")

    def conn(self, reads: bool = False) -> psycopg.Connection:
        """The superuser, through the switch (the primary, or a replica for reads)."""
        server = ha.frontend(self.group(), reads=reads)
        return psycopg.connect(server.admin_conninfo("postgres"), autocommit=True)

    def member_conn(self, name: str) -> psycopg.Connection:
        member = self.group().member(name)
        return psycopg.connect(member.local.admin_conninfo("postgres"), autocommit=True)

    def cli(self, *args: str):
        env = {"MOVIEREC_STATE_DIR": str(self.state), "COLUMNS": "200"}
        return CliRunner().invoke(app, ["db", "replica", *args], env=env)

    def wait_healthy(self, members: int = 2, timeout: float = 90.0) -> list:
        """Until a leader runs and the other members stream on its timeline as sync."""
        deadline = time.monotonic() + timeout
        views = []
        while time.monotonic() < deadline:
            try:
                views = cluster_view(self.group())
            except Exception:  # noqa: BLE001 - mid-change a member may not answer
                views = []
            lead = [v for v in views if v.is_leader and v.state == "running"]
            others = [v for v in views if not v.is_leader]
            if (
                len(views) == members
                and lead
                and all(v.state == "streaming" and v.timeline == lead[0].timeline for v in others)
                and any(v.role == "sync_standby" for v in others)
            ):
                return views
            time.sleep(0.3)
        raise AssertionError(f"group not healthy after {timeout} s: {views}")


def free_base() -> int:
    for _ in range(50):
        base = int(np.random.default_rng().integers(20_000, 32_000))  # below the ephemeral ports
        if all(port_free(p) for p in ha.ports(base, 1)):
            return base
    raise AssertionError("no free ports")


@pytest.fixture(scope="module")
def ha_group() -> Iterator[HAGroup]:
    root = Path(tempfile.mkdtemp(prefix="movierec-patroni-"))
    os.chmod(root, 0o755)  # the postgres OS user must enter it when we are root
    state = root / "state"
    state.mkdir()
    base = free_base()
    record: list[Member] = []
    try:
        ha.start_main_group(state, base, record, lambda _text: None)
        ha.add_replicas(state, 1, record, lambda _text: None)
        h = HAGroup(state, base)
        with h.conn() as conn:
            conn.execute("CREATE TABLE notes (id bigserial PRIMARY KEY, body text NOT NULL)")
        yield h
    finally:
        for group in ha.all_groups(state):
            members.stop_group(group)
        switch.stop(state)
        ha.etcd_for(state, base).stop()
        shutil.rmtree(root, ignore_errors=True)


def write_note(h: HAGroup) -> str:
    body = uuid.uuid4().hex
    with h.conn() as conn:
        conn.execute("INSERT INTO notes (body) VALUES (%s)", (body,))
    return body


def has_note(conn: psycopg.Connection, body: str) -> bool:
    return conn.execute("SELECT 1 FROM notes WHERE body = %s", (body,)).fetchone() is not None


def test_members_trust_nobody_and_patronis_api_wants_a_password_for_changes(ha_group):
    group = ha_group.group()
    for member in group.members:
        mode = member.config_file.stat().st_mode
        assert stat.S_IMODE(mode) == 0o600, member.config_file
    pg1 = group.members[0]
    # Every TCP login needs a password; Patroni's REST API wants one for changes.
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(host="127.0.0.1", port=pg1.pg_port, user="postgres",
                        dbname="postgres", passfile="/nonexistent", connect_timeout=5)  # fmt: skip
    refused = requests.post(f"{pg1.rest_url}/switchover", json={"leader": "pg1"}, timeout=5)
    assert refused.status_code == 401
    # The members' own copies of the passwords log in (the backups' restore points use them).
    for member in group.members:
        with psycopg.connect(member.local.admin_conninfo("postgres")) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)


def test_status_shows_each_member_role_timeline_and_lag(ha_group):
    ha_group.wait_healthy()
    shown = ha_group.cli("status")
    assert shown.exit_code == 0, shown.output
    lead = leader(ha_group.group())
    lines = {line.split()[0]: line for line in shown.output.splitlines() if line.strip()}
    assert "leader" in lines[lead] and "running" in lines[lead]
    other = next(m.name for m in ha_group.group().members if m.name != lead)
    assert "sync_standby" in lines[other] and "streaming" in lines[other]


def test_a_row_on_the_primary_shows_on_the_read_frontend(ha_group):
    ha_group.wait_healthy()
    body = write_note(ha_group)
    deadline = time.monotonic() + 5
    with ha_group.conn(reads=True) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
        while not has_note(conn, body):
            assert time.monotonic() < deadline, "the replica did not replay the row"
            time.sleep(0.05)


@pytest.mark.drill_slow  # `make drills`: waits out Patroni's 30 s ttl for the slot
def test_create_then_remove_a_replica_and_the_switch_follows(ha_group):
    ha_group.wait_healthy()
    created = ha_group.cli("create")
    assert created.exit_code == 0, created.output
    assert "pg3" in created.output and "streams" in created.output
    assert "server pg3" in switch.switch_files(ha_group.state).config.read_text()
    body = write_note(ha_group)
    with ha_group.member_conn("pg3") as conn:
        deadline = time.monotonic() + 10
        while not has_note(conn, body):
            assert time.monotonic() < deadline
            time.sleep(0.05)

    lead = leader(ha_group.group())
    refused = ha_group.cli("remove", lead, "--yes")
    assert refused.exit_code == 1
    assert "is the primary" in refused.output and len(refused.output.strip().splitlines()) == 1
    unknown = ha_group.cli("remove", "pg9", "--yes")
    assert unknown.exit_code == 1 and "no member 'pg9'" in unknown.output

    pg3_dir = ha_group.group().member("pg3").state_dir
    removed = ha_group.cli("remove", "pg3", "--yes")
    assert removed.exit_code == 0, removed.output
    assert not pg3_dir.exists()
    assert [m.name for m in ha_group.group().members] == ["pg1", "pg2"]
    assert "pg3" not in switch.switch_files(ha_group.state).config.read_text()
    # Patroni drops the slot the leader kept for it once its member key expires (ttl 30 s).
    deadline = time.monotonic() + 60
    with ha_group.conn() as conn:
        while conn.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = 'pg3'").fetchone():
            assert time.monotonic() < deadline, "the slot of pg3 stays on the primary"
            time.sleep(0.5)
    ha_group.wait_healthy()


def test_promote_is_a_switchover_that_keeps_every_row_and_refuses_the_leader(ha_group):
    ha_group.wait_healthy()
    old = leader(ha_group.group())
    candidate = next(m.name for m in ha_group.group().members if m.name != old)
    same = ha_group.cli("promote", old, "--yes")
    assert same.exit_code == 1 and f"{old} is the primary already" in same.output
    bodies = [write_note(ha_group) for _ in range(20)]

    promoted = ha_group.cli("promote", candidate, "--yes")
    assert promoted.exit_code == 0, promoted.output
    assert candidate in promoted.output
    views = ha_group.wait_healthy()
    assert leader(ha_group.group()) == candidate
    assert next(v for v in views if v.name == old).role == "sync_standby"  # it rejoined
    with ha_group.conn() as conn:  # the switch leads to the new primary
        assert not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
        assert conn.execute("SELECT inet_server_port()").fetchone()[0] == (
            ha_group.group().member(candidate).pg_port
        )
        assert all(has_note(conn, body) for body in bodies)


def test_rejoin_starts_a_stopped_member_and_rebuilds_a_running_one(ha_group):
    ha_group.wait_healthy()
    group = ha_group.group()
    # What Patroni refuses is refused in one line, with Patroni's reason.
    refused = ha_group.cli("rejoin", leader(group))
    assert refused.exit_code == 1
    assert refused.output.count("\n") == 1, refused.output
    assert "Patroni refused reinitialize" in refused.output and "leader" in refused.output
    replica = next(m for m in group.members if m.name != leader(group))
    assert members.stop_member(replica)
    missed = write_note(ha_group)  # written while it was away

    started = ha_group.cli("rejoin", replica.name)
    assert started.exit_code == 0, started.output
    assert "started" in started.output
    with ha_group.member_conn(replica.name) as conn:
        deadline = time.monotonic() + 10
        while not has_note(conn, missed):
            assert time.monotonic() < deadline
            time.sleep(0.05)

    rebuilt = ha_group.cli("rejoin", replica.name)
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "rebuilt from the primary" in rebuilt.output
    with ha_group.member_conn(replica.name) as conn:
        assert has_note(conn, missed)
    ha_group.wait_healthy()


def test_sync_off_and_on_change_patronis_synchronous_mode(ha_group):
    group = ha_group.group()

    def synchronous_mode() -> bool:
        return requests.get(f"{group.members[0].rest_url}/config", timeout=5).json()[
            "synchronous_mode"
        ]

    def becomes(wanted: bool) -> bool:  # every member applies it on its next loop
        deadline = time.monotonic() + 15
        while synchronous_mode() is not wanted:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        return True

    assert synchronous_mode() is True
    off = ha_group.cli("sync", "off")
    assert off.exit_code == 0, off.output
    assert "synchronous_mode is off" in off.output
    assert becomes(False)
    on = ha_group.cli("sync", "on")
    assert on.exit_code == 0, on.output
    assert becomes(True)
    ha_group.wait_healthy()


@pytest.mark.parametrize("args", [("create",), ("status",), ("promote", "pg2", "--yes")])
def test_without_a_patroni_group_the_replica_commands_say_how_to_get_one(tmp_path, args):
    env = {"MOVIEREC_STATE_DIR": str(tmp_path), "COLUMNS": "200"}
    result = CliRunner().invoke(app, ["db", "replica", *args], env=env)
    assert result.exit_code == 1
    assert result.output.count("\n") == 1, result.output
    assert "no Patroni group" in result.output and "--replicas" in result.output


def test_etcd_wants_a_password_and_each_group_reaches_only_its_own_keys(ha_group):
    etcd = ha.etcd_for(ha_group.state, ha_group.base)

    def keys(prefix: str, token: str | None = None) -> requests.Response:
        body = {"key": base64.b64encode(prefix.encode()).decode(), "range_end": "AA=="}
        headers = {"Authorization": token} if token else {}
        return requests.post(f"{etcd.url}/v3/kv/range", json=body, headers=headers, timeout=5)

    anonymous = keys("/movierec/")
    assert anonymous.status_code != 200 and "user name is empty" in anonymous.text
    group = ha_group.group()
    login = {"name": etcd_user("main"), "password": group.passwords_owner.passwords.get("etcd")}
    token = requests.post(f"{etcd.url}/v3/auth/authenticate", json=login, timeout=5).json()
    own = requests.post(
        f"{etcd.url}/v3/kv/range",
        json={"key": base64.b64encode(b"/movierec/main/leader").decode()},
        headers={"Authorization": token["token"]},
        timeout=5,
    )
    assert own.status_code == 200 and own.json().get("kvs"), own.text
    other = keys("/movierec/shard1/", token["token"])
    assert other.status_code != 200 and "permission denied" in other.text
    wrong = requests.post(
        f"{etcd.url}/v3/auth/authenticate", json={**login, "password": "guess"}, timeout=5
    )
    assert wrong.status_code != 200
