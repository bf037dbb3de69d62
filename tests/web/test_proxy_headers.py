"""The client does not decide the scheme or its address (issue 19, item 11).

Real gunicorn serving the site, directly and behind a real director (HAProxy). What the site
believes shows in the redirect URI it asks a login provider to send the user back to: built
from the request's scheme and host, it must say ``http`` when the user came over plain HTTP,
whatever ``X-Forwarded-Proto`` the client sent. gunicorn used to believe that header from
any loopback client, and the director passed it on.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from movierec import director
from movierec.db.local_server import free_port
from movierec.director.haproxy import haproxy_binary
from movierec.errors import OpsCommandFailed

pytestmark = pytest.mark.integration
SPOOFED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


@pytest.fixture
def serve_oidc_web(serve_web, providers):
    """``serve_oidc_web(proxy_count)``: the site under gunicorn with the test provider."""

    def start(proxy_count: int) -> int:
        return serve_web(
            MOVIEREC_WEB_PROXY_COUNT=str(proxy_count),
            MOVIEREC_OIDC_ISSUER=providers.config["oidc_issuer"],
            MOVIEREC_OIDC_CLIENT_ID=providers.config["oidc_client_id"],
            MOVIEREC_OIDC_CLIENT_SECRET=providers.config["oidc_client_secret"],
            OAUTHLIB_INSECURE_TRANSPORT="1",  # the test provider speaks plain HTTP
        )

    return start


@pytest.fixture
def director_in_front(settings, tmp_path):
    """``director_in_front(web_port)``: a director on a free port; its port."""
    try:
        haproxy_binary()
    except OpsCommandFailed as exc:
        pytest.skip(f"{exc} (ops/install-system.sh installs it)")
    short = settings.replace(state_dir=tmp_path / "d")  # socket paths must stay short
    names = []

    def start(web_port: int) -> int:
        backend = director.Backend("web-1", "127.0.0.1", web_port)
        state = director.DirectorState("proxytest", free_port(), (backend,))
        director.start(short, state)
        names.append(state.name)
        return state.port

    yield start
    for name in names:
        director.stop(short, name, timeout=5)


def redirect_uri(base: str, headers: dict[str, str]) -> str:
    """Start a login with the provider, sending ``headers``; the redirect URI it is given."""
    scheme = headers.get("X-Forwarded-Proto", "http")
    with requests.Session() as browser:
        page = browser.get(f"{base}/auth/login", headers=headers, timeout=10).text
        token = CSRF.search(page).group(1)
        answer = browser.post(
            f"{base}/auth/oauth/oidc",
            data={"csrf_token": token},
            # As the browser that the claimed scheme would make it (Flask-WTF compares an
            # HTTPS request's Referer with the site's own address).
            headers={**headers, "Referer": f"{scheme}://{urlsplit(base).netloc}/auth/login"},
            allow_redirects=False,
            timeout=10,
        )
    assert answer.status_code == 302, answer.text
    return parse_qs(urlsplit(answer.headers["Location"]).query)["redirect_uri"][0]


def test_gunicorn_believes_no_forwarded_header_from_a_direct_client(serve_oidc_web):
    port = serve_oidc_web(proxy_count=0)
    base = f"http://127.0.0.1:{port}"
    assert redirect_uri(base, SPOOFED) == f"{base}/auth/oauth/oidc/authorized"


def test_the_director_sets_the_scheme_and_the_site_believes_one_hop(
    serve_oidc_web, director_in_front
):
    web_port = serve_oidc_web(proxy_count=1)
    base = f"http://127.0.0.1:{director_in_front(web_port)}"
    assert redirect_uri(base, SPOOFED) == f"{base}/auth/oauth/oidc/authorized"
    assert redirect_uri(base, {}) == f"{base}/auth/oauth/oidc/authorized"
