"""The app factory: settings, health check, error answers, cookies, headers."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from test_auth_accounts import as_user

from movierec.db import Search
from movierec.errors import ConfigError
from movierec.web import close_app, create_app
from movierec.web.catalog import SearchQuery
from movierec.web.db import commit, get_session
from movierec.web.users import record_search


def test_healthz_answers_ok_while_the_instance_can_serve(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json()["status"] == "ok"


def test_database_down_gives_503_page_and_json_not_a_traceback(make_app, dead_url):
    port = dead_url.rsplit(":", 1)[1]
    client = make_app(database_url=f"postgresql://postgres@127.0.0.1:{port}/nowhere").test_client()

    assert client.get("/healthz").status_code == 200  # the instance is fine; see test_web_health
    page = client.get("/")
    text = page.get_data(as_text=True)
    assert page.status_code == 503
    assert "temporarily unavailable" in text
    assert "Traceback" not in text and "psycopg" not in text and port not in text
    api = client.get("/api/movies/1")
    assert api.status_code == 503
    assert api.get_json() == {
        "error": "The service is temporarily unavailable. Please try again in a moment."
    }


def test_unknown_paths_are_html_404_on_the_site_and_json_under_api(client):
    page = client.get("/no/such/page")
    assert page.status_code == 404
    assert page.mimetype == "text/html"
    assert "<h1>Not found</h1>" in page.get_data(as_text=True)
    api = client.get("/api/no/such/thing")
    assert api.status_code == 404
    assert "error" in api.get_json()


def test_wrong_method_is_405_json_under_api(client):
    response = client.delete("/api/ratings")
    assert response.status_code == 405
    assert "error" in response.get_json()


def test_session_cookie_is_httponly_and_samesite_lax(client, seed, helpers):
    response = helpers.log_in(client)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie


def test_session_cookie_can_be_made_secure(make_app, seed, helpers):
    client = make_app(extra={"session_cookie_secure": True}).test_client()
    response = helpers.log_in(client)
    assert "Secure" in response.headers["Set-Cookie"]


def test_pages_carry_security_headers(client):
    response = client.get("/")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]


def test_create_app_without_arguments_reads_the_environment(settings, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no movierec.toml here
    monkeypatch.delenv("MOVIEREC_CONFIG", raising=False)
    monkeypatch.setenv("MOVIEREC_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("MOVIEREC_SECRET_KEY", "from-the-environment")
    app = create_app()
    try:
        assert app.config["SECRET_KEY"] == "from-the-environment"
        assert app.test_client().get("/healthz").status_code == 200
    finally:
        close_app(app)


def test_create_app_names_missing_settings(db_url):
    with pytest.raises(ConfigError, match="MOVIEREC_SECRET_KEY"):
        create_app({"database_url": db_url, "secret_key": None})


def test_request_session_commits_only_when_a_view_says_so(make_app, seed, database):
    app = make_app()

    @app.post("/test/write/<int:keep>")
    def write(keep: int):
        record_search(get_session(), seed.ann, SearchQuery(q=f"keep={keep}"))
        if keep:
            commit()
        return "written"

    client = app.test_client()
    assert client.post("/test/write/0").status_code == 200
    assert client.post("/test/write/1").status_code == 200
    with database.session() as s:
        assert s.scalars(select(Search.query)).all() == ["keep=1"]


def test_unexpected_errors_are_a_plain_500_page(make_app):
    app = make_app(TESTING=False)

    @app.get("/test/boom")
    def boom():
        raise RuntimeError("secret internals")

    response = app.test_client().get("/test/boom")
    page = response.get_data(as_text=True)
    assert response.status_code == 500
    assert "An unexpected error occurred" in page
    assert "secret internals" not in page and "Traceback" not in page


def test_logged_in_user_with_the_database_down_gets_a_503_page(make_app, dead_url):
    port = dead_url.rsplit(":", 1)[1]
    client = make_app(database_url=f"postgresql://postgres@127.0.0.1:{port}/nowhere").test_client()
    as_user(client, 1)
    response = client.get("/account")
    assert response.status_code == 503
    assert "temporarily unavailable" in response.get_data(as_text=True)
