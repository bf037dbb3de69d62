"""Health for routing and health for people: /healthz says whether this instance can serve and
asks no dependency, so a database outage never takes every instance out of the director at
once; the site degrades instead (reads from a replica, writes 503 with Retry-After), and
/readyz tells operators which dependency is down."""

from __future__ import annotations

import pytest

from movierec.db.roles import WEB_ROLE


@pytest.fixture
def primary_down(make_app, settings, as_role, dead_url, seed):
    """An instance whose primary does not answer, with a replica that does (here: the
    test's database, read as the site's role)."""
    port = dead_url.rsplit(":", 1)[1]
    return make_app(
        database_url=f"postgresql://{WEB_ROLE}@127.0.0.1:{port}/gone",
        replica_url=as_role(settings.database_url, WEB_ROLE),
    )


def test_healthz_asks_no_dependency(primary_down):
    response = primary_down.test_client().get("/healthz")
    assert response.status_code == 200 and response.get_json()["status"] == "ok"


def test_the_site_degrades_while_the_primary_is_down(primary_down, seed, helpers):
    client = primary_down.test_client()
    for path in ("/", f"/movies/{seed.heat}", "/search?q=heat", "/static/style.css"):
        with client.get(path) as response:
            assert response.status_code == 200, path
    assert client.get(f"/api/movies/{seed.heat}").get_json()["title"] == "Heat"
    login = helpers.log_in(client, "ann")  # a login writes (its session generation, its time)
    assert login.status_code == 503 and int(login.headers["Retry-After"]) >= 1


def test_readyz_names_the_dependency_that_is_down(primary_down, ai):
    response = primary_down.test_client().get("/readyz")
    assert response.status_code == 503 and int(response.headers["Retry-After"]) >= 1
    body = response.get_json()
    assert body["status"] == "degraded"
    assert body["database"]["ok"] is False and "unavailable" in body["database"]["error"]
    assert body["replica"] == {"ok": True}
    assert body["recommenders"] == [{"url": ai.url, "ok": True}]


def test_readyz_is_ok_when_everything_answers_and_only_for_loopback(client, ai):
    response = client.get("/readyz")
    assert response.status_code == 200 and response.get_json()["status"] == "ok"
    assert client.get("/readyz", environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 404
