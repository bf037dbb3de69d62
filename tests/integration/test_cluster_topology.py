"""The local cluster with the whole database topology on 127.0.0.1: the main group under
Patroni (a primary and a streaming replica, etcd, the database switch), two shard servers
holding partitions p2 and p3 of ratings, searches and preferences, a second tablespace
holding ratings_p0, and a pgBackRest repository with one stanza per group or server.

``movierec cluster up`` builds it all on a small generated catalogue; the shards hold rows (read
on the shards themselves), ``movierec db status`` shows the replica and where each partition
lives, ``movierec backup create`` backs up every stanza and ``movierec cluster down`` leaves no
process behind.
"""

from __future__ import annotations

import re
import time

import psycopg
import pytest
from psycopg import sql
from support.cluster import cluster_home, free_spec
from typer.testing import CliRunner

from movierec import cluster
from movierec.cli import main
from movierec.cluster.members import group_members
from movierec.cluster.spec import port_free
from movierec.config import load_settings
from movierec.db import LocalPostgres
from movierec.db.backup import backup_config, list_backups, local_servers
from movierec.db.engines import libpq_conninfo
from movierec.db.partitions import Placement, list_partitions
from movierec.db.roles import WEB_ROLE
from movierec.db.topology import Role, Server, Topology, load_topology, save_topology
from movierec.director.haproxy import process_alive
from movierec.errors import BadInput


def test_topology_full_fills_in_what_is_not_given(tmp_path):
    assert cluster.with_topology({}) == {}
    full = cluster.with_topology({"topology": "full", "replicas": 0})
    assert full == {"replicas": 0, "shards": 2, "tablespace": True, "backup": True}
    spec = cluster.ClusterSpec.on_port(9000, **full)
    assert (spec.replicas, spec.shards, spec.tablespace, spec.backup) == (0, 2, True, True)
    with pytest.raises(BadInput, match="topology"):
        cluster.with_topology({"topology": "huge"})
    with pytest.raises(BadInput, match="shards must be"):
        cluster.ClusterSpec.on_port(9000, shards=4)
    toml = tmp_path / "cluster.toml"
    toml.write_text('[cluster]\ntopology = "full"\nbackup = false\n')
    options = cluster.with_topology(cluster.read_cluster_toml(toml))
    assert options["shards"] == 2 and options["backup"] is False

    # Shards recorded in servers.json survive the replica commands' rewrites, and each one
    # is a backup stanza of its own.
    settings = load_settings(
        environ={},
        toml_path=None,
        overrides={"state_dir": tmp_path, "database_url": "postgresql://u@127.0.0.1:5999/x"},
    )
    shard = Server("shard1", Role.SHARD, "127.0.0.1", 6001, tmp_path / "shard-1")
    save_topology(settings, load_topology(settings).with_shard(shard))
    standby = Server("r1", Role.STANDBY, "127.0.0.1", 6002, tmp_path / "r1", "r1", "main")
    save_topology(settings, load_topology(settings).with_server(standby).without("nope"))
    topology = load_topology(settings)
    assert isinstance(topology, Topology) and [s.name for s in topology.servers] == ["main", "r1"]
    assert topology.shards == (shard,)
    assert [b.name for b in local_servers(settings)] == ["primary", "shard1"]


@pytest.fixture
def home():
    with cluster_home("movierec-topology-") as home:
        yield home


