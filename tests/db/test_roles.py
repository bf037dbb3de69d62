"""The site's and the recommenders' database roles (migration 0007, movierec.db.roles): what
each may do, what it may not, and that the triggers still work for them."""

from __future__ import annotations

from dataclasses import replace

import psycopg
import pytest
from alembic import command
from psycopg.errors import InsufficientPrivilege
from sqlalchemy import text

from movierec.db import Database
from movierec.db.errors import MissingPrivilege
from movierec.db.migrate import alembic_config
from movierec.db.roles import AI_ROLE, WEB_ROLE
from movierec.errors import ConfigError


@pytest.fixture
def seeded(db_url, connect):
    with connect(db_url) as conn:
        conn.execute("INSERT INTO movies (id, title, genres) VALUES (1, 'Heat', '{Crime}')")
        (ann,) = conn.execute("INSERT INTO users (username) VALUES ('ann') RETURNING id").fetchone()
        conn.execute("INSERT INTO ratings (user_id, movie_id, rating) VALUES (%s, 1, 4)", (ann,))
    return db_url


def test_the_site_reads_and_writes_user_rows_and_their_history_is_kept(seeded, connect):
    with connect(seeded, WEB_ROLE) as conn:
        (user,) = conn.execute(
            "INSERT INTO users (username) VALUES ('bob') RETURNING id"
        ).fetchone()  # a sequence it may use
        conn.execute("INSERT INTO ratings (user_id, movie_id, rating) VALUES (%s, 1, 5)", (user,))
        conn.execute("UPDATE ratings SET rating = 3 WHERE user_id <> %s", (user,))
        conn.execute("INSERT INTO searches (user_id, query) VALUES (%s, 'heat')", (user,))
        with pytest.raises(psycopg.errors.ForeignKeyViolation):  # the reference trigger
            conn.execute(
                "INSERT INTO ratings (user_id, movie_id, rating) VALUES (%s, 99, 5)", (user,)
            )
        conn.execute("DELETE FROM users WHERE id = %s", (user,))  # cascades as the owner
    with connect(seeded) as conn:
        assert conn.execute("SELECT count(*) FROM ratings").fetchone() == (1,)
        actors = conn.execute(
            "SELECT DISTINCT actor FROM change_history WHERE table_name = 'ratings' "
            "AND op = 'UPDATE'"
        ).fetchall()
    assert actors == [(WEB_ROLE,)]  # no actor set: blamed on the role


def test_the_site_cannot_switch_its_history_off_as_a_bulk_load_does(seeded, connect):
    with connect(seeded, WEB_ROLE) as conn, conn.transaction():
        conn.execute("SELECT set_config('movierec.bulk_change_set', '1', true)")
        conn.execute("UPDATE ratings SET rating = 1")
    with connect(seeded) as conn, conn.transaction():
        conn.execute("SELECT set_config('movierec.bulk_change_set', '1', true)")
        conn.execute("UPDATE ratings SET rating = 2")  # the owner's bulk load: not recorded
    with connect(seeded) as conn:
        updates = conn.execute(
            "SELECT actor, new_row->>'rating' FROM change_history "
            "WHERE table_name = 'ratings' AND op = 'UPDATE'"
        ).fetchall()
    assert updates == [(WEB_ROLE, "1.0")]


def test_the_site_may_blame_a_user_but_not_claim_to_be_an_admin(seeded, connect):
    with connect(seeded, WEB_ROLE) as conn:
        for claim, stars in (("user:7", 1), ("admin:mallory", 2)):
            with conn.transaction():
                conn.execute("SELECT set_config('movierec.actor', %s, true)", (claim,))
                conn.execute("UPDATE ratings SET rating = %s", (stars,))
    with connect(seeded) as conn, conn.transaction():  # the owner, as the CLI connects
        conn.execute("SELECT set_config('movierec.actor', 'admin:root', true)")
        conn.execute("UPDATE ratings SET rating = 3")
    with connect(seeded) as conn:
        actors = conn.execute(
            "SELECT actor FROM change_history WHERE table_name = 'ratings' AND op = 'UPDATE' "
            "ORDER BY id"
        ).fetchall()
    assert actors == [("user:7",), (f"{WEB_ROLE} (claimed admin:mallory)",), ("admin:root",)]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE movies SET title = 'x'",
        "DELETE FROM change_history",
        "INSERT INTO change_history (table_name, op) VALUES ('ratings', 'TRUNCATE')",
        "SELECT movierec_history_append('movies', 'UPDATE')",
        "UPDATE change_history SET actor = 'x'",
        "SELECT count(*) FROM change_history",
        "TRUNCATE ratings",
        "DROP TABLE searches",
        "ALTER TABLE ratings DISABLE TRIGGER USER",
        "CREATE TABLE mine (id int)",
        "DELETE FROM partitioned_tables",
        "SET session_replication_role = replica",
    ],
)
def test_the_site_may_not_change_movies_history_or_schema(seeded, connect, statement):
    with connect(seeded, WEB_ROLE) as conn, pytest.raises(InsufficientPrivilege):
        conn.execute(statement)


def test_the_recommenders_only_read_what_they_need(seeded, connect):
    with connect(seeded, AI_ROLE) as conn:
        assert conn.execute("SELECT count(*) FROM ratings").fetchone() == (1,)
        conn.execute("SELECT count(*) FROM preferences")
        conn.execute("SELECT count(*) FROM searches")
        for statement in (
            "SELECT password_hash FROM users",
            "SELECT count(*) FROM api_tokens",
            "INSERT INTO ratings (user_id, movie_id, rating) VALUES (1, 1, 1)",
        ):
            with pytest.raises(InsufficientPrivilege):
                conn.execute(statement)


def test_downgrade_takes_the_privileges_back_and_upgrade_gives_them_again(seeded, connect):
    config = alembic_config(seeded)
    command.downgrade(config, "0006")  # 0011, 0009, 0008, then 0007
    with connect(seeded, WEB_ROLE) as conn, pytest.raises(InsufficientPrivilege):
        conn.execute("SELECT count(*) FROM ratings")
    command.upgrade(config, "head")
    with connect(seeded, WEB_ROLE) as conn:
        assert conn.execute("SELECT count(*) FROM ratings").fetchone() == (1,)


def test_a_missing_privilege_is_a_one_line_setup_error_naming_the_role(seeded, settings, as_role):
    as_site = replace(settings, database_url=as_role(seeded, WEB_ROLE))
    with Database(as_site) as database:
        with pytest.raises(MissingPrivilege) as raised, database.session() as session:
            session.execute(text("DELETE FROM movies"))
        assert isinstance(raised.value, ConfigError)  # the web answers 500 and logs it
        assert str(raised.value) == (
            f"the database role {WEB_ROLE} may not do this: permission denied for table movies"
        )
        # The same on the hot path's connections (translated as their scope ends).
        with pytest.raises(MissingPrivilege, match="permission denied for table ratings"):
            with database.autocommit() as conn:
                conn.execute(text("TRUNCATE ratings"))
        with database.autocommit() as conn:
            assert conn.execute(text("SELECT count(*) FROM ratings")).scalar_one() == 1
