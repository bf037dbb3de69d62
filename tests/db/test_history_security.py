"""The change history against a hostile site role (issue 19, items 2-4): no forged rows, no
believed session settings, no credentials kept or restored, deleted accounts forgotten."""

from __future__ import annotations

from dataclasses import replace

import psycopg
import pytest
from psycopg.errors import InsufficientPrivilege

from movierec.db import Database
from movierec.db.accounts import delete_account
from movierec.db.history import list_changes, rollback, set_actor
from movierec.db.roles import WEB_ROLE
from movierec.errors import NotFound

FORGED_TITLE = "Pwned (visit evil.example)"


@pytest.fixture
def seeded(db_url, connect):
    """Movie 1 'Heat'; ann (id 1) with a password, an email and three ratings; bob (id 2)."""
    with connect(db_url) as conn:
        conn.execute(
            "INSERT INTO movies (id, title) VALUES (1, 'Heat'), (2, 'Alien'), (3, 'Up'), "
            "(4, 'Brazil')"
        )
        conn.execute(
            "INSERT INTO users (id, username, email, password_hash) VALUES "
            "(1, 'ann', 'ann@example.org', 'hash-one'), (2, 'bob', NULL, 'hash-bob')"
        )
        conn.execute(
            "INSERT INTO ratings (user_id, movie_id, rating) VALUES (1, 1, 4), (1, 2, 3), "
            "(1, 3, 5), (2, 1, 2)"
        )
        conn.execute("INSERT INTO preferences (user_id, genres) VALUES (1, '{Crime}')")
    return db_url


