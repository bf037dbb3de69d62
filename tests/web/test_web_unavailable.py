"""A database that cannot answer (a lock held by a long job, a statement past its timeout) is a
503 with Retry-After, as JSON on the API and as a page elsewhere: never a 500."""

from __future__ import annotations

from sqlalchemy import text


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
