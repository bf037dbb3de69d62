"""Change history and rollback (migration 0002, movierec.db.history, `movierec db history`)."""

from __future__ import annotations

import getpass
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from movierec.cli import main
from movierec.cli.db_history import parse_time
from movierec.db.history import (
    RollbackConflict,
    bulk_change_set,
    ensure_partitions,
    list_changes,
    prune,
    rollback,
    set_actor,
    show_change,
)
from movierec.db.migrate import alembic_config, current_tables, upgrade
from movierec.errors import BadInput, NotFound

# A rollback never restores credentials (password_hash, session_generation): not compared.
SNAPSHOTS = {
    "users": "SELECT id, username, display_name, email, is_admin, source, source_id, created_at "
    "FROM users ORDER BY id",
    "movies": "SELECT * FROM movies ORDER BY id",
    "ratings": "SELECT * FROM ratings ORDER BY user_id, movie_id",
    "preferences": "SELECT * FROM preferences ORDER BY user_id",
}


def snapshot(database) -> dict[str, list[tuple]]:
    with database.session() as s:
        return {name: [tuple(r) for r in s.execute(text(q))] for name, q in SNAPSHOTS.items()}


def run(database, *statements: str) -> None:
    """Each statement in its own transaction, as separate requests would."""
    for statement in statements:
        with database.session() as s:
            s.execute(text(statement))


def scalar(database, statement: str, **params):
    with database.session() as s:
        return s.execute(text(statement), params).scalar()


def last_change(database) -> int:
    return scalar(database, "SELECT coalesce(max(id), 0) FROM change_history")


def counts(database) -> tuple[int, int]:
    return (
        scalar(database, "SELECT count(*) FROM change_history"),
        scalar(database, "SELECT count(*) FROM change_sets"),
    )


def seed(database) -> None:
    run(
        database,
        "INSERT INTO users (id, username) VALUES (1, 'ann'), (2, 'bob'), (3, 'cy')",
        "INSERT INTO movies (id, title, year, genres) VALUES (1, 'Heat', 1995, '{Crime}'), "
        "(2, 'Alien', 1979, '{Horror,Sci-Fi}'), (3, 'Up', 2009, '{Animation}')",
        "INSERT INTO ratings (user_id, movie_id, rating) VALUES (1, 1, 4.5), (1, 2, 3), "
        "(2, 1, 5), (2, 3, 2.5), (3, 3, 4)",
        "INSERT INTO preferences (user_id, genres) VALUES (1, '{Crime}'), (2, '{Drama}')",
    )


def batch(database) -> None:
    """Inserts, updates and deletes across every tracked table, in separate transactions."""
    run(
        database,
        "INSERT INTO users (id, username) VALUES (4, 'dee')",
        "INSERT INTO ratings (user_id, movie_id, rating) VALUES (4, 1, 1), (4, 2, 2)",
        "INSERT INTO preferences (user_id, genres) VALUES (4, '{Horror}')",
        "UPDATE movies SET title = 'Heat (1995)', genres = '{Crime,Drama}' WHERE id = 1",
        "UPDATE ratings SET rating = 1.5 WHERE user_id = 1 AND movie_id = 2",
        "DELETE FROM ratings WHERE user_id = 3",
        "DELETE FROM users WHERE id = 2",  # cascades to its ratings and preferences
        "INSERT INTO movies (id, title, year) VALUES (4, 'Brazil', 1985)",
        "INSERT INTO ratings (user_id, movie_id, rating) VALUES (1, 4, 5)",
        "UPDATE preferences SET genres = '{Crime,Thriller}' WHERE user_id = 1",
        "UPDATE users SET email = 'ann@example.org' WHERE id = 1",
    )


def test_migration_downgrades_and_upgrades_again(db_url, database):
    command.downgrade(alembic_config(db_url), "0001")
    assert "change_history" not in current_tables(db_url)
    run(database, "INSERT INTO users (username) VALUES ('ann')")  # no trigger left behind
    upgrade(db_url)
    run(database, "DELETE FROM users")
    assert scalar(database, "SELECT op FROM change_history") == "DELETE"


# -- recording -----------------------------------------------------------------------------


