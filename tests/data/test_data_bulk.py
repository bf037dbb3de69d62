"""The bulk loader underneath both data commands: binary COPY rows, and trigger handling."""

import struct

import numpy as np
import pytest
from data_samples import EXPECTED, table_counts
from sqlalchemy import text

from movierec.data import generate_catalogue, import_movielens
from movierec.db import bulk
from movierec.errors import BadInput


def test_binary_rows_match_postgres_binary_copy_layout():
    rows = bulk.binary_rows([np.array([7, -1], dtype=np.int64), np.array([3, 10], dtype=np.int16)])
    expected = b"".join(
        struct.pack(">hiqih", 2, 8, big, 2, small) for big, small in ((7, 3), (-1, 10))
    )
    assert rows == expected
    with pytest.raises(TypeError, match="float64"):
        bulk.binary_rows([np.array([1.5])])


def test_a_trigger_the_loader_does_not_know_still_fires(database, make_release):
    with database.session() as s:
        s.execute(text("CREATE TABLE noticed (movie_id bigint)"))
        s.execute(
            text(
                "CREATE FUNCTION notice_rating() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN INSERT INTO noticed VALUES (NEW.movie_id); RETURN NULL; END $$"
            )
        )
        s.execute(
            text(
                "CREATE TRIGGER notice AFTER INSERT ON ratings "
                "FOR EACH ROW EXECUTE FUNCTION notice_rating()"
            )
        )
    import_movielens(database, make_release("ml-100k"))
    with database.session(readonly=True) as s:
        assert s.scalar(text("SELECT count(*) FROM noticed")) == EXPECTED["ml-100k"][2]


def test_a_role_that_may_not_skip_triggers_loads_the_same(database, make_release, monkeypatch):
    monkeypatch.setattr(bulk, "_MAY_SKIP_TRIGGERS", "SELECT false")
    import_movielens(database, make_release("ml-latest-small"))
    movies, users, ratings = EXPECTED["ml-latest-small"]
    assert table_counts(database) == {
        "movies": movies, "users": users, "ratings": ratings, "preferences": 0,
    }  # fmt: skip


def test_a_username_taken_by_someone_else_stops_the_load(database):
    with database.session() as s:
        s.execute(text("INSERT INTO users (username) VALUES ('user2')"))
    with pytest.raises(BadInput, match=r"synthetic users: Key \(username\)=\(user2\) already"):
        generate_catalogue(database, movies=5, users=3, ratings=6)
    assert table_counts(database) == {"movies": 0, "users": 1, "ratings": 0, "preferences": 0}