@pytest.mark.integration
def test_full_topology_shards_backs_up_and_stops_everything(home):
    started, state_dir = time.monotonic(), home.state_dir
    base = free_spec(web=1, ai=1, director=False).web_ports[0] - 1
    up = home.cli(
        "cluster", "up", "--web", "1", "--ai", "1", "--no-director", "--port", str(base),
        "--replicas", "1", "--shards", "2", "--tablespace", "--backup",
        "--movies", "150", "--users", "120", "--ratings", "4000",
    )  # fmt: skip
    assert up.returncode == 0, up.stdout + up.stderr
    record = cluster.load_record(state_dir)
    roles = {m.name: m.role for m in record.members}
    assert roles == {
        "etcd": "etcd",
        "main-pg1": "patroni",
        "dbswitch": "dbswitch",
        "main-pg2": "patroni",
        "shard1": "shard",
        "shard2": "shard",
        "web-1": "web",
        "ai-1": "ai",
        "redis": "redis",
    }

    # Rows of ratings live on both shards: read them there, not through the primary.
    primary = LocalPostgres(state_dir / "postgres")
    url = primary.url_file.read_text().strip()  # what `cluster up` leaves for admin commands
    # The group archives from its creation: its stanza must exist before the data step, or
    # every archive attempt of the load fails and its WAL piles up in pg_wal.
    with psycopg.connect(libpq_conninfo(url, "test"), autocommit=True) as conn:
        archiver = conn.execute(
            "SELECT failed_count, last_failed_wal, archived_count FROM pg_stat_archiver"
        ).fetchone()
    assert archiver[0] == 0 and archiver[2] > 0, archiver
    assert primary.passwords.path.stat().st_mode & 0o077 == 0
    settings = load_settings(
        environ={}, toml_path=None, overrides={"state_dir": state_dir, "database_url": url}
    )
    placed = {p.name: p for p in list_partitions(settings)}
    shards = {s.name: s for s in load_topology(settings).shards}
    assert set(shards) == {"shard1", "shard2"}
    for table in ("ratings", "searches", "preferences"):
        for remainder, shard in ((2, "shard1"), (3, "shard2")):
            part = placed[f"{table}_p{remainder}"]
            assert (part.placement, part.where) == (Placement.SERVER, shard), part
    assert (placed["ratings_p0"].placement, placed["ratings_p0"].where) == (
        Placement.TABLESPACE,
        "disk2",
    )
    for remainder, name in ((2, "shard1"), (3, "shard2")):
        remote_table = placed[f"ratings_p{remainder}"].remote_table
        assert remote_table
        shard = LocalPostgres(shards[name].state_dir, port=shards[name].live_port())
        with shard.connect("movierec") as conn:
            table = sql.Identifier(*remote_table.split("."))
            rows = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()[0]
            failed = conn.execute("SELECT failed_count FROM pg_stat_archiver").fetchone()[0]
        assert rows > 100, (name, remote_table, rows)
        assert failed == 0, (name, failed)

    # The site's role reaches the shards through the primary (a USER MAPPING FOR PUBLIC).
    site_url = primary.as_role(url, WEB_ROLE)
    with psycopg.connect(libpq_conninfo(site_url, "test"), autocommit=True) as conn:
        on_shards = conn.execute(
            "SELECT count(*) FROM ratings WHERE tableoid::regclass::text IN "
            "('ratings_p2', 'ratings_p3')"
        ).fetchone()[0]
        user, movie = conn.execute(
            "SELECT user_id, max(movie_id) FROM ratings WHERE tableoid = 'ratings_p3'::regclass "
            "GROUP BY user_id LIMIT 1"
        ).fetchone()
        changed = conn.execute(
            "UPDATE ratings SET rating = 0.5 WHERE user_id = %s AND movie_id = %s", (user, movie)
        ).rowcount
    assert on_shards > 200 and changed == 1

    # Every database server of the cluster asks for a password (none trusts loopback).
    for member in record.members:
        if member.role in ("patroni", "shard"):
            with pytest.raises(psycopg.OperationalError, match="password"):
                psycopg.connect(
                    host="127.0.0.1", port=member.port, user="postgres", dbname="postgres",
                    passfile="/nonexistent", connect_timeout=5,
                )  # fmt: skip

    status = home.cli("cluster", "status")
    assert status.returncode == 0, status.stderr
    for name in ("main-pg1", "main-pg2", "shard1", "shard2", "web-1", "ai-1"):
        assert re.search(rf"{name}\s.*ok", status.stdout), status.stdout
    assert re.search(r"shard1\s+│?\s*shard", status.stdout), status.stdout

    runner = CliRunner()
    env = {"MOVIEREC_STATE_DIR": str(state_dir), "MOVIEREC_DATABASE_URL": url, "COLUMNS": "200"}
    shown = runner.invoke(main.app, ["db", "status"], env=env)
    assert shown.exit_code == 0, shown.output
    assert re.search(r"pg2\s.*standby\s.*streaming", shown.output), shown.output
    assert re.search(r"ratings_p2\s.*shard1", shown.output), shown.output
    assert re.search(r"ratings_p3\s.*shard2", shown.output), shown.output
    assert re.search(r"ratings_p0\s.*disk2", shown.output), shown.output

    backed_up = runner.invoke(main.app, ["backup", "create", "--type", "full"], env=env)
    assert backed_up.exit_code == 0, backed_up.output
    backups = list_backups(backup_config(settings))
    assert {b.stanza for b in backups if b.type == "full"} == {"primary", "shard1", "shard2"}

    down = home.cli("cluster", "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert not (state_dir / "cluster.json").exists()
    for member in record.members:
        if member.role in ("web", "ai"):
            assert group_members(member.pid) == [], member
        else:
            assert not process_alive(member.pid), member
    for name in ("postgres/pg1", "postgres/pg2", "shard-1", "shard-2"):
        assert not (state_dir / name / "pgdata" / "postmaster.pid").exists(), name
    for port in (base + 1, base + 101):
        assert port_free(port), port
    assert time.monotonic() - started < 150
