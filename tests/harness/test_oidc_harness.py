"""Proves the login-test harness: a real OIDC provider, a real Chromium, and no movierec code.

A stand-in relying party (Flask + requests-oauthlib, authorization code + PKCE S256 + state)
runs on 127.0.0.1 in a thread; the browser signs in through the provider's own login and
consent pages and lands back on it. It is also a small model of what the real RP must check:
state (CSRF), the `iss` parameter (which provider answered), and PKCE.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
import requests
from flask import Flask, redirect, request, session
from markupsafe import escape
from oauthlib.oauth2 import WebApplicationClient
from oauthlib.oauth2.rfc6749.errors import MismatchingStateError
from requests_oauthlib import OAuth2Session
from support.oidc import OIDCClient, OIDCProvider, OIDCProviderError, start_oidc_provider
from werkzeug.serving import make_server

SCOPES = ["openid", "profile", "email"]


@dataclass
class Link:
    provider: OIDCProvider
    client: OIDCClient


class StandInRP:
    """A minimal relying party: /login/<name> starts a sign-in, /callback/<name> finishes it."""

    def __init__(self) -> None:
        self.links: dict[str, Link] = {}
        self.token_responses = 0
        self.app = self._make_app()
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.base_url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def redirect_uri(self, name: str) -> str:
        return f"{self.base_url}/callback/{name}"

    def link(self, name: str, provider: OIDCProvider, client: OIDCClient) -> None:
        self.links[name] = Link(provider, client)

    def _count_token_response(self, response: requests.Response) -> requests.Response:
        self.token_responses += 1
        return response

    def _make_app(self) -> Flask:
        app = Flask("stand_in_rp")
        app.secret_key = "stand-in-rp-secret"

        @app.get("/login/<name>")
        def login(name: str):
            link = self.links[name]
            verifier = WebApplicationClient(link.client.client_id).create_code_verifier(64)
            challenge = WebApplicationClient(link.client.client_id).create_code_challenge(
                verifier, "S256"
            )
            oauth = OAuth2Session(
                link.client.client_id, redirect_uri=self.redirect_uri(name), scope=SCOPES
            )
            url, state = oauth.authorization_url(
                link.provider.authorization_endpoint,
                code_challenge=challenge,
                code_challenge_method="S256",
            )
            session[f"pending_{name}"] = {"state": state, "verifier": verifier}
            return redirect(url)

        @app.get("/callback/<name>")
        def callback(name: str):
            link = self.links[name]
            pending = session.pop(f"pending_{name}", None)  # one use only
            if pending is None:
                return "Refused: no sign-in in progress", 400
            if "error" in request.args:
                return f"Refused: provider said {escape(request.args['error'])}", 400
            # RFC 9207: the answer must come from the provider we sent the user to.
            if request.args.get("iss") != link.provider.issuer:
                return "Refused: wrong issuer", 400
            oauth = OAuth2Session(
                link.client.client_id, redirect_uri=self.redirect_uri(name), state=pending["state"]
            )
            oauth.register_compliance_hook("access_token_response", self._count_token_response)
            try:  # checks state BEFORE asking for a token
                oauth.fetch_token(
                    link.provider.token_endpoint,
                    authorization_response=request.url,
                    client_secret=link.client.client_secret,
                    code_verifier=pending["verifier"],
                    timeout=10,
                )
            except MismatchingStateError:
                return "Refused: state mismatch", 403
            userinfo = oauth.get(link.provider.userinfo_endpoint, timeout=10)
            userinfo.raise_for_status()
            user = userinfo.json()
            session.setdefault("identities", {})[name] = user
            session.modified = True
            return redirect("/")

        @app.get("/")
        def home():
            rows = "".join(
                f'<li id="{escape(n)}">{escape(n)}: {escape(u["name"])} '
                f"&lt;{escape(u['email'])}&gt; sub={escape(u['sub'])}</li>"
                for n, u in sorted(session.get("identities", {}).items())
            )
            return f"<h1>Stand-in RP</h1><ul>{rows}</ul>"

        return app

    def __enter__(self) -> StandInRP:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def rp(monkeypatch: pytest.MonkeyPatch) -> Iterator[StandInRP]:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # plain HTTP on loopback, tests only
    with StandInRP() as stand_in:
        yield stand_in


def sign_in(page, rp: StandInRP, name: str, login: str) -> None:
    """Drive the provider's dev login and consent pages, as a person would."""
    provider = rp.links[name].provider
    page.goto(f"{rp.base_url}/login/{name}")
    page.wait_for_url(f"{provider.issuer}/interaction/**")
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", "any password at all")
    page.click("button:has-text('Sign-in')")
    page.wait_for_url(f"{provider.issuer}/interaction/**")
    assert "Authorize" in page.inner_text("h1")
    page.click("button:has-text('Continue')")


