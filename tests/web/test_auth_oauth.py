"""OAuth logins without a browser: which providers show, discovery failures, the start of a
sign-in (state, PKCE, nonce), callbacks that must be refused, and the profile checks."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select

from movierec.db import User
from movierec.db.schema import OAuthToken
from movierec.web.auth.providers import (
    Endpoints,
    ProviderConfig,
    ProviderError,
    _check_id_token,
    fetch_profile,
)

CALLBACK = "/auth/oauth/oidc/authorized"


def buttons(client) -> list[str]:
    """The providers the login page offers."""
    page = client.get("/auth/login").get_data(as_text=True)
    return re.findall(r'<button type="submit" class="provider">Log in with ([^<]+)</button>', page)


def start(client, helpers, path="/auth/oauth/oidc", **args):
    """Begin a sign-in as the login page's button does; the provider's authorize URL."""
    token = helpers.csrf_token(client, "/auth/login")
    response = client.post(path, query_string=args, data={"csrf_token": token})
    assert response.status_code == 302
    return urlsplit(response.headers["Location"])


def test_only_configured_providers_are_offered(make_app, providers):
    assert buttons(make_app().test_client()) == []
    only_oidc = {k: v for k, v in providers.config.items() if not k.startswith("google")}
    assert buttons(make_app(**only_oidc).test_client()) == ["Test OP"]
    assert buttons(make_app(**providers.config).test_client()) == ["Google", "Test OP"]
    github = make_app(github_client_id="id", github_client_secret="secret").test_client()
    assert buttons(github) == ["GitHub"]  # fixed endpoints: no discovery
    assert buttons(make_app(github_client_id="id").test_client()) == []  # no secret: off


def test_a_provider_whose_discovery_fails_is_hidden_and_logged(make_app, dead_url, caplog):
    app = make_app(oidc_issuer=dead_url, oidc_client_id="c", oidc_client_secret="s")
    client = app.test_client()
    with caplog.at_level(logging.WARNING, logger="movierec.web.auth.providers"):
        began = time.monotonic()
        assert client.get("/auth/login").status_code == 200
        assert buttons(client) == []
    assert time.monotonic() - began < 5
    assert "login provider oidc hidden" in caplog.text
    assert caplog.text.count("hidden") == 1  # not retried on every page
    answer = client.post("/auth/oauth/oidc", follow_redirects=True)
    assert "not available right now" in answer.get_data(as_text=True)


def test_discovery_naming_another_issuer_hides_the_provider(make_app, providers, caplog):
    impostor = providers.oidc.issuer.replace("127.0.0.1", "localhost")
    client = make_app(
        oidc_issuer=impostor, oidc_client_id="movierec-oidc", oidc_client_secret="op-secret"
    ).test_client()
    with caplog.at_level(logging.WARNING, logger="movierec.web.auth.providers"):
        assert buttons(client) == []
    assert "names issuer" in caplog.text


def test_login_page_lets_its_forms_go_to_the_providers(oauth_app, providers):
    csp = oauth_app.test_client().get("/auth/login").headers["Content-Security-Policy"]
    form_action = csp.split("form-action")[1]
    sources = form_action.split()
    assert sources[0] == "'self'"
    assert sorted(sources[1:]) == sorted([providers.oidc.issuer, providers.google.issuer])


def test_a_sign_in_starts_with_a_post_and_sends_state_pkce_and_nonce(oauth_app, helpers):
    client = oauth_app.test_client()
    assert client.get("/auth/oauth/oidc").status_code == 405
    assert client.post("/auth/oauth/oidc").status_code == 400  # no CSRF token

    url = start(client, helpers)
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    with client.session_transaction() as session:
        pending = session["oauth_pending_oidc"]
    assert query["state"] == pending["state"] and len(pending["state"]) >= 32
    assert query["nonce"] == pending["nonce"]
    assert query["code_challenge_method"] == "S256"
    verifier = pending["verifier"].encode()
    expected = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=")
    assert query["code_challenge"] == expected.decode()
    assert "verifier" not in url.query and pending["verifier"] not in url.query
    assert query["redirect_uri"] == "http://localhost" + CALLBACK
    assert query["scope"].split() == ["openid", "profile", "email"]


def test_next_survives_a_sign_in_only_when_it_stays_on_the_site(oauth_app, helpers):
    client = oauth_app.test_client()
    for target, kept in (("/movies/2", "/movies/2"), ("//evil.example", None)):
        start(client, helpers, next=target)
        with client.session_transaction() as session:
            assert session["oauth_pending_oidc"]["next"] == kept


def test_a_callback_without_a_sign_in_in_progress_is_refused(oauth_app, helpers, database):
    client = oauth_app.test_client()
    response = client.get(CALLBACK, query_string={"code": "abc", "state": "xyz"})
    assert response.status_code == 400
    assert "already used or has expired" in response.get_data(as_text=True)
    # A sign-in left at the provider for too long has expired too.
    state = parse_qs(start(client, helpers).query)["state"][0]
    with client.session_transaction() as session:
        session["oauth_pending_oidc"] = {**session["oauth_pending_oidc"], "started": 0}
    response = client.get(CALLBACK, query_string={"code": "abc", "state": state})
    assert response.status_code == 400
    with database.session() as s:
        assert s.scalar(select(func.count()).select_from(User)) == 0


TAMPERED = (
    ({"state": "forged"}, 403, "not for a sign-in started here"),
    ({"iss": "http://127.0.0.1:9"}, 403, "did not come from Test OP"),
    ({"iss": None}, 403, "did not come from Test OP"),
    ({"code": "made-up"}, 403, "did not confirm this sign-in"),  # the provider says no
)


def test_tampered_callbacks_are_refused(oauth_app, helpers, providers, database):
    client = oauth_app.test_client()
    for change, status, message in TAMPERED:
        url = start(client, helpers)
        state = parse_qs(url.query)["state"][0]
        answer = {"code": "x", "state": state, "iss": providers.oidc.issuer, **change}
        response = client.get(CALLBACK, query_string={k: v for k, v in answer.items() if v})
        assert response.status_code == status, change
        assert message in response.get_data(as_text=True), change
        # The sign-in is used up: the right answer now comes too late.
        again = client.get(CALLBACK, query_string={"code": "x", "state": state})
        assert again.status_code == 400, change
    with database.session() as s:
        assert s.scalar(select(func.count()).select_from(OAuthToken)) == 0
        assert s.scalar(select(func.count()).select_from(User)) == 0


def test_a_cancelled_sign_in_goes_back_to_the_login_page(oauth_app, helpers, providers):
    client = oauth_app.test_client()
    state = parse_qs(start(client, helpers).query)["state"][0]
    response = client.get(
        CALLBACK,
        query_string={"error": "access_denied", "state": state, "iss": providers.oidc.issuer},
        follow_redirects=True,
    )
    assert response.request.path == "/auth/login"
    assert "Logging in with Test OP was cancelled." in response.get_data(as_text=True)


# --- the profile and the ID token ------------------------------------------------------------

OIDC = ProviderConfig("oidc", "Test OP", "rp", "secret", ("openid",), issuer="https://op")
ENDPOINTS = Endpoints("https://op/auth", "https://op/token", "https://op/me", "https://op")


def id_token(**claims) -> str:
    body = {"iss": "https://op", "aud": "rp", "sub": "s-1", "nonce": "n", "exp": time.time() + 60}
    body.update(claims)
    encoded = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJSUzI1NiJ9.{encoded}.c2ln"


def test_an_id_token_that_matches_passes():
    _check_id_token(id_token(), OIDC, ENDPOINTS, "n", "s-1")
    _check_id_token(id_token(aud=["other", "rp"], azp="rp"), OIDC, ENDPOINTS, "n", "s-1")


@pytest.mark.parametrize(
    ("claims", "wrong"),
    [
        ({"iss": "https://evil"}, "issuer"),
        ({"aud": "another-client"}, "audience"),
        ({"aud": ["rp", "x"], "azp": "x"}, "authorized party"),
        ({"exp": time.time() - 3600}, "expiry"),
        ({"nonce": "replayed"}, "nonce"),
        ({"sub": "someone-else"}, "subject"),
    ],
)
def test_an_id_token_that_does_not_match_is_refused(claims, wrong):
    with pytest.raises(ProviderError, match=wrong):
        _check_id_token(id_token(**claims), OIDC, ENDPOINTS, "n", "s-1")


class FakeClient:
    """Answers GETs from a dict of URL -> JSON, as the provider would."""

    def __init__(self, answers):
        self.answers = answers

    def get(self, url, **_kwargs):
        answer = self.answers[url]

        class Response:
            def raise_for_status(self):
                return None

            def json(self):
                return answer

        return Response()


def test_userinfo_is_the_identity_and_must_agree_with_the_id_token():
    client = FakeClient({"https://op/me": {"sub": "s-1", "name": "Ann", "email": "a@x.test"}})
    profile = fetch_profile(OIDC, ENDPOINTS, client, {"id_token": id_token()}, "n")
    assert (profile.subject, profile.name, profile.email) == ("s-1", "Ann", "a@x.test")
    assert profile.verified_email is None  # email_verified was not true
    with pytest.raises(ProviderError, match="subject"):
        fetch_profile(OIDC, ENDPOINTS, client, {"id_token": id_token(sub="s-2")}, "n")
    with pytest.raises(ProviderError, match="no ID token"):
        fetch_profile(OIDC, ENDPOINTS, client, {"access_token": "t"}, "n")


def test_github_profiles_use_the_numeric_id_and_the_primary_verified_email():
    github = ProviderConfig("github", "GitHub", "id", "s", ("read:user",), None, "a", "t")
    client = FakeClient(
        {
            "https://api.github.com/user": {"id": 42, "login": "octo", "name": None},
            "https://api.github.com/user/emails": [
                {"email": "old@x.test", "primary": False, "verified": True},
                {"email": "Octo@X.test", "primary": True, "verified": True},
            ],
        }
    )
    profile = fetch_profile(github, ENDPOINTS, client, {"access_token": "t"}, "")
    assert (profile.subject, profile.username_hint) == ("42", "octo")
    assert profile.verified_email == "octo@x.test"