def test_each_operation_is_recorded_with_key_rows_actor_and_txid(database):
    with database.session() as s:
        set_actor(s, "user:7")
        s.execute(text("INSERT INTO users (id, username) VALUES (10, 'eve')"))
        s.execute(text("INSERT INTO movies (id, title) VALUES (10, 'Heat')"))
        s.execute(text("INSERT INTO ratings (user_id, movie_id, rating) VALUES (10, 10, 4)"))
        s.execute(text("UPDATE ratings SET rating = 2 WHERE user_id = 10"))
        s.execute(text("UPDATE ratings SET rating = 2 WHERE user_id = 10"))  # no real change
        s.execute(text("DELETE FROM ratings WHERE user_id = 10"))
        txid = s.execute(text("SELECT txid_current()")).scalar()
    with database.session() as s:
        changes = list(reversed(list_changes(s)))
    assert [(c.table, c.op) for c in changes] == [
        ("users", "INSERT"), ("movies", "INSERT"), ("ratings", "INSERT"),
        ("ratings", "UPDATE"), ("ratings", "DELETE"),
    ]  # fmt: skip
    assert {c.actor for c in changes} == {"user:7"}
    assert {c.txid for c in changes} == {txid}
    assert {c.change_set for c in changes} == {None}
    insert, update, delete = changes[2:]
    assert insert.key == {"user_id": 10, "movie_id": 10}
    assert insert.old_row is None and insert.new_row["rating"] == 4
    assert (update.old_row["rating"], update.new_row["rating"]) == (4, 2)
    assert delete.old_row["rating"] == 2 and delete.new_row is None
    run(database, "UPDATE movies SET year = 1995 WHERE id = 10")
    with database.session() as s:
        latest = list_changes(s, limit=1)[0]
    assert (latest.op, latest.actor) == ("UPDATE", "postgres")  # no actor set: the role


def test_list_filters_and_show(database):
    seed(database)
    with database.session() as s:
        set_actor(s, "admin:ann")
        s.execute(text("UPDATE movies SET year = 1996 WHERE id = 1"))
    with database.session() as s:
        assert {c.table for c in list_changes(s, table="ratings")} == {"ratings"}
        assert [c.op for c in list_changes(s, actor="admin:ann")] == ["UPDATE"]
        assert list_changes(s, since=datetime.now(UTC) + timedelta(hours=1)) == []
        assert len(list_changes(s, limit=3)) == 3
        newest = list_changes(s, limit=1)[0]
        assert show_change(s, newest.id).new_row["year"] == 1996
        with pytest.raises(NotFound):
            show_change(s, 10_000)
        with pytest.raises(BadInput, match="no history is kept for table 'searches'"):
            list_changes(s, table="searches")


# -- rollback ------------------------------------------------------------------------------


def test_rollback_restores_every_table_to_its_snapshot(database):
    seed(database)
    before, point = snapshot(database), last_change(database)
    batch(database)
    assert snapshot(database) != before
    with database.session() as s:
        report = rollback(s, to_id=point)
    assert snapshot(database) == before
    assert report.changes == last_change(database) - point - report.rows - 1  # minus its own
    assert ("ratings", "DELETE", 3) in report.counts  # 1 by hand, 2 by the user's cascade
    with database.session() as s:
        own = list_changes(s, limit=report.rows + 1)
    assert {c.change_set for c in own} == {report.change_set}
    assert own[-1].op == "ROLLBACK" and own[-1].id == report.undo_to
    kind = scalar(database, "SELECT kind FROM change_sets WHERE id = :i", i=report.change_set)
    assert kind == "rollback"


def test_rollback_of_a_rollback_restores_the_later_state(database):
    seed(database)
    point = last_change(database)
    batch(database)
    after = snapshot(database)
    with database.session() as s:
        first = rollback(s, to_id=point)
    assert snapshot(database) != after
    with database.session() as s:
        second = rollback(s, to_id=first.undo_to)
    assert snapshot(database) == after
    assert second.rows == first.rows


def test_rollback_to_a_time(database):
    seed(database)
    before = snapshot(database)
    moment = scalar(database, "SELECT clock_timestamp()")
    batch(database)
    with database.session() as s:
        report = rollback(s, to_time=moment)
    assert snapshot(database) == before
    assert report.to_time == moment and report.rows > 0


def test_rollback_deletes_rows_children_first(database):
    """Ratings inserted after their user and movie go first: the FKs never see an orphan."""
    seed(database)
    with database.session() as s:
        report = rollback(s, to_time=_epoch())
    assert snapshot(database) == {name: [] for name in SNAPSHOTS}
    assert report.rows == 13


