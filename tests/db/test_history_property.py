"""Rollback as a property (issue 24): after any sequence of inserts, updates and deletes
across users, movies, ratings and preferences, rolling back to any point between them
restores exactly the snapshot taken at that point."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from movierec.db.history import rollback

IDS = st.integers(min_value=1, max_value=4)
STARS = st.sampled_from([0.5, 1, 2.5, 3, 4.5, 5])
GENRES = st.lists(st.sampled_from(["Crime", "Drama", "Horror"]), max_size=2, unique=True)

# (statement, parameters) for one transaction each; some fail (a missing parent, a taken
# key): those change nothing, as a refused request would not.
OPERATIONS = st.one_of(
    st.builds(lambda i: ("INSERT INTO users (id, username) VALUES (:i, 'u' || :i)", {"i": i}), IDS),
    st.builds(
        lambda i, n: (
            "UPDATE users SET email = 'e' || :n || '@x.org' WHERE id = :i",
            {"i": i, "n": n},
        ),
        IDS,
        st.integers(0, 9),
    ),  # fmt: skip
    st.builds(
        lambda i: ("UPDATE users SET password_hash = md5(random()::text) WHERE id = :i", {"i": i}),
        IDS,
    ),  # fmt: skip
    st.builds(lambda i: ("DELETE FROM users WHERE id = :i", {"i": i}), IDS),
    st.builds(
        lambda i, y: (
            "INSERT INTO movies (id, title, year) VALUES (:i, 'm' || :i, :y)",
            {"i": i, "y": y},
        ),
        IDS,
        st.integers(1950, 2020),
    ),  # fmt: skip
    st.builds(
        lambda i, g: ("UPDATE movies SET genres = :g WHERE id = :i", {"i": i, "g": g}),
        IDS,
        GENRES,
    ),  # fmt: skip
    st.builds(lambda i: ("DELETE FROM movies WHERE id = :i", {"i": i}), IDS),
    st.builds(
        lambda u, m, r: (
            "INSERT INTO ratings (user_id, movie_id, rating) VALUES (:u, :m, :r)",
            {"u": u, "m": m, "r": r},
        ),
        IDS,
        IDS,
        STARS,
    ),  # fmt: skip
    st.builds(
        lambda u, m, r: (
            "UPDATE ratings SET rating = :r WHERE user_id = :u AND movie_id = :m",
            {"u": u, "m": m, "r": r},
        ),
        IDS,
        IDS,
        STARS,
    ),  # fmt: skip
    st.builds(lambda u: ("DELETE FROM ratings WHERE user_id = :u", {"u": u}), IDS),
    st.builds(
        lambda u, g: (
            "INSERT INTO preferences (user_id, genres) VALUES (:u, :g)",
            {"u": u, "g": g},
        ),
        IDS,
        GENRES,
    ),  # fmt: skip
    st.builds(
        lambda u, g: ("UPDATE preferences SET genres = :g WHERE user_id = :u", {"u": u, "g": g}),
        IDS,
        GENRES,
    ),  # fmt: skip
)

# Credentials are never restored by a rollback (issue 19): they are not compared.
SNAPSHOT = {
    "users": "SELECT id, username, email FROM users ORDER BY id",
    "movies": "SELECT * FROM movies ORDER BY id",
    "ratings": "SELECT * FROM ratings ORDER BY user_id, movie_id",
    "preferences": "SELECT * FROM preferences ORDER BY user_id",
}


START = (
    "DELETE FROM ratings",
    "DELETE FROM preferences",
    "DELETE FROM users",
    "DELETE FROM movies",
    "INSERT INTO users (id, username) SELECT i, 'u' || i FROM generate_series(1, 3) i",
    "INSERT INTO movies (id, title) SELECT i, 'm' || i FROM generate_series(1, 3) i",
    "INSERT INTO ratings (user_id, movie_id, rating) SELECT u, m, 3 "
    "FROM generate_series(1, 3) u, generate_series(1, 2) m",
    "INSERT INTO preferences (user_id, genres) VALUES (1, '{Drama}'), (2, '{}')",
)


def snapshot(database) -> dict[str, list[tuple]]:
    with database.session() as s:
        return {name: [tuple(r) for r in s.execute(text(q))] for name, q in SNAPSHOT.items()}


def apply(database, operation) -> None:
    statement, params = operation
    try:
        with database.session() as s:
            s.execute(text(statement), params)
    except DBAPIError:
        pass  # refused: nothing changed


def last_change(database) -> int:
    with database.session() as s:
        return s.execute(text("SELECT coalesce(max(id), 0) FROM change_history")).scalar()


@settings(
    max_examples=20,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    before=st.lists(OPERATIONS, max_size=6),
    after=st.lists(OPERATIONS, min_size=1, max_size=10),
)
def test_rolling_back_to_any_point_restores_its_snapshot(database, before, after):
    for statement in START:  # each example starts from the same rows
        apply(database, (statement, {}))
    for operation in before:
        apply(database, operation)
    point, expected = last_change(database), snapshot(database)
    for operation in after:
        apply(database, operation)
    with database.session() as s:
        rollback(s, to_id=point)
    assert snapshot(database) == expected
