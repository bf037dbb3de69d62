"""Streaming replicas on real servers: create, status, sync, remove, promote (library and CLI).

Each cluster is its own primary (not the session server: promotion stops it) in a temp
directory the postgres OS user can enter.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg.errors import ReadOnlySqlTransaction
from sqlalchemy import text
from typer.testing import CliRunner

from movierec.cli.main import app
from movierec.config import Settings, load_settings
from movierec.db import Database, LocalPostgres
from movierec.db.local_server import free_port
from movierec.db.promotion import promote
from movierec.db.replicas import (
    ServerState,
    create_replica,
    remove_replica,
    replica_dir,
    replication_status,
    set_synchronous,
    start_server,
    stop_server,
    wait_for_state,
)
from movierec.db.roles import masked
from movierec.db.topology import (
    PromotionRefused,
    Role,
    Server,
    load_topology,
    save_topology,
    server_url,
    topology_path,
)
from movierec.errors import BadInput, DatabaseUnavailable, NotFound, OpsCommandFailed

pytestmark = pytest.mark.integration
SETTING = "SELECT current_setting(%s)"
ARCHIVING = {"archive_mode": "on", "archive_command": "'/bin/true %p'"}


@dataclass
class Cluster:
    root: Path
    state: Path
    primary: LocalPostgres
    url: str

    @property
    def settings(self) -> Settings:
        return make_settings(self.url, self.state)

    def env(self) -> dict[str, str]:
        # COLUMNS: a wide virtual terminal, so the status table is never folded
        return {
            "MOVIEREC_DATABASE_URL": self.url,
            "MOVIEREC_STATE_DIR": str(self.state),
            "COLUMNS": "200",
        }


def make_settings(url: str, state: Path) -> Settings:
    overrides = {"database_url": url, "state_dir": state}
    return load_settings(environ={}, toml_path=None, overrides=overrides)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A primary and one streaming replica r1, shared by the tests that leave it as it was."""
    with new_cluster() as c:
        create_replica(c.settings, "r1")
        yield c


@contextmanager
def new_cluster() -> Iterator[Cluster]:
    """A fresh primary under state/postgres with a ``notes`` table; every server stopped after."""
    root = Path(tempfile.mkdtemp(prefix="movierec-repl-"))
    os.chmod(root, 0o755)  # the postgres OS user must enter it when we are root
    state = root / "state"
    # archive settings stand for pgBackRest's: a replica must carry them over
    primary = LocalPostgres(state / "postgres", settings=ARCHIVING).start()
    c = Cluster(root, state, primary, primary.create_database("movierec"))
    try:
        with pg(c.url) as conn:
            conn.execute("CREATE TABLE notes (id bigserial PRIMARY KEY, body text NOT NULL)")
        yield c
    finally:
        for server in load_topology(c.settings).servers:
            if server.local is not None:
                with suppress(OpsCommandFailed):  # stop the others all the same
                    server.local.stop()
        primary.stop()
        shutil.rmtree(root, ignore_errors=True)


def pg(url: str) -> psycopg.Connection:
    return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)


def write_note(url: str) -> str:
    body = uuid.uuid4().hex
    with pg(url) as conn:
        conn.execute("INSERT INTO notes (body) VALUES (%s)", (body,))
    return body


def has_note(url: str, body: str) -> bool:
    with pg(url) as conn:
        return conn.execute("SELECT 1 FROM notes WHERE body = %s", (body,)).fetchone() is not None


