"""With ``--shard-replicas 1`` each shard is a Patroni group of its own (its own scope in the
cluster's etcd) behind the database switch, and the primary's postgres_fdw server points at
the shard's switch frontend: a shard's failover is followed by the main database's reads and
writes of the shard's partitions, with no change to the foreign server. A slow drill (a
cluster of three groups): runs with MOVIEREC_DRILLS=1.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import numpy as np
import psycopg
import pytest
from support.commands import movierec

from movierec import cluster
from movierec.cluster import ha
from movierec.db.engines import libpq_conninfo
from movierec.db.patroni import cluster_view, leader, load_group
from movierec.director.haproxy import process_alive
from movierec.ports import port_free

pytestmark = [pytest.mark.integration, pytest.mark.drill_slow]


def test_each_shard_is_a_patroni_group_and_its_failover_is_followed(tmp_path):
    root = Path(tempfile.mkdtemp(prefix="movierec-shards-"))
    os.chmod(root, 0o755)  # the postgres OS user must enter it when we are root
    state = root / "state"
    base = next(
        b for b in range(int(np.random.default_rng().integers(200, 260)) * 100, 32_000, 300)
        if all(port_free(p) for p in (b, b + 1, b + 101, *ha.ports(b, 2)))
    )  # fmt: skip
    try:
        up = movierec(
            state, "cluster", "up", "--web", "1", "--ai", "1", "--no-director",
            "--port", str(base), "--replicas", "1", "--shards", "1", "--shard-replicas", "1",
            "--movies", "150", "--users", "100", "--ratings", "3000",
        )  # fmt: skip
        assert up.returncode == 0, up.stdout + up.stderr
        shard = load_group(state / "shard-1")
        assert shard.scope == "shard1" and [m.name for m in shard.members] == ["pg1", "pg2"]
        roles = {m.name: m.role for m in cluster.load_record(state).members}
        assert roles["shard1-pg1"] == roles["shard1-pg2"] == "patroni"
        url = (state / "postgres" / "database_url").read_text().strip()
        with psycopg.connect(libpq_conninfo(url, "test"), autocommit=True) as conn:
            options = conn.execute(
                "SELECT srvoptions FROM pg_foreign_server WHERE srvname = 'shard1'"
            ).fetchone()[0]
            assert f"port={shard.primary_port}" in options  # the switch, not a member
            rows = conn.execute("SELECT count(*) FROM ratings_p3").fetchone()[0]
        assert rows > 100

        # `up` returns with the group protected: a primary killed while its replica streams
        # but is not yet the synchronous standby has no one to fail over to, and Patroni
        # restarts it in place (the drill once saw pg1 still leader after the kill).
        views = cluster_view(shard)
        assert [v.name for v in views if v.role == "sync_standby"] == ["pg2"], views
        old = shard.member(leader(shard))
        postmaster = int((old.local.data_dir / "postmaster.pid").read_text().split()[0])
        os.kill(postmaster, signal.SIGKILL)
        killed, back = time.monotonic(), None
        while time.monotonic() - killed < 40 and back is None:
            try:
                with psycopg.connect(libpq_conninfo(url, "test"), autocommit=True) as conn:
                    conn.execute(
                        "UPDATE ratings SET rating = rating WHERE tableoid = "
                        "'ratings_p3'::regclass AND user_id = (SELECT min(user_id) FROM ratings_p3)"
                    )
                    back = time.monotonic() - killed
            except psycopg.Error:
                time.sleep(0.3)
        print(f"shard failover: writes to its partition through the primary OK after {back} s")
        assert back is not None and back <= 15
        views = cluster_view(shard)
        assert next(v for v in views if v.is_leader).name != old.name

        shown = movierec(state, "db", "replica", "status", "--group", "shard1")
        assert shown.returncode == 0, shown.stderr
        assert "leader" in shown.stdout
    finally:
        record = cluster.load_record(state) if (state / "cluster.json").exists() else None
        if record is not None:
            down = movierec(state, "cluster", "down")
            assert down.returncode == 0, down.stdout + down.stderr
            for member in record.members:
                if member.role in ("patroni", "etcd", "dbswitch") and member.pid:
                    assert not process_alive(member.pid), member
        shutil.rmtree(root, ignore_errors=True)
