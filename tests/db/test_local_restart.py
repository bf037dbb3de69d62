"""A local server that stopped (or crashed) comes back on the port it had: standbys, the
primary's postgres_fdw servers and the cluster's web instances reach it by that port.

``movierec db start-local`` again, and ``movierec db replica start`` for any server of the
topology, shards included.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from movierec.cli.main import app
from movierec.config import load_settings
from movierec.db import LocalPostgres
from movierec.db.topology import Role, Server, load_topology, save_topology
from movierec.errors import OpsCommandFailed

pytestmark = pytest.mark.integration


@pytest.fixture
def root() -> Iterator[Path]:
    """A directory the postgres OS user can enter (when we are root); servers under it stop."""
    path = Path(tempfile.mkdtemp(prefix="movierec-restart-"))
    os.chmod(path, 0o755)
    yield path
    for pgdata in path.rglob("pgdata"):
        LocalPostgres(pgdata.parent).stop()
    shutil.rmtree(path, ignore_errors=True)


def cli(state: Path, *args: str):
    env = {"MOVIEREC_STATE_DIR": str(state), "COLUMNS": "200"}
    env["MOVIEREC_DATABASE_URL"] = "postgresql://postgres@127.0.0.1:1/movierec"
    return CliRunner().invoke(app, list(args), env=env)


def test_start_local_again_comes_back_on_the_same_port(root):
    state = root / "state"
    first = cli(state, "db", "start-local")
    assert first.exit_code == 0, first.output
    assert cli(state, "db", "stop-local").exit_code == 0
    again = cli(state, "db", "start-local")
    assert again.exit_code == 0, again.output
    assert again.stdout.strip() == first.stdout.strip()  # the same URL, port included


def test_a_recorded_port_taken_by_another_program_is_a_clear_error(root):
    server = LocalPostgres(root / "pg").start()
    port = server.port
    server.stop()
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with pytest.raises(OpsCommandFailed, match=f"port {port} .* in use"):
            LocalPostgres(root / "pg").start()
    assert not LocalPostgres(root / "pg").is_running()


def test_replica_start_restarts_a_shard_on_its_port(root):
    state = root / "state"
    settings = load_settings(
        environ={},
        toml_path=None,
        overrides={"state_dir": state, "database_url": "postgresql://postgres@127.0.0.1:1/x"},
    )
    shard = LocalPostgres(state / "shard-2").start()
    entry = Server("shard2", Role.SHARD, "127.0.0.1", shard.port, shard.state_dir)
    save_topology(settings, load_topology(settings).with_shard(entry))
    shard.stop()

    started = cli(state, "db", "replica", "start", "shard2")
    assert started.exit_code == 0, started.output
    assert f"shard2 runs on 127.0.0.1:{shard.port}" in started.stdout
    assert LocalPostgres(state / "shard-2").is_running()
    stopped = cli(state, "db", "replica", "stop", "shard2", "--yes")
    assert stopped.exit_code == 0, stopped.output
    assert not LocalPostgres(state / "shard-2").is_running()
    assert [s.name for s in load_topology(settings).shards] == ["shard2"]
