"""Every write the site makes for a user is recorded in the change history as that user's
(``user:<id>``), whichever page or API call made it (issue 24, item 7)."""

from __future__ import annotations

from sqlalchemy import text

from movierec.db.history import list_changes

NEW_PASSWORD = "another horse battery staple"


def actors_since(database, point: int) -> list[tuple[str, str, str]]:
    with database.session() as session:
        rows = session.execute(
            text(
                "SELECT table_name, op, actor FROM change_history WHERE id > :point "
                "AND op IN ('INSERT', 'UPDATE', 'DELETE') ORDER BY id"
            ),
            {"point": point},
        )
        return [tuple(row) for row in rows]


def last_id(database) -> int:
    with database.session() as session:
        return session.scalar(text("SELECT coalesce(max(id), 0) FROM change_history"))


def test_every_site_write_path_records_the_user_as_the_actor(client, seed, helpers, database):
    point = last_id(database)
    assert helpers.log_in(client).status_code == 302
    ann = f"user:{seed.ann}"
    steps = (
        client.post(f"/movies/{seed.toy}/rating", data={"rating": "4.5"}),  # page: new
        client.post(f"/movies/{seed.heat}/rating", data={"rating": "2"}),  # page: again
        client.post(f"/movies/{seed.heat}/rating/delete"),
        client.post("/api/ratings", json={"movie_id": seed.alien, "rating": 3}),
        client.post("/account/genres", data={"genres": ["Drama", "Crime"]}),
        client.post(
            "/account/password",
            data={"current": helpers.password, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
        ),
        client.post("/account/logout-everywhere"),
    )
    assert [r.status_code for r in steps] == [302, 302, 302, 200, 302, 302, 302]
    recorded = actors_since(database, point)
    tables = {table for table, _, _ in recorded}
    assert {"ratings", "preferences", "users"} <= tables
    assert {actor for _, _, actor in recorded} == {ann}, recorded
    with database.session() as session:
        assert len(list_changes(session, actor=ann)) == len(recorded)


def test_a_sign_up_is_recorded_as_the_new_user(client, database):
    point = last_id(database)
    password = "a long enough password"
    response = client.post(
        "/auth/signup", data={"username": "newbie", "password": password, "confirm": password}
    )
    assert response.status_code == 302
    with database.session() as session:
        user = session.scalar(text("SELECT id FROM users WHERE username = 'newbie'"))
    assert actors_since(database, point) == [("users", "INSERT", f"user:{user}")]


def test_deleting_the_account_forgets_it(client, seed, helpers, database):
    assert helpers.log_in(client).status_code == 302
    client.post(f"/movies/{seed.toy}/rating", data={"rating": "4.5"})
    response = client.post("/account/delete", data={"confirm": "ann"})
    assert response.status_code == 302
    with database.session() as session:
        left = session.scalar(
            text("SELECT count(*) FROM change_history WHERE account_id = :u"), {"u": seed.ann}
        )
        forgotten = session.execute(
            text("SELECT row_key, actor FROM change_history WHERE op = 'FORGET'")
        ).one()
        bob = session.scalar(
            text("SELECT count(*) FROM change_history WHERE account_id = :u"), {"u": seed.bob}
        )
    assert left == 0
    assert forgotten == ({"id": seed.ann}, f"user:{seed.ann}")
    assert bob > 0