def last_id(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT coalesce(max(id), 0) FROM change_history").fetchone()[0]


def admin_rollback(settings, **window):
    with Database(settings) as database, database.session() as session:
        set_actor(session, "admin:root")
        return rollback(session, **window)


FORGED_UPDATE = (
    "INSERT INTO change_history (table_name, op, row_key, old_row, new_row, actor) "
    "VALUES ('movies', 'UPDATE', '{\"id\": 1}', %(old)s, %(new)s, 'admin:root')"
)


def _forged_update_params() -> dict:
    old = psycopg.types.json.Jsonb({"id": 1, "title": FORGED_TITLE, "year": None, "genres": []})
    new = psycopg.types.json.Jsonb({"id": 1, "title": "Heat", "year": None, "genres": []})
    return {"old": old, "new": new}


# -- item 2: only the trigger writes the history, and rollback believes only what it wrote ----


def test_the_site_cannot_forge_a_row_that_puts_its_title_into_movies(seeded, connect, settings):
    with connect(seeded) as owner:
        point = last_id(owner)
        owner.execute("UPDATE ratings SET rating = 1 WHERE user_id = 2")  # something to undo
    with connect(seeded, WEB_ROLE) as web, pytest.raises(InsufficientPrivilege):
        web.execute(FORGED_UPDATE, _forged_update_params())
    # A row put there behind the trigger's back (before migration 0010 the site could; an
    # owner's session still can) carries no valid signature: rollback does not act on it.
    with connect(seeded) as owner:
        owner.execute(FORGED_UPDATE, _forged_update_params())
    report = admin_rollback(settings, to_id=point)
    with connect(seeded) as owner:
        title = owner.execute("SELECT title FROM movies WHERE id = 1").fetchone()[0]
        stars = owner.execute("SELECT rating FROM ratings WHERE user_id = 2").fetchone()[0]
    assert title == "Heat"
    assert stars == 2  # the genuine change was reverted
    assert report.ignored == 1


def test_a_forged_truncate_marker_blocks_no_rollback(seeded, connect, settings):
    with connect(seeded) as owner:
        point = last_id(owner)
        owner.execute("UPDATE movies SET title = 'Heat 2' WHERE id = 1")
    marker = "INSERT INTO change_history (table_name, op) VALUES ('movies', 'TRUNCATE')"
    with connect(seeded, WEB_ROLE) as web, pytest.raises(InsufficientPrivilege):
        web.execute(marker)
    with connect(seeded) as owner:
        owner.execute(marker)
    admin_rollback(settings, to_id=point)
    with connect(seeded) as owner:
        assert owner.execute("SELECT title FROM movies WHERE id = 1").fetchone()[0] == "Heat"


def test_history_rows_are_written_by_a_definer_function_with_a_fixed_search_path(seeded, connect):
    with connect(seeded) as owner:
        rows = owner.execute(
            "SELECT p.proname, p.prosecdef, p.proconfig FROM pg_proc p "
            "WHERE p.proname IN ('movierec_history_record', 'movierec_forget_account')"
        ).fetchall()
    assert {name for name, _, _ in rows} == {"movierec_history_record", "movierec_forget_account"}
    for _name, definer, config in rows:
        assert definer and config == ["search_path=public, pg_temp"]


# -- item 3: definer functions believe only settings the session user may set -----------------


def test_the_sites_settings_neither_hide_nor_misattribute_cascaded_deletions(seeded, connect):
    with connect(seeded, WEB_ROLE) as web, web.transaction():
        web.execute("SELECT set_config('movierec.bulk_change_set', '1', true)")
        web.execute("SELECT set_config('movierec.actor', 'admin:root', true)")
        web.execute("DELETE FROM users WHERE id = 1")  # cascades through definer functions
    with connect(seeded) as owner:
        deletions = owner.execute(
            "SELECT table_name, actor, change_set FROM change_history WHERE op = 'DELETE' "
            "ORDER BY id"
        ).fetchall()
    assert sorted(t for t, _, _ in deletions) == ["preferences", *["ratings"] * 3, "users"]
    claimed = f"{WEB_ROLE} (claimed admin:root)"
    assert {(actor, change_set) for _, actor, change_set in deletions} == {(claimed, None)}


def test_the_site_cannot_pass_its_writes_off_as_part_of_a_rollback(seeded, connect):
    with connect(seeded) as owner:
        (change_set,) = owner.execute(
            "INSERT INTO change_sets (kind, description) VALUES ('rollback', 'an admin''s') "
            "RETURNING id"
        ).fetchone()
    with connect(seeded, WEB_ROLE) as web, web.transaction():
        web.execute("SELECT set_config('movierec.change_set', %s, true)", (str(change_set),))
        web.execute("UPDATE ratings SET rating = 1 WHERE user_id = 2")
    with connect(seeded) as owner:
        recorded = owner.execute(
            "SELECT change_set FROM change_history WHERE op = 'UPDATE'"
        ).fetchall()
    assert recorded == [(None,)]


# -- item 4: credentials are never kept in the history, nor restored --------------------------


def test_credentials_are_not_kept_in_the_history_only_that_they_changed(seeded, connect):
    with connect(seeded, WEB_ROLE) as web:
        web.execute(
            "UPDATE users SET password_hash = 'hash-two', "
            "session_generation = session_generation + 1 WHERE id = 1"
        )
    with connect(seeded) as owner:
        leaked = owner.execute(
            "SELECT count(*) FROM change_history WHERE old_row ? 'password_hash' "
            "OR new_row ? 'password_hash' OR old_row ? 'session_generation' "
            "OR new_row ? 'session_generation' OR row_key::text LIKE '%hash-%' "
            "OR coalesce(old_row::text, '') || coalesce(new_row::text, '') LIKE '%hash-%'"
        ).fetchone()[0]
        (marked,) = owner.execute(
            "SELECT private_changed FROM change_history WHERE op = 'UPDATE'"
        ).fetchone()
    assert leaked == 0
    assert marked == ["password_hash", "session_generation"]


def test_rolling_back_users_brings_no_old_password_or_session_back(seeded, connect, settings):
    with connect(seeded) as owner:
        point = last_id(owner)
    with connect(seeded, WEB_ROLE) as web:
        web.execute(
            "UPDATE users SET password_hash = 'hash-two', email = 'ann@new.example', "
            "session_generation = 7 WHERE id = 1"
        )
        web.execute("DELETE FROM users WHERE id = 2")
    admin_rollback(settings, to_id=point)
    with connect(seeded) as owner:
        ann = owner.execute(
            "SELECT email, password_hash, session_generation FROM users WHERE id = 1"
        ).fetchone()
        bob = owner.execute(
            "SELECT username, password_hash, session_generation FROM users WHERE id = 2"
        ).fetchone()
    assert ann == ("ann@example.org", "hash-two", 7)  # the email back, the credentials not
    username, password_hash, generation = bob
    assert (username, password_hash) == ("bob", None)  # back, but with no old password
    assert generation > 1_000_000  # above any count a cookie of the old account carries


# -- item 4: a deleted account is forgotten ---------------------------------------------------


def test_deleting_an_account_purges_its_personal_data_from_the_history(seeded, connect, settings):
    with connect(seeded, WEB_ROLE) as web:
        web.execute("UPDATE users SET email = 'ann@second.example' WHERE id = 1")
        web.execute("UPDATE ratings SET rating = 1 WHERE user_id = 1 AND movie_id = 1")
    with Database(settings) as database, database.session() as session:
        set_actor(session, "user:1")
        purged = delete_account(session, 1)
    with connect(seeded) as owner:
        left = owner.execute(
            "SELECT count(*) FROM change_history WHERE row_key::text || "
            "coalesce(old_row::text, '') || coalesce(new_row::text, '') ~ '(ann|\"user_id\": 1\\M)'"
        ).fetchone()[0]
        marker = owner.execute(
            "SELECT row_key, actor FROM change_history WHERE op = 'FORGET'"
        ).fetchone()
        gone = owner.execute("SELECT count(*) FROM users WHERE id = 1").fetchone()[0]
        bobs = owner.execute("SELECT count(*) FROM change_history WHERE account_id = 2").fetchone()
    assert gone == 0 and left == 0
    assert purged >= 8  # ann's inserts, her changes and the deletions of her rows
    assert marker == ({"id": 1}, "user:1")
    assert bobs == (2,)  # another account's history stays


def test_the_site_deletes_and_forgets_an_account_through_the_definer_function(
    seeded, settings, as_role
):
    as_site = replace(settings, database_url=as_role(seeded, WEB_ROLE))
    with Database(as_site) as database:
        with database.session() as session:
            set_actor(session, "user:2")
            assert delete_account(session, 2) >= 2
        with pytest.raises(NotFound, match="no account with id 2"), database.session() as s:
            delete_account(s, 2)


def test_rollback_across_a_forgotten_account_leaves_it_forgotten(seeded, connect, settings):
    with connect(seeded) as owner:
        point = last_id(owner)
        owner.execute("UPDATE movies SET title = 'Heat 2' WHERE id = 1")
    with Database(settings) as database, database.session() as session:
        delete_account(session, 1)
    report = admin_rollback(settings, to_id=point)
    with connect(seeded) as owner:
        assert owner.execute("SELECT count(*) FROM users WHERE id = 1").fetchone() == (0,)
        assert owner.execute("SELECT title FROM movies WHERE id = 1").fetchone() == ("Heat",)
    assert ("users", "FORGET", 1) in report.counts


def test_list_changes_shows_who_changed_credentials(seeded, connect, settings):
    with connect(seeded, WEB_ROLE) as web, web.transaction():
        web.execute("SELECT set_config('movierec.actor', 'user:1', true)")
        web.execute("UPDATE users SET password_hash = 'hash-three' WHERE id = 1")
    with Database(settings) as database, database.session() as session:
        (change,) = list_changes(session, actor="user:1")
    assert change.op == "UPDATE" and change.private_changed == ("password_hash",)
    assert change.old_row == change.new_row  # nothing else changed, and no hash kept