def eventually(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def replica_url(settings: Settings, name: str) -> str:
    return server_url(settings, load_topology(settings).get(name), hide_password=False)


def status_of(settings: Settings, name: str):
    return next(s for s in replication_status(settings) if s.name == name)


def run_cli(c: Cluster, *args: str):
    return CliRunner().invoke(app, ["db", "replica", *args], env=c.env())


# --- bad input, before any server -------------------------------------------------------------


@pytest.mark.parametrize("name", ["R1", "1r", "a-b", "x" * 41, "", "r 1"])
def test_bad_replica_names_are_refused(tmp_path, name):
    settings = make_settings("postgresql://postgres@127.0.0.1:1/movierec", tmp_path)
    with pytest.raises(BadInput, match="bad replica name"):
        create_replica(settings, name)
    assert not topology_path(settings).exists()


def test_unreachable_primary_is_a_one_line_error(tmp_path):
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/movierec"
    settings = make_settings(url, tmp_path / "state")
    with pytest.raises(DatabaseUnavailable, match="unreachable"):
        create_replica(settings, "r1")
    assert not replica_dir(settings, "r1").exists()
    result = CliRunner().invoke(
        app,
        ["db", "replica", "create"],
        env={"MOVIEREC_DATABASE_URL": url, "MOVIEREC_STATE_DIR": str(tmp_path / "state")},
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("error: primary main (127.0.0.1:")
    assert len(result.stderr.strip().splitlines()) == 1


# --- a primary with one replica ---------------------------------------------------------------


def test_row_written_on_primary_shows_on_replica_within_a_second(cluster):
    body = write_note(cluster.url)
    r1 = replica_url(cluster.settings, "r1")
    assert eventually(lambda: has_note(r1, body), timeout=1.0)
    with pg(r1) as conn, pytest.raises(ReadOnlySqlTransaction):
        conn.execute("INSERT INTO notes (body) VALUES ('on a standby')")


def test_status_shows_streaming_with_small_lag(cluster):
    write_note(cluster.url)
    primary, r1 = replication_status(cluster.settings)
    assert (primary.name, primary.role, primary.state) == ("main", "primary", ServerState.UP)
    assert (r1.name, r1.role, r1.state) == ("r1", "standby", ServerState.STREAMING)
    assert r1.slot == "replica_r1" and r1.sync_state == "async"
    assert 0 <= r1.lag_bytes < 1_000_000
    assert 0 <= r1.lag_seconds < 1.0
    with pg(cluster.url) as conn:
        active = conn.execute(
            "SELECT active FROM pg_replication_slots WHERE slot_name = 'replica_r1'"
        ).fetchone()
    assert active == (True,)


def test_create_refuses_a_name_that_exists(cluster):
    for name in ("r1", "main"):
        with pytest.raises(BadInput, match="already exists"):
            create_replica(cluster.settings, name)


def test_sync_on_makes_commits_wait_for_the_replica(cluster):
    settings = cluster.settings
    with pytest.raises(NotFound, match="no server named 'r7'"):
        set_synchronous(settings, True, "r7")
    with pytest.raises(BadInput, match="drop --name"):
        set_synchronous(settings, False, "r1")
    result = set_synchronous(settings, True, "r1")
    try:
        assert result.standby_names == "r1"
        assert status_of(settings, "r1").sync_state == "sync"
        # remote_apply: COMMIT returns only once r1 has applied it, so no polling below
        with pg(cluster.url) as conn, conn.transaction():
            conn.execute("SET LOCAL synchronous_commit = remote_apply")
            conn.execute("INSERT INTO notes (body) VALUES ('synchronous')")
        assert has_note(replica_url(settings, "r1"), "synchronous")
    finally:
        set_synchronous(settings, False)
    assert status_of(settings, "r1").sync_state == "async"


def test_readonly_sessions_use_the_replica_and_fall_back_to_the_primary(cluster):
    settings = cluster.settings
    r1 = load_topology(settings).get("r1")
    db = Database(settings.replace(replica_url=server_url(settings, r1, hide_password=False)))
    try:
        with db.session(readonly=True) as s:
            assert s.scalar(text("SELECT pg_is_in_recovery()")) is True
        with db.session() as s:
            assert s.scalar(text("SELECT pg_is_in_recovery()")) is False
        stop_server(settings, "r1")
        assert status_of(settings, "r1").state is ServerState.DOWN
        with db.session(readonly=True) as s:
            assert s.scalar(text("SELECT pg_is_in_recovery()")) is False
    finally:
        db.dispose()
        restarted = start_server(settings, "r1")
    assert restarted.live_port() == r1.live_port()  # same port: replica_url stays valid
    assert wait_for_state(settings, "r1", {ServerState.STREAMING}).state == "streaming"


def test_replica_keeps_the_primary_configuration(cluster):
    """archive_command (pgBackRest) and durability survive the copy and every restart."""
    wanted = ("archive_command", "fsync", "hot_standby")
    with pg(cluster.url) as conn:
        on_primary = [conn.execute(SETTING, (name,)).fetchone()[0] for name in wanted]
    with pg(replica_url(cluster.settings, "r1")) as conn:
        on_replica = [conn.execute(SETTING, (name,)).fetchone()[0] for name in wanted]
    assert on_primary[:2] == ["/bin/true %p", "off"]
    assert on_replica == [*on_primary[:2], "on"]


def test_remove_drops_the_slot_and_the_files(cluster):
    settings = cluster.settings
    r2 = create_replica(settings, "r2")
    assert r2.state_dir.is_dir() and "r2" in load_topology(settings)
    assert remove_replica(settings, "r2") is True
    assert not r2.state_dir.exists() and "r2" not in load_topology(settings)
    with pg(cluster.url) as conn:
        slots = conn.execute("SELECT slot_name FROM pg_replication_slots").fetchall()
    assert slots == [("replica_r1",)]
    with pytest.raises(BadInput, match="is the primary"):
        remove_replica(settings, "main")
    with pytest.raises(NotFound):
        remove_replica(settings, "r2")


# --- promotion, through the CLI ---------------------------------------------------------------


def test_promote_fences_the_old_primary_and_keeps_every_row():
    with new_cluster() as c:
        created = run_cli(c, "create", "--name", "r1")
        assert created.exit_code == 0, created.output
        r1_url = replica_url(c.settings, "r1")
        assert created.stdout.strip().splitlines()[-1] == masked(r1_url) != masked(c.url)
        bodies = [write_note(c.url) for _ in range(20)]
        assert eventually(lambda: has_note(r1_url, bodies[-1]), timeout=1.0)

        shown = run_cli(c, "status")
        assert shown.exit_code == 0
        assert "streaming" in shown.stdout and "replica_r1" in shown.stdout

        unknown = run_cli(c, "promote", "r9", "--yes")
        assert unknown.exit_code == 1
        assert unknown.stderr.strip() == "error: no server named 'r9' (known: main, r1)"

        promoted = run_cli(c, "promote", "r1", "--yes")
        assert promoted.exit_code == 0, promoted.output
        assert promoted.stdout.strip().splitlines()[-1] == f"MOVIEREC_DATABASE_URL={masked(r1_url)}"

        # never two writable primaries: the old one is stopped ...
        with pytest.raises(psycopg.OperationalError):
            write_note(c.url)
        # ... and the new one takes writes and has every earlier row
        later = write_note(r1_url)
        with pg(r1_url) as conn:
            stored = {row[0] for row in conn.execute("SELECT body FROM notes")}
            assert conn.execute("SHOW synchronous_standby_names").fetchone() == ("",)
        assert set(bodies) | {later} <= stored

        topology = load_topology(c.settings)
        assert topology.primary().name == "r1"
        assert topology.get("main").role is Role.FORMER_PRIMARY
        after = run_cli(c, "status")
        assert "former-primary" in after.stdout
        assert "MOVIEREC_DATABASE_URL is not the primary" in after.stderr

        # restarting the old primary by hand brings it up read-only, not as a second primary
        old = start_server(c.settings, "main")
        with (
            pg(server_url(c.settings, old, hide_password=False)) as conn,
            pytest.raises(ReadOnlySqlTransaction),
        ):
            conn.execute("INSERT INTO notes (body) VALUES ('split brain')")
        assert status_of(c.settings, "main").state is ServerState.READ_ONLY


def test_promote_makes_the_other_standbys_follow_the_new_primary():
    with new_cluster() as c:
        for name in ("r1", "r2", "r3"):
            create_replica(c.settings, name)
        before = write_note(c.url)
        r3 = stop_server(c.settings, "r3")  # down: it cannot follow, and is left as it was
        promoted = run_cli(c, "promote", "r1", "--yes")
        assert promoted.exit_code == 0, promoted.output
        assert "r2 follows r1 now." in promoted.stderr
        assert "r3 still follows main" in promoted.stderr

        r1_url, r2_url = (replica_url(c.settings, n) for n in ("r1", "r2"))
        later = write_note(r1_url)  # on the new timeline
        assert eventually(lambda: has_note(r2_url, later), timeout=5.0)
        assert has_note(r2_url, before)
        topology = load_topology(c.settings)
        assert (topology.get("r2").upstream, topology.get("r2").slot) == ("r1", "replica_r2")
        assert topology.get("r3").upstream == "main" == r3.upstream
        assert status_of(c.settings, "r2").state is ServerState.STREAMING
        with pg(r1_url) as conn:
            slots = conn.execute("SELECT slot_name, active FROM pg_replication_slots").fetchall()
        assert slots == [("replica_r2", True)]  # none kept for r3, which would hold WAL


def test_promote_refuses_what_is_not_a_local_standby(cluster):
    with pytest.raises(BadInput, match="only a local standby"):
        promote(cluster.settings, "main")
    with pytest.raises(NotFound):
        promote(cluster.settings, "nope")
    # a standby that is down: nothing is fenced, the primary keeps running
    topology = load_topology(cluster.settings)
    ghost = Server("ghost", Role.STANDBY, "127.0.0.1", free_port(), cluster.root / "none")
    save_topology(cluster.settings, topology.with_server(ghost))
    try:
        with pytest.raises(DatabaseUnavailable, match="standby ghost"):
            promote(cluster.settings, "ghost")
        assert status_of(cluster.settings, "main").state is ServerState.UP
    finally:
        save_topology(cluster.settings, topology)


def test_promote_refuses_when_the_primary_cannot_be_fenced(cluster, monkeypatch):
    settings = cluster.settings
    topology = load_topology(settings)

    def stuck(self):
        raise OpsCommandFailed("pg_ctl exited with 1: server does not shut down")

    with monkeypatch.context() as patch:
        patch.setattr(LocalPostgres, "stop", stuck)
        with pytest.raises(PromotionRefused, match="cannot stop the primary main"):
            promote(settings, "r1")
    # a primary movierec does not run, still answering: it cannot be fenced from here
    remote = dataclasses.replace(topology.primary(), state_dir=None)
    save_topology(settings, topology.with_server(remote))
    try:
        refused = run_cli(cluster, "promote", "r1", "--yes")
        assert refused.exit_code == 1
        assert "still answers and movierec does not run it" in refused.stderr
    finally:
        save_topology(settings, topology)
    # nothing changed: one writable primary, r1 still streaming from it
    assert [(s.name, s.state) for s in replication_status(settings)] == [
        ("main", ServerState.UP),
        ("r1", ServerState.STREAMING),
    ]
