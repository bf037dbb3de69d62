"""The database goes away under the site: a failover cuts the site's pooled connections, and
during a switchover a connection can reach a member that was just made a replica. A cut
connection is replaced before a request uses it; a write refused by a demoted member is a 503
with Retry-After (the site is back within seconds), never a 500, and the next request works
on a fresh connection.
"""

from __future__ import annotations

import time

import psycopg
from sqlalchemy.engine import make_url

from movierec.db.roles import WEB_ROLE
from movierec.web.auth.tokens import create_token


def _token(database, seed) -> dict[str, str]:
    with database.session() as s:
        return {"Authorization": f"Bearer {create_token(s, seed.ann, 'script')}"}


def _admin(pg_server, settings):
    return psycopg.connect(
        pg_server.admin_conninfo(make_url(settings.database_url).database), autocommit=True
    )


def _cut_the_site_off(pg_server, settings) -> int:
    """Terminate every session the site's role has open (what a failover does to them)."""
    with _admin(pg_server, settings) as conn:
        return conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = %s",
            (WEB_ROLE,),
        ).fetchone()[0]


def test_connections_a_failover_cut_are_replaced_before_a_request_uses_them(
    client, seed, database, pg_server, settings
):
    """A failover ends the site's pooled connections while they are idle: the pool finds
    each one ended when it is handed out (the server's goodbye waits on its socket) and
    connects afresh, so the user never sees the cut. A connection that dies *while* a
    statement runs on it is a DatabaseUnavailable (tests/db/test_db_pool.py), which every
    view answers 503 with Retry-After (test_web_unavailable.py)."""
    bearer = _token(database, seed)
    assert client.get("/api/ratings", headers=bearer).status_code == 200  # a pooled connection
    assert _cut_the_site_off(pg_server, settings) >= 1
    time.sleep(0.2)  # the FATAL message and the close reach the pooled sockets
    after = client.post("/api/ratings", json={"movie_id": 1, "rating": 4}, headers=bearer)
    assert after.status_code == 200, after.get_data(as_text=True)
    _cut_the_site_off(pg_server, settings)
    time.sleep(0.2)
    assert client.get("/movies/1").status_code == 200


def test_a_write_on_a_server_that_became_read_only_is_a_503(
    client, seed, database, pg_server, settings
):
    bearer = _token(database, seed)
    name = make_url(settings.database_url).database
    with pg_server.connect() as conn:  # from another database: this one turns read-only
        # What a member demoted to replica answers a write (SQLSTATE 25006).
        conn.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    _cut_the_site_off(pg_server, settings)  # new sessions get the setting
    try:
        refused = client.post("/api/ratings", json={"movie_id": 2, "rating": 3}, headers=bearer)
        assert refused.status_code == 503, refused.get_data(as_text=True)
        assert refused.headers["Retry-After"].isdigit()
    finally:
        with pg_server.connect() as conn:
            conn.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
