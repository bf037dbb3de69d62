"""A page on another site cannot plant searches in a user's taste (issue 19, item 10).

Headless Chromium, logged in to the site (127.0.0.1), opens an attacker's page served from
another site (``localhost``), which sends the browser to the site's search for Horror. The
SameSite=Lax session cookie goes along with such a top-level navigation; the search must not
be recorded. The user's own search, from the site's search form, still is.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from movierec.db import Search


@pytest.fixture
def plain_site(make_app, live_site):
    """The site on a real socket: the app as deployed (CSRF on, not TESTING)."""
    live_site.app = make_app(WTF_CSRF_ENABLED=True, TESTING=False)
    yield live_site
    live_site.app = None


@pytest.fixture
def attacker(plain_site):
    """http://localhost:<port>/: a page that navigates to the site's search for Horror."""
    target = f"{plain_site.url}/search?q=&genre=Horror"
    body = f"<!doctype html><title>cats</title><script>location = {target!r};</script>"

    class Page(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://localhost:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join(5)


def searches_of(database, user_id: int) -> list[tuple[str, str | None]]:
    with database.session() as s:
        rows = s.execute(select(Search.query, Search.genre).where(Search.user_id == user_id))
        return [tuple(row) for row in rows]


def test_a_cross_site_navigation_does_not_plant_a_search(
    page, plain_site, attacker, seed, helpers, database
):
    page.goto(f"{plain_site.url}/auth/login")
    page.fill("input[name=username]", "ann")
    page.fill("input[name=password]", helpers.password)
    page.click("button:has-text('Log in')")
    page.wait_for_url(f"{plain_site.url}/")

    page.goto(attacker)
    page.wait_for_url(f"{plain_site.url}/search**")
    assert "Log out" in page.content()  # the cookie went along: ann is logged in there
    assert searches_of(database, seed.ann) == []

    # Her own search, made on the site, is kept.
    page.goto(f"{plain_site.url}/")
    page.fill("input[name=q]", "alien")
    page.click("form.search button")
    page.wait_for_url(f"{plain_site.url}/search**")
    assert searches_of(database, seed.ann) == [("alien", None)]
