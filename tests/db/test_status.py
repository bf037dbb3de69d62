"""``movierec db status``: servers, partitions, last backup, history size on one screen."""

from __future__ import annotations

from sqlalchemy import text
from typer.testing import CliRunner

from movierec.cli import main
from movierec.db.local_server import free_port
from movierec.db.partitions import Placement
from movierec.db.replicas import ServerState
from movierec.db.status import NO_BACKUPS, database_status


def seed(database) -> None:
    with database.session() as s:
        s.execute(text("INSERT INTO users (id, username) VALUES (1, 'ann'), (2, 'bob')"))
        s.execute(text("INSERT INTO movies (id, title) VALUES (1, 'Heat'), (2, 'Alien')"))
        s.execute(
            text("INSERT INTO ratings (user_id, movie_id, rating) VALUES (1, 1, 4), (2, 2, 3)")
        )


def status_cli(db_url, state_dir):
    return CliRunner().invoke(
        main.app,
        ["db", "status"],
        env={
            "MOVIEREC_DATABASE_URL": db_url,
            "MOVIEREC_STATE_DIR": str(state_dir),
            "COLUMNS": "200",
        },
    )


def test_status_gathers_every_part(settings, database):
    seed(database)
    status = database_status(settings)
    assert [(s.role, s.state) for s in status.servers] == [("primary", ServerState.UP)]
    assert len(status.partitions) == 16 and status.partitions_error is None
    assert {p.placement for p in status.partitions} == {Placement.LOCAL}
    assert (status.last_backup, status.backups_error) == (None, NO_BACKUPS)
    with database.session() as s:
        rows = s.execute(text("SELECT count(*) FROM change_history")).scalar()
    assert rows == 6 and status.history.rows == rows and status.history.bytes > 0


def test_status_screen_shows_each_part(db_url, database, tmp_path):
    seed(database)
    result = status_cli(db_url, tmp_path / "state")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "servers" in out and "main" in out and "primary" in out and " up " in out
    assert "partitions" in out and "ratings_p3" in out and "movies_p0" in out
    assert "last backup: no backups configured" in out
    assert "change history: 6 rows, 0 change sets" in out


def test_an_unreachable_shard_is_reported_and_the_rest_still_shown(db_url, database, tmp_path):
    seed(database)
    port = free_port()
    with database.session() as s:
        for statement in (
            "CREATE SERVER gone FOREIGN DATA WRAPPER postgres_fdw "
            f"OPTIONS (host '127.0.0.1', port '{port}', dbname 'nowhere')",
            "CREATE USER MAPPING FOR PUBLIC SERVER gone OPTIONS (user 'postgres')",
            "ALTER TABLE searches DETACH PARTITION searches_p3",
            "DROP TABLE searches_p3",
            "CREATE FOREIGN TABLE searches_p3 PARTITION OF searches "
            "FOR VALUES WITH (MODULUS 4, REMAINDER 3) SERVER gone",
        ):
            s.execute(text(statement))
    result = status_cli(db_url, tmp_path / "state")
    assert result.exit_code == 0, result.output
    assert "server gone" in result.output
    assert f"note: shard server gone (127.0.0.1:{port}/nowhere) is unreachable" in result.output
    assert "change history: 6 rows" in result.output and "ratings_p0" in result.output
