"""A database that cannot answer (a lock held by a long job, a statement past its timeout) is a
503 with Retry-After, as JSON on the API and as a page elsewhere: never a 500."""

from __future__ import annotations

from sqlalchemy import text

from movierec.db.errors import ShardUnavailable
from movierec.db.local_server import free_port


def _locked(database, table: str):
    """A session holding ``table`` locked against reads and writes until it ends."""
    scope = database.session()
    session = scope.__enter__()
    session.execute(text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
    return scope


def test_a_write_stuck_behind_a_lock_is_a_503_with_retry_after(make_app, seed, helpers, database):
    client = make_app(statement_timeout_ms=300).test_client()
    helpers.log_in(client, "ann")
    scope = _locked(database, "ratings")
    try:
        response = client.post("/api/ratings", json={"movie_id": seed.toy, "rating": 4})
    finally:
        scope.__exit__(None, None, None)
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) >= 1
    assert "temporarily unavailable" in response.get_json()["error"]


def test_reads_stuck_behind_a_lock_are_503_pages_and_json(make_app, seed, helpers, database):
    client = make_app(statement_timeout_ms=300).test_client()
    helpers.log_in(client, "bob")
    scope = _locked(database, "ratings")
    try:
        api = client.get("/api/ratings")
        page = client.get("/account")
    finally:
        scope.__exit__(None, None, None)
    assert api.status_code == 503 and api.is_json and int(api.headers["Retry-After"]) >= 1
    assert page.status_code == 503 and int(page.headers["Retry-After"]) >= 1
    assert "Temporarily unavailable" in page.get_data(as_text=True)
    assert client.get("/api/ratings").status_code == 200  # and fine once the lock is gone


def test_a_write_to_a_shard_that_is_down_is_a_503_with_retry_after(client, seed, helpers, database):
    """Every partition of searches on a foreign server that does not answer: recording a
    logged-in user's search needs it."""
    with database.session() as s:
        s.execute(text("CREATE EXTENSION IF NOT EXISTS postgres_fdw"))
        s.execute(
            text(
                "CREATE SERVER gone FOREIGN DATA WRAPPER postgres_fdw "
                f"OPTIONS (host '127.0.0.1', port '{free_port()}', dbname 'nowhere')"
            )
        )
        s.execute(
            text("CREATE USER MAPPING FOR PUBLIC SERVER gone OPTIONS (user 'x', password 'y')")
        )
        for p in range(4):
            s.execute(text(f"ALTER TABLE searches DETACH PARTITION searches_p{p}"))
            s.execute(text(f"DROP TABLE searches_p{p}"))
            s.execute(
                text(
                    f"CREATE FOREIGN TABLE searches_p{p} PARTITION OF searches "
                    f"FOR VALUES WITH (MODULUS 4, REMAINDER {p}) SERVER gone"
                )
            )
    helpers.log_in(client, "ann")
    # made on the site itself: only then is a search recorded (a cross-site one is not)
    response = client.get("/api/search?q=heat", headers={"Sec-Fetch-Site": "same-origin"})
    assert response.status_code == 503
    assert response.headers["Retry-After"] == str(ShardUnavailable.retry_after)
    assert client.get(f"/api/movies/{seed.heat}").status_code == 200  # reads of elsewhere: fine