def test_dry_run_changes_nothing(database):
    seed(database)
    point = last_change(database)
    batch(database)
    state, recorded = snapshot(database), counts(database)
    with database.session() as s:
        report = rollback(s, to_id=point, dry_run=True)
    assert (snapshot(database), counts(database)) == (state, recorded)
    assert report.dry_run and report.change_set is None and report.rows is None
    assert report.changes == last_change(database) - point
    assert report.preview[0].id == last_change(database)


def test_rollback_of_one_table_leaves_the_others(database):
    seed(database)
    before = snapshot(database)
    point = last_change(database)
    run(
        database,
        "UPDATE movies SET title = 'Heat 2' WHERE id = 1",
        "UPDATE users SET email = 'cy@example.org' WHERE id = 3",
    )
    with database.session() as s:
        rollback(s, to_id=point, table="movies")
    now = snapshot(database)
    assert now["movies"] == before["movies"]
    assert now["users"] != before["users"]


def test_change_outside_the_history_is_a_conflict_and_nothing_changes(database):
    seed(database)
    point = last_change(database)
    batch(database)
    with database.session() as s:
        # What a direct edit on a shard server or a trigger-less session looks like here.
        s.execute(text("SET LOCAL session_replication_role = replica"))
        s.execute(text("UPDATE movies SET year = 1994 WHERE id = 1"))
    state, recorded = snapshot(database), counts(database)
    movie_change = scalar(
        database, "SELECT max(id) FROM change_history WHERE table_name = 'movies' AND op = 'UPDATE'"
    )
    with database.session() as s, pytest.raises(RollbackConflict) as refused:
        rollback(s, to_id=point)
    message = str(refused.value)
    assert 'movies {"id":1}' in message and f"change {movie_change} " in message
    assert "\n" not in message
    assert (snapshot(database), counts(database)) == (state, recorded)


def test_cascade_outside_the_table_filter_is_a_conflict(database):
    seed(database)
    point = last_change(database)
    batch(database)  # user 4 arrives with ratings and a preference
    state, recorded = snapshot(database), counts(database)
    with database.session() as s, pytest.raises(RollbackConflict, match="foreign key cascade"):
        rollback(s, to_id=point, table="users")
    assert (snapshot(database), counts(database)) == (state, recorded)


def test_restoring_a_row_whose_parent_is_gone_is_a_conflict(database):
    seed(database)
    point = last_change(database)
    run(database, "DELETE FROM users WHERE id = 2")
    state, recorded = snapshot(database), counts(database)
    with database.session() as s, pytest.raises(RollbackConflict, match="cannot restore ratings"):
        rollback(s, to_id=point, table="ratings")
    assert (snapshot(database), counts(database)) == (state, recorded)


def test_conflict_leaves_the_callers_transaction_usable(database):
    seed(database)
    point = last_change(database)
    run(database, "DELETE FROM users WHERE id = 2")
    with database.session() as s:
        with pytest.raises(RollbackConflict):
            rollback(s, to_id=point, table="ratings")
        s.execute(text("UPDATE movies SET year = 2000 WHERE id = 3"))
    assert scalar(database, "SELECT year FROM movies WHERE id = 3") == 2000
    assert scalar(database, "SELECT count(*) FROM change_sets") == 0


def test_rollback_rejects_bad_arguments(database):
    seed(database)
    with database.session() as s:
        with pytest.raises(BadInput):
            rollback(s)
        with pytest.raises(BadInput):
            rollback(s, to_id=1, to_time=datetime.now(UTC))
        with pytest.raises(NotFound):
            rollback(s, to_id=10_000)
        with pytest.raises(BadInput, match="table 'nope'"):
            rollback(s, to_id=1, table="nope")
        with pytest.raises(BadInput, match="time zone"):
            rollback(s, to_time=datetime(2024, 1, 1))


# -- bulk loads and TRUNCATE ---------------------------------------------------------------


def test_bulk_change_set_records_one_change_set_instead_of_rows(database):
    seed(database)
    point = last_change(database)
    with database.session() as s:
        details = {"source": "ml-test", "tables": ["movies", "ratings"]}
        with bulk_change_set(s, "load ml-test", details) as change_set:
            s.execute(
                text(
                    "INSERT INTO movies (id, title, source, source_id) "
                    "SELECT 100 + i, 'Film ' || i, 'ml-test', i FROM generate_series(1, 200) i"
                )
            )
        s.execute(text("UPDATE movies SET year = 1990 WHERE id = 3"))  # after: recorded again
    with database.session() as s:
        new = list_changes(s, limit=10)
        row = s.execute(text("SELECT kind, details FROM change_sets")).one()
    assert [(c.op, c.table) for c in reversed(new) if c.id > point] == [
        ("BULK", "movies"), ("BULK", "ratings"), ("UPDATE", "movies"),
    ]  # fmt: skip
    assert {c.change_set for c in new if c.op == "BULK"} == {change_set}
    assert row == ("bulk", details)
    assert scalar(database, "SELECT count(*) FROM movies") == 203
    with database.session() as s, pytest.raises(RollbackConflict, match="bulk load 'load ml-test'"):
        rollback(s, to_id=point)
    with database.session() as s:  # after the load, history works as usual
        rollback(s, to_id=new[0].id - 1)
    assert scalar(database, "SELECT year FROM movies WHERE id = 3") == 2009


