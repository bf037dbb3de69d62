"""Read-your-writes: after a user writes, their read-only sessions go to the primary for a
while, although a replica is configured.

The "replica" here is another, empty database (migrated, no rows) on the test server: not a
real replica, but reads that reach it are easy to tell from reads that reach the primary.
"""

from __future__ import annotations

import uuid

import pytest
from flask import session

from movierec.web import db


@pytest.fixture
def other_db_url(pg_server):
    name = f"r_{uuid.uuid4().hex[:12]}"
    url = pg_server.create_database(name, template="movierec_template")
    yield url
    pg_server.drop_database(name)


@pytest.fixture
def replica_app(make_app, other_db_url, seed):
    return make_app(replica_url=other_db_url)


def test_reads_go_to_the_replica_until_the_user_writes(replica_app, seed, helpers):
    client = replica_app.test_client()
    helpers.log_in(client, "ann")
    database = replica_app.extensions[db.EXTENSION]
    with client:
        client.get("/account")
        assert not db.reads_own_writes()
        assert db.read_engine() is database.replica
    # The movie is only on the primary: a read from the "replica" does not find it.
    assert client.get(f"/movies/{seed.toy}").status_code == 404

    with client:
        client.post(f"/movies/{seed.toy}/rating", data={"rating": "4.5"})
        assert db.reads_own_writes()
        assert db.read_engine() is database.primary
    page = client.get(f"/movies/{seed.toy}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    # The rating just made is visible: the page was read from the primary.
    assert "<strong>4.5</strong> ★ from\n    1 rating" in html


def test_other_users_still_read_from_the_replica(replica_app, seed, helpers):
    ann, bob = replica_app.test_client(), replica_app.test_client()
    helpers.log_in(ann, "ann")
    helpers.log_in(bob, "bob")
    ann.post(f"/movies/{seed.toy}/rating", data={"rating": "4.5"})
    assert ann.get(f"/movies/{seed.alien}").status_code == 200
    # bob's reads: the replica (another movie: the worker's movie cache would serve this one)
    assert bob.get(f"/movies/{seed.shining}").status_code == 404


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/account/genres", {"genres": ["Horror"]}),
        ("/for-you/not-interested", {"movie_id": "5"}),
    ],
)
def test_preferences_and_not_interested_count_as_writes(replica_app, seed, helpers, path, data):
    client = replica_app.test_client()
    helpers.log_in(client, "ann")
    with client:
        assert client.post(path, data=data).status_code == 302
        assert db.read_engine() is replica_app.extensions[db.EXTENSION].primary


def test_the_window_ends(make_app, other_db_url, seed, helpers):
    app = make_app(replica_url=other_db_url, READ_YOUR_WRITES_SECONDS=0.0)
    client = app.test_client()
    helpers.log_in(client, "ann")
    client.post(f"/movies/{seed.toy}/rating", data={"rating": "4.5"})
    with client:
        assert client.get(f"/movies/{seed.toy}").status_code == 404  # the replica again
        assert db.read_engine() is app.extensions[db.EXTENSION].replica


def test_without_a_replica_a_write_leaves_the_session_alone(client, seed, helpers):
    helpers.log_in(client, "ann")
    with client:
        client.post(f"/movies/{seed.toy}/rating", data={"rating": "4.5"})
        assert db.PRIMARY_UNTIL not in session


def test_a_rating_through_the_api_counts_for_a_browser(replica_app, seed, helpers):
    client = replica_app.test_client()
    helpers.log_in(client, "ann")
    with client:
        answer = client.post("/api/ratings", json={"movie_id": seed.toy, "rating": 4.0})
        assert answer.status_code == 200, answer.get_data(as_text=True)
        assert db.read_engine() is replica_app.extensions[db.EXTENSION].primary
