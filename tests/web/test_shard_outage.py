"""The site with a shard server out of reach (issue 24, drill 1): users whose rows live
elsewhere do not notice, and pages read what can be read.

The shard is a second database on the test server, registered through postgres_fdw like a
shard server; the outage points its foreign server at a port nothing listens on, which is
what the primary sees when a shard server dies (the same SQLSTATE 08001).
"""

from __future__ import annotations

import pytest
from psycopg import sql
from sqlalchemy import text
from sqlalchemy.engine import make_url

from movierec.db.local_server import free_port
from movierec.db.partitions import add_server, place

SHARD = "shard1"


def partition_of(database, user_id: int) -> int:
    with database.session() as s:
        return s.execute(
            text(
                "SELECT r FROM generate_series(0, 3) r "
                "WHERE satisfies_hash_partition('ratings'::regclass, 4, r, CAST(:u AS bigint))"
            ),
            {"u": user_id},
        ).scalar_one()


@pytest.fixture
def sharded(pg_server, settings, database, seed):
    """bob's partitions of ratings, preferences and searches on the shard; ann's stay."""
    shard_db = f"{make_url(settings.database_url).database}_shard"
    pg_server.create_database(shard_db)
    add_server(settings, SHARD, pg_server.admin_conninfo(shard_db))
    lost = partition_of(database, seed.bob)
    assert partition_of(database, seed.ann) != lost, "the seed's users share a partition"
    for table in ("ratings", "preferences", "searches"):
        place(settings, f"{table}_p{lost}", server=SHARD)
    yield seed
    pg_server.drop_database(shard_db)


def lose_the_shard(database) -> None:
    with database.session() as s:
        stmt = sql.SQL("ALTER SERVER {} OPTIONS (SET port {})").format(
            sql.Identifier(SHARD), sql.Literal(str(free_port()))
        )
        s.execute(text(stmt.as_string()))


def test_pages_read_what_can_be_read_with_a_shard_down(make_app, database, sharded, helpers):
    warm = make_app()
    client = warm.test_client()
    before = helpers.titles(client.get("/"))
    assert "Heat" in before
    lose_the_shard(database)

    again = client.get("/")
    assert again.status_code == 200
    assert helpers.titles(again) == before  # the last count, kept

    cold = make_app().test_client()  # a worker that never counted: the kept count
    assert helpers.titles(cold.get("/")) == before
    with database.session() as s:
        s.execute(text("DELETE FROM popular_movies"))  # as before any count
    cold = make_app().test_client()
    home = cold.get("/")
    assert home.status_code == 200
    assert "Popular movies are out of reach for a moment" in home.get_data(as_text=True)

    page = cold.get(f"/movies/{sharded.heat}")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert "Heat" in body and "Its ratings are out of reach for a moment" in body
    assert cold.get("/search?q=heat").status_code == 200


def test_users_elsewhere_still_rate_with_a_shard_down(make_app, database, sharded, helpers):
    client = make_app().test_client()
    lose_the_shard(database)
    assert helpers.log_in(client, "ann").status_code == 302
    for stars in ("4.5", "3", "2.5", "5", "1", "4", "3.5"):  # past psycopg's prepare threshold
        saved = client.post(f"/movies/{sharded.toy}/rating", data={"rating": stars})
        assert saved.status_code == 302, saved.get_data(as_text=True)
    page = client.get(f"/movies/{sharded.toy}")
    assert page.status_code == 200 and "You rated it <strong>3.5</strong>" in page.get_data(
        as_text=True
    )
    assert client.post(f"/movies/{sharded.toy}/rating/delete").status_code == 302
    with database.session() as s:
        left = s.execute(
            text("SELECT count(*) FROM ratings WHERE user_id = :u AND movie_id = :m"),
            {"u": sharded.ann, "m": sharded.toy},
        ).scalar_one()
    assert left == 0