def test_bulk_change_set_on_a_psycopg_cursor(database):
    """The importer works on psycopg's own connection (COPY); the same call works there."""
    with database.session() as s:
        driver = s.connection().connection.driver_connection
        with driver.cursor() as cur:
            set_actor(cur, "admin:loader")
            with bulk_change_set(cur, "synthetic", {"source": "synth"}) as change_set:
                cur.execute("INSERT INTO users (username) VALUES ('u1'), ('u2')")
    with database.session() as s:
        (marker,) = list_changes(s)
    assert (marker.op, marker.table, marker.change_set) == ("BULK", "*", change_set)
    assert marker.actor == "admin:loader"


def test_truncate_is_refused_unless_allowed(database):
    seed(database)
    point = last_change(database)
    for statement in ("TRUNCATE ratings", "TRUNCATE change_history CASCADE"):
        with pytest.raises(DBAPIError, match="TRUNCATE .* refused"), database.session() as s:
            s.execute(text(statement))
    assert scalar(database, "SELECT count(*) FROM ratings") == 5
    with database.session() as s:
        s.execute(text("SET LOCAL movierec.allow_truncate = on"))
        s.execute(text("TRUNCATE ratings"))
    assert scalar(database, "SELECT count(*) FROM ratings") == 0
    with database.session() as s, pytest.raises(RollbackConflict, match="TRUNCATE of ratings"):
        rollback(s, to_id=point)


# -- partitions and prune ------------------------------------------------------------------


def _epoch() -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC)


def _partition_of(database, change_id: int) -> str:
    return scalar(
        database, "SELECT tableoid::regclass::text FROM change_history WHERE id = :i", i=change_id
    )


def _old_change(database, when: str) -> int:
    return scalar(
        database,
        "INSERT INTO change_history (table_name, op, row_key, changed_at) "
        "VALUES ('users', 'INSERT', '{\"id\": 1}', CAST(:when AS timestamptz)) RETURNING id",
        when=when,
    )


def test_partitions_exist_ahead_and_take_rows_from_the_default(database):
    run(database, "INSERT INTO users (username) VALUES ('ann')")
    month = datetime.now(UTC).strftime("%Y_%m")
    assert _partition_of(database, last_change(database)) == f"change_history_{month}"
    far = _old_change(database, "2031-05-03 10:00+00")
    assert _partition_of(database, far) == "change_history_default"
    assert scalar(database, "SELECT movierec_history_add_partitions('2031-05-01', 0)") == 1
    assert _partition_of(database, far) == "change_history_2031_05"
    with database.session() as s:
        assert ensure_partitions(s) == 0  # the migration made the next months already


def test_prune_drops_whole_months_and_deletes_the_rest(database):
    with database.session() as s:
        s.execute(text("SELECT movierec_history_add_partitions('2020-01-15', 1)"))
        s.execute(
            text(
                "INSERT INTO change_sets (kind, description, created_at) "
                "VALUES ('bulk', 'ancient load', '2019-01-01')"
            )
        )
    old = [_old_change(database, w) for w in ("2019-06-01", "2020-01-10", "2020-02-05")]
    kept = _old_change(database, "2020-02-20")
    run(database, "INSERT INTO users (username) VALUES ('ann')")
    recent = last_change(database)
    with database.session() as s:
        report = prune(s, datetime(2020, 2, 10, tzinfo=UTC))
    assert report.partitions == ("change_history_2020_01",)
    assert (report.rows, report.change_sets) == (3, 1)
    remaining = scalar(database, "SELECT array_agg(id ORDER BY id) FROM change_history")
    assert remaining == [kept, recent] and not set(old) & set(remaining)
    assert scalar(database, "SELECT to_regclass('change_history_2020_01')") is None


# -- CLI -----------------------------------------------------------------------------------


