"""Backups and point-in-time restore with a real pgBackRest against real PostgreSQL servers.

One server (with its WAL archive and a first full backup) is shared by the module; tests
that restore it in place leave it promoted and running, which the next test builds on.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from movierec.cli.main import app
from movierec.config import load_settings
from movierec.db import LocalPostgres
from movierec.db import backup as lib
from movierec.db.pgbackrest import BackupConfig, BackupServer, archive_command, render_config
from movierec.db.restore import parse_time, plan_restore, run_restore
from movierec.db.roles import masked
from movierec.errors import BadInput, ConfigError

pytestmark = pytest.mark.skipif(
    not Path("/usr/bin/pgbackrest").exists(), reason="pgbackrest is not installed"
)
runner = CliRunner()


def _temp_root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="movierec-backup-"))
    os.chmod(root, 0o755)  # the postgres OS user must enter it when we are root
    return root


def _sql(server: LocalPostgres, query: str, params: tuple = (), dbname: str = "movierec"):
    with server.connect(dbname) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else None


def _ids(server: LocalPostgres) -> set[int]:
    return {row[0] for row in _sql(server, "SELECT id FROM ratings_like")}


def _insert(server: LocalPostgres, first: int, last: int) -> None:
    _sql(
        server,
        "INSERT INTO ratings_like (id, rating) SELECT i, (i %% 10 + 1) / 2.0 "
        "FROM generate_series(%s::int, %s::int) AS i",
        (first, last),
    )


def _server_now(server: LocalPostgres) -> datetime:
    return _sql(server, "SELECT now()")[0][0]


def _wait_past(server: LocalPostgres, moment: datetime) -> None:
    while _server_now(server) <= moment:
        time.sleep(0.05)


def _cli(env: dict[str, str], *args: str, input: str | None = None):
    return runner.invoke(app, ["backup", *args], env=env, input=input)


@pytest.fixture(scope="module")
def live():
    """A state dir holding a LocalPostgres at state/postgres with 100 rows, backups set up
    through the CLI and one full backup taken through the CLI."""
    root = _temp_root()
    state = root / "state"
    server = LocalPostgres(state / "postgres")
    try:
        server.start()
        url = server.create_database("movierec")
        _sql(server, "CREATE TABLE ratings_like (id int PRIMARY KEY, rating numeric(2, 1))")
        _insert(server, 1, 100)
        env = {"MOVIEREC_DATABASE_URL": url, "MOVIEREC_STATE_DIR": str(state)}
        setup = _cli(env, "setup")
        assert setup.exit_code == 0, setup.output
        created = _cli(env, "create", "--type", "full")
        assert created.exit_code == 0, created.output
        settings = load_settings(environ=env, toml_path=None)
        yield {
            "root": root,
            "env": env,
            "server": server,
            "config": lib.backup_config(settings),
            "servers": lib.local_servers(settings),
            "create_output": created.output,
        }
    finally:
        for copy in root.glob("copy*/*"):
            LocalPostgres(copy).stop()
        LocalPostgres(state / "postgres").stop()
        shutil.rmtree(root, ignore_errors=True)


# --- unit: no servers ------------------------------------------------------------------------


def test_parse_time_accepts_iso_with_and_without_offset_and_refuses_the_rest():
    assert parse_time("2024-06-01 12:00:00.25+02:00") == datetime(
        2024, 6, 1, 10, 0, 0, 250000, tzinfo=UTC
    )
    assert parse_time("2024-06-01T10:00:00Z") == datetime(2024, 6, 1, 10, tzinfo=UTC)
    naive = parse_time("2024-06-01 12:00:00")
    assert naive == datetime(2024, 6, 1, 12).astimezone().astimezone(UTC)
    with pytest.raises(BadInput, match="not an ISO 8601"):
        parse_time("yesterday at noon")
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    with pytest.raises(BadInput, match="in the future"):
        parse_time(future)


def test_config_renders_one_stanza_per_server_and_refuses_bad_values(tmp_path):
    servers = []
    for name, port in (("primary", 5501), ("shard-1", 5502)):
        server = LocalPostgres(tmp_path / name)
        server.state_dir.mkdir()
        server.info_file.write_text(f'{{"port": {port}, "socket_dir": "/tmp/sock-{name}"}}')
        servers.append(BackupServer(name, server))
    config = BackupConfig(base_dir=tmp_path / "pgbackrest", retention_full=3)
    text = render_config(config, servers)
    assert "repo1-retention-full=3" in text
    assert f"repo1-path={(tmp_path / 'pgbackrest' / 'repo').resolve()}" in text
    assert "[shard-1]\npg1-path=" in text and "pg1-port=5502" in text
    assert "pg1-socket-path=/tmp/sock-primary" in text
    with pytest.raises(ConfigError, match="unique"):
        render_config(config, [servers[0], servers[0]])
    bad = BackupConfig(base_dir=tmp_path / "evil\n[global]")
    with pytest.raises(ConfigError, match="line break"):
        render_config(bad, servers)
    quoted = archive_command(BackupConfig(base_dir=Path("/a b")), "primary")
    assert "--config='/a b/pgbackrest.conf'" in quoted and quoted.endswith("archive-push %p")


# --- integration: real PostgreSQL + pgBackRest -----------------------------------------------


def test_setup_turns_on_archiving_into_our_repository(live):
    server = live["server"]
    assert _sql(server, "SHOW archive_mode", dbname="postgres") == [("on",)]
    command = _sql(server, "SHOW archive_command", dbname="postgres")[0][0]
    assert str(live["config"].conf_file) in command and "--stanza=primary" in command
    conf = live["config"].conf_file.read_text()
    assert f"pg1-socket-path={server.socket_dir()}" in conf
    archived = _sql(server, "SELECT archived_count FROM pg_stat_archiver", dbname="postgres")
    assert archived[0][0] > 0


def test_list_shows_the_full_backup_and_its_restore_point(live):
    backups = lib.list_backups(live["config"])
    assert [b.type for b in backups][:1] == ["full"]
    first = backups[0]
    assert first.stanza == "primary" and first.restore_point
    assert first.wal_start and first.size > 0
    assert first.label in live["create_output"]
    shown = _cli(live["env"], "list")
    assert shown.exit_code == 0, shown.output
    assert first.label in shown.output and "full" in shown.output
    assert first.restore_point in shown.output


def test_bad_restore_times_are_refused_and_change_nothing(live):
    server = live["server"]
    ids, port = _ids(server), server.port
    before_first = _cli(live["env"], "restore", "--time", "2000-01-01 00:00:00+00", "--yes")
    assert before_first.exit_code == 1
    assert "before the first backup" in before_first.output
    assert len(before_first.output.strip().splitlines()) == 1
    garbage = _cli(live["env"], "restore", "--time", "last tuesday", "--yes")
    assert garbage.exit_code == 1 and "not an ISO 8601" in garbage.output
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    late = _cli(live["env"], "restore", "--time", future, "--yes")
    assert late.exit_code == 1 and "in the future" in late.output
    assert server.is_running() and server.port == port and _ids(server) == ids


def test_restore_without_yes_asks_and_a_wrong_answer_changes_nothing(live):
    ids = _ids(live["server"])
    now = _server_now(live["server"]).isoformat()
    refused = _cli(live["env"], "restore", "--time", now, input="no\n")
    assert refused.exit_code == 1 and "restore cancelled" in refused.output
    assert live["server"].is_running() and _ids(live["server"]) == ids


def test_point_in_time_restore_undoes_a_mass_delete(live):
    server = live["server"]
    last_stop = max(b.stop for b in lib.list_backups(live["config"]))
    _wait_past(server, last_stop + timedelta(seconds=1.1))
    top = max(_ids(server))
    _insert(server, top + 1, top + 500)  # written after the backup, before the target
    target = _server_now(server)
    _wait_past(server, target)
    _insert(server, top + 501, top + 600)  # written after the target: must not come back
    _sql(server, "DELETE FROM ratings_like")  # the accident
    assert _ids(server) == set()

    restored = _cli(live["env"], "restore", "--time", target.isoformat(), "--yes")
    assert restored.exit_code == 0, restored.output
    ids = _ids(server)
    assert ids == set(range(1, top + 501))
    assert _sql(server, "SELECT pg_is_in_recovery()")[0][0] is False
    _insert(server, top + 501, top + 501)  # promoted: it takes writes again


def test_side_by_side_restore_of_a_backup_leaves_the_live_server_alone(live):
    server = live["server"]
    first = lib.list_backups(live["config"])[0]
    _insert(server, 100_000, 100_009)
    live_ids, port = _ids(server), server.port
    target = live["root"] / "copy-backup"
    out = _cli(live["env"], "restore", "--backup", first.label, "--target-dir", str(target))
    assert out.exit_code == 0, out.output
    copy = LocalPostgres(target / "primary").start()  # already running: reads its port
    printed = out.output.replace("\n", "")
    assert copy.port != port and masked(copy.url()) in printed
    assert copy.passwords.get("postgres") not in printed  # never printed
    assert _ids(copy) == set(range(1, 101))  # the rows at the end of the first backup
    assert _sql(copy, "SHOW archive_mode", dbname="postgres") == [("off",)]
    assert server.is_running() and server.port == port and _ids(server) == live_ids
    copy.stop()


def test_restore_to_a_named_point_on_demand(live):
    server = live["server"]
    _insert(server, 200_000, 200_004)
    point = _cli(live["env"], "restore-point", "before-cleanup")
    assert point.exit_code == 0, point.output
    _sql(server, "DELETE FROM ratings_like WHERE id >= 200000")
    expected = _ids(server) | set(range(200_000, 200_005))
    plan = plan_restore(live["config"], live["servers"], point="before-cleanup")
    assert plan.kind == "name"
    run_restore(live["config"], plan)
    assert _ids(server) == expected
    again = _cli(live["env"], "restore-point", "before-cleanup")
    assert again.exit_code == 1 and "exists already" in again.output


def test_verify_passes_then_reports_a_damaged_backup(live):
    ok = _cli(live["env"], "verify")
    assert ok.exit_code == 0, ok.output
    assert lib.last_verify(live["config"]).ok  # what the dashboard shows beside the backups
    repo = live["config"].repo / "backup" / "primary"
    victim = next(repo.glob("*/pg_data/base/1/*.zst"))
    saved = victim.read_bytes()
    try:
        victim.write_bytes(b"not zstd")
        bad = _cli(live["env"], "verify")
        assert bad.exit_code == 1
        assert "damage" in bad.output and "invalid" in bad.output
        failed = lib.last_verify(live["config"])
        assert not failed.ok and "damage" in failed.detail
    finally:
        victim.write_bytes(saved)


def test_expire_keeps_only_the_retained_full_backups(live):
    assert _cli(live["env"], "create", "--type", "full").exit_code == 0
    fulls = [b.label for b in lib.list_backups(live["config"]) if b.type == "full"]
    assert len(fulls) == 2  # the retention of 2 kept both
    out = _cli(live["env"], "expire", "--retention-full", "1")
    assert out.exit_code == 0, out.output
    assert [b.label for b in lib.list_backups(live["config"])] == [fulls[-1]]
    assert fulls[0] in out.output


def test_two_servers_restore_to_the_same_moment():
    """A primary and a shard: a restore point puts both back to the same instant."""
    root = _temp_root()
    servers = [
        BackupServer(name, LocalPostgres(root / name).start()) for name in ("primary", "shard-1")
    ]
    try:
        for item in servers:
            item.server.create_database("movierec")
            _sql(item.server, "CREATE TABLE ratings_like (id int PRIMARY KEY, rating numeric)")
        config = BackupConfig(base_dir=root / "pgbackrest")
        lib.setup(config, servers, durable=False)
        progress = []
        result = lib.create_backup(config, servers, "full", lambda d, t: progress.append((d, t)))
        assert set(result.labels) == {"primary", "shard-1"} and progress[-1] == (2, 2)
        for item in servers:
            _insert(item.server, 1, 50)
        lib.create_restore_point(config, servers, "both-50")
        for item in servers:
            _insert(item.server, 51, 60)
            _sql(item.server, "DELETE FROM ratings_like WHERE id <= 25")
        run_restore(config, plan_restore(config, servers, point="both-50"))
        for item in servers:
            assert _ids(item.server) == set(range(1, 51)), item.name
    finally:
        for item in servers:
            item.server.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_a_backup_drill_under_writes_restores_exactly_the_paused_moment(live):
    """`backup drill`: latest backup + archived WAL, restored side by side up to a restore
    point written at a paused moment, matches the live rows read in that moment, while a
    writer keeps inserting; the copies are gone afterwards."""
    server = live["server"]
    stop, written = threading.Event(), []

    def writer() -> None:
        with server.connect("movierec") as conn:
            next_id = 500_000
            while not stop.is_set():
                conn.execute("INSERT INTO ratings_like (id, rating) VALUES (%s, 3.0)", (next_id,))
                written.append(next_id)
                next_id += 1

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        done = _cli(live["env"], "drill")
    finally:
        stop.set()
        thread.join(10)
    assert done.exit_code == 0, done.output
    assert "primary/movierec: 1 table match PASS" in done.output
    assert "FAIL" not in done.output
    assert len(written) > 10  # it drilled under writes
    drills = live["root"] / "state" / "drills"
    assert not drills.exists() or not any(drills.iterdir())  # the copies are gone


def test_a_backup_drill_finds_rows_a_restore_would_not_bring_back(live):
    """An UNLOGGED table writes no WAL: a restore brings it back empty. The drill says so."""
    server = live["server"]
    _sql(server, "CREATE UNLOGGED TABLE scratch_notes (id int PRIMARY KEY)")
    try:
        _sql(server, "INSERT INTO scratch_notes SELECT generate_series(1, 5)")
        done = _cli(live["env"], "drill")
    finally:
        _sql(server, "DROP TABLE scratch_notes")
    assert done.exit_code == 1
    assert "primary/movierec: 2 tables differ (scratch_notes) FAIL" in done.output


def test_a_backup_drill_with_the_wal_archive_gone_fails_in_one_line(live):
    archive = live["config"].repo / "archive"
    aside = archive.with_name("archive-aside")
    archive.rename(aside)
    try:
        done = _cli(live["env"], "drill")
    finally:
        shutil.rmtree(archive, ignore_errors=True)
        aside.rename(archive)
    assert done.exit_code == 1
    lines = done.output.strip().splitlines()
    assert lines[-1].startswith("error: ") and "Traceback" not in done.output