def test_browser_signs_in_through_real_provider(page, oidc_provider_factory, rp):
    client = OIDCClient("stand-in-rp", "rp-secret", [rp.redirect_uri("op")])
    rp.link("op", oidc_provider_factory(clients=[client]), client)

    sign_in(page, rp, "op", "alice")

    page.wait_for_url(f"{rp.base_url}/")
    assert page.inner_text("#op") == "op: Test alice <alice@example.test> sub=alice"
    assert rp.token_responses == 1


def test_two_providers_link_in_one_browser_session(page, oidc_provider_factory, rp):
    """Two provider processes on two ports; the second also holds a second client."""
    first = OIDCClient("rp-at-first", "secret-1", [rp.redirect_uri("first")])
    other = OIDCClient("someone-else", None, ["http://127.0.0.1:9/elsewhere"])
    second = OIDCClient("rp-at-second", "secret-2", [rp.redirect_uri("second")])
    op1 = oidc_provider_factory(clients=[first])
    op2 = oidc_provider_factory(clients=[other, second])
    assert op1.issuer != op2.issuer
    rp.link("first", op1, first)
    rp.link("second", op2, second)

    sign_in(page, rp, "first", "alice")
    page.wait_for_url(f"{rp.base_url}/")
    sign_in(page, rp, "second", "alice.other")
    page.wait_for_url(f"{rp.base_url}/")

    assert page.inner_text("#first") == "first: Test alice <alice@example.test> sub=alice"
    assert page.inner_text("#second") == (
        "second: Test alice.other <alice.other@example.test> sub=alice.other"
    )


def test_tampered_state_is_refused(page, oidc_provider_factory, rp):
    """The state that comes back to /callback is not the one in the RP's session: refused."""
    client = OIDCClient("stand-in-rp", "rp-secret", [rp.redirect_uri("op")])
    rp.link("op", oidc_provider_factory(clients=[client]), client)

    def forge_state(route):  # rewrite the state in the RP's redirect to the provider
        response = route.fetch(max_redirects=0)
        location = urlsplit(response.headers["location"])
        params = dict(parse_qsl(location.query))
        params["state"] = "forged-" + params["state"]
        forged = urlunsplit(location._replace(query=urlencode(params)))
        route.fulfill(response=response, headers={**response.headers, "location": forged})

    page.route(f"{rp.base_url}/login/op", forge_state)
    callback = re.compile(re.escape(rp.redirect_uri("op")) + r"\?.*")
    with page.expect_response(callback) as answer:
        sign_in(page, rp, "op", "mallory")

    assert "state=forged-" in answer.value.url
    assert answer.value.status == 403
    assert page.inner_text("body") == "Refused: state mismatch"
    assert rp.token_responses == 0  # the code was never exchanged


def test_pkce_is_required_for_confidential_clients(oidc_provider_factory):
    client = OIDCClient("rp", "secret", ["http://127.0.0.1:9/callback"])
    op = oidc_provider_factory(clients=[client])
    response = requests.get(
        op.authorization_endpoint,
        params={
            "client_id": "rp",
            "response_type": "code",
            "scope": "openid",
            "redirect_uri": "http://127.0.0.1:9/callback",
        },
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 303
    answer = dict(parse_qsl(urlsplit(response.headers["location"]).query))
    assert answer["error"] == "invalid_request"
    assert "requires PKCE" in answer["error_description"]


def test_provider_failure_shows_its_output():
    with pytest.raises(OIDCProviderError, match="no clients"):
        start_oidc_provider(clients=[])


def test_missing_npm_packages_fail_clearly(tmp_path):
    with pytest.raises(OIDCProviderError, match="run `make test`"):
        start_oidc_provider(clients=[], provider_dir=tmp_path)