@pytest.fixture
def cli(db_url):
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(
            main.app,
            ["db", "history", *args],
            env={"MOVIEREC_DATABASE_URL": db_url, "COLUMNS": "160"},
            input=input,
        )

    return invoke


def test_cli_list_and_show(database, cli):
    seed(database)
    run(database, "UPDATE movies SET title = 'Heat 2' WHERE id = 1")
    newest = last_change(database)
    listed = cli("list", "--table", "movies", "--limit", "2")
    assert listed.exit_code == 0, listed.output
    assert str(newest) in listed.output and "UPDATE" in listed.output
    assert "ratings" not in listed.output
    shown = cli("show", str(newest))
    assert shown.exit_code == 0, shown.output
    assert '"title": "Heat"' in shown.output and '"title": "Heat 2"' in shown.output
    assert f"change {newest}: UPDATE movies" in shown.output


def test_cli_list_is_one_line_per_change_at_80_columns(database, db_url):
    seed(database)
    with database.session() as s:
        set_actor(s, "user:12345")
        s.execute(text("UPDATE ratings SET rating = 1 WHERE user_id = 1"))
        s.execute(text("UPDATE users SET password_hash = 'x' WHERE id = 1"))
    result = CliRunner().invoke(
        main.app,
        ["db", "history", "list", "--limit", "12"],
        env={"MOVIEREC_DATABASE_URL": db_url, "COLUMNS": "80"},
    )
    assert result.exit_code == 0, result.output
    lines = result.output.rstrip("\n").splitlines()
    assert max(len(line) for line in lines) <= 80, result.output
    rows = [line for line in lines if line.split() and line.split()[0].isdigit()]
    assert len(rows) == 12, result.output  # not one cut across lines
    assert "user_id=1 movie_id=2" in result.output and "user:12345" in result.output
    assert "UPDATE*" in result.output  # the password change, marked; its value is not there
    newest = last_change(database)
    shown = CliRunner().invoke(
        main.app, ["db", "history", "show", str(newest)], env={"MOVIEREC_DATABASE_URL": db_url}
    )
    assert "private columns changed (values not kept): password_hash" in shown.output
    assert "'x'" not in shown.output and '"x"' not in shown.output


def test_cli_rollback_dry_run_confirm_and_yes(database, cli):
    seed(database)
    before, point = snapshot(database), last_change(database)
    batch(database)
    after = snapshot(database)
    dry = cli("rollback", "--to", str(point), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert f"{last_change(database) - point} changes after change {point}" in dry.output
    refused = cli("rollback", "--to", str(point), input="n\n")
    assert refused.exit_code == 1 and snapshot(database) == after
    done = cli("rollback", "--to", str(point), "--yes")
    assert done.exit_code == 0, done.output
    assert snapshot(database) == before
    assert "to undo this rollback: movierec db history rollback --to" in done.output
    actors = scalar(database, "SELECT array_agg(DISTINCT actor) FROM change_sets")
    assert actors == [f"admin:{getpass.getuser()}"]


def test_cli_prune(database, cli):
    seed(database)
    result = cli("prune", "--before", "2999-01-01T00:00:00+00:00", "--yes")
    assert result.exit_code == 0, result.output
    assert "deleted 13 history rows" in result.output
    assert scalar(database, "SELECT count(*) FROM change_history") == 0


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("show", "999999"), "no change with id 999999"),
        (("rollback", "--to", "999999", "--yes"), "no change with id 999999"),
        (("rollback", "--to-time", "last tuesday", "--yes"), "cannot read the time"),
        (("rollback", "--yes"), "give --to ID or --to-time TIME"),
        (("list", "--table", "nope"), "no history is kept for table 'nope'"),
        (("list", "--since", "soon"), "cannot read the time 'soon'"),
        (("rollback", "--to-time", "2999-01-01T00:00:00+00:00", "--yes"), "is in the future"),
        (("rollback", "--to-time", "2999-01-01T00:00:00+00:00", "--dry-run"), "is in the future"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_1(database, cli, args, expected):
    result = cli(*args)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.output


def test_parse_time():
    now = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
    assert parse_time("2h", now) == now - timedelta(hours=2)
    assert parse_time("3d", now) == now - timedelta(days=3)
    assert parse_time("2024-05-01T10:00:00+02:00") == datetime(2024, 5, 1, 8, tzinfo=UTC)
    assert parse_time("2024-05-01 10:00").tzinfo is not None  # local time
    with pytest.raises(BadInput):
        parse_time("yesterday-ish")
