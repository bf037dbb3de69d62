"""The login providers: which are configured, where their endpoints are, who signed in there.

GitHub has fixed endpoints and a REST profile. Google and the generic OpenID Connect provider
are found by discovery (``<issuer>/.well-known/openid-configuration``), fetched on first use
with a short timeout; a provider whose discovery fails is left off the login page, logged, and
tried again after :data:`RETRY_AFTER` seconds. Nothing here ever stops the site from starting.

Identity comes from the userinfo endpoint (GitHub: its /user API), called with the access token
this server just received from the provider's token endpoint. The ID token is not what identity
is taken from: flask-dance does not validate it, and validating it properly means fetching and
caching the provider's signing keys (JWKS) for no extra assurance here, because in the
authorization code flow the tokens come straight from the token endpoint over TLS, in exchange
for a code bound to this client (its secret) and to this browser (state, PKCE). When an ID token
comes along anyway, its claims are still checked against what we expect (issuer, audience,
expiry, our nonce, and the same ``sub`` as userinfo, as OpenID Connect Core 5.3.2 requires); the
signature check is replaced by that TLS exchange, as Core 3.1.3.7 allows for this flow.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests

from movierec.config import Settings
from movierec.errors import MovierecError

log = logging.getLogger(__name__)
DISCOVERY_TIMEOUT = 3.0  # seconds; the login page waits for it once
HTTP_TIMEOUT = 10.0  # token and profile calls
RETRY_AFTER = 60.0  # seconds a failed discovery hides its provider
CLOCK_SKEW = 120  # seconds of leeway on the ID token's times
OIDC_SCOPE = ("openid", "profile", "email")
GITHUB_API = "https://api.github.com/"


class ProviderError(MovierecError):
    """A provider could not be used: discovery, the token exchange or the profile failed, or
    what it sent does not add up. The message is safe to show."""


@dataclass(frozen=True)
class ProviderConfig:
    """One configured provider. ``name`` is its blueprint name and ``identities.provider``."""

    name: str
    title: str
    client_id: str
    client_secret: str
    scope: tuple[str, ...]
    issuer: str | None = None  # OpenID Connect: endpoints are discovered from here
    authorization_url: str | None = None  # fixed endpoints (GitHub)
    token_url: str | None = None


@dataclass(frozen=True)
class Endpoints:
    authorization_url: str
    token_url: str
    userinfo_url: str | None
    issuer: str | None = None
    # RFC 9207: the provider names itself in its answer (defeats mix-up attacks).
    sends_iss: bool = False


@dataclass(frozen=True)
class Profile:
    """Who signed in at the provider."""

    subject: str
    name: str | None
    username_hint: str | None
    email: str | None
    email_verified: bool

    @property
    def verified_email(self) -> str | None:
        return self.email.lower() if self.email and self.email_verified else None


def configured_providers(settings: Settings) -> list[ProviderConfig]:
    """The providers whose client id and secret are set, in login-page order."""
    found = []
    if settings.github_client_id and settings.github_client_secret:
        found.append(
            ProviderConfig(
                "github",
                "GitHub",
                settings.github_client_id,
                settings.github_client_secret,
                ("read:user", "user:email"),
                authorization_url="https://github.com/login/oauth/authorize",
                token_url="https://github.com/login/oauth/access_token",
            )
        )
    if settings.google_client_id and settings.google_client_secret:
        found.append(
            ProviderConfig(
                "google",
                "Google",
                settings.google_client_id,
                settings.google_client_secret,
                OIDC_SCOPE,
                issuer=settings.google_issuer.rstrip("/"),
            )
        )
    if settings.oidc_issuer and settings.oidc_client_id and settings.oidc_client_secret:
        found.append(
            ProviderConfig(
                "oidc",
                settings.oidc_title,
                settings.oidc_client_id,
                settings.oidc_client_secret,
                OIDC_SCOPE,
                issuer=settings.oidc_issuer.rstrip("/"),
            )
        )
    return found


class Discovery:
    """A provider's endpoints: fixed, or discovered on first use (thread-safe, cached)."""

    def __init__(self, config: ProviderConfig, timeout: float = DISCOVERY_TIMEOUT):
        self.config = config
        self.timeout = timeout
        self._lock = threading.Lock()
        self._endpoints: Endpoints | None = None
        self._failed_at: float | None = None
        if config.issuer is None:
            assert config.authorization_url and config.token_url
            self._endpoints = Endpoints(config.authorization_url, config.token_url, None)

    def known(self) -> Endpoints | None:
        """The endpoints if already known; never fetches."""
        return self._endpoints

    def endpoints(self) -> Endpoints | None:
        """The endpoints, or None while the provider is unavailable (the failure is logged)."""
        if self._endpoints is not None:
            return self._endpoints
        with self._lock:
            if self._endpoints is not None:
                return self._endpoints
            if self._failed_at is not None and time.monotonic() - self._failed_at < RETRY_AFTER:
                return None
            try:
                self._endpoints = self._discover()
            except ProviderError as exc:
                self._failed_at = time.monotonic()
                log.warning(
                    "login provider %s hidden for %.0f s: %s", self.config.name, RETRY_AFTER, exc
                )
                return None
            return self._endpoints

    def _discover(self) -> Endpoints:
        issuer = self.config.issuer
        url = f"{issuer}/.well-known/openid-configuration"
        try:
            response = requests.get(url, timeout=self.timeout)
            response.raise_for_status()
            meta = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise ProviderError(f"discovery at {url} failed: {exc}") from exc
        if not isinstance(meta, dict):
            raise ProviderError(f"discovery at {url} did not answer a JSON object")
        # OpenID Connect Discovery 4.3: the document must name the issuer it was fetched for.
        if meta.get("issuer") != issuer:
            raise ProviderError(f"{url} names issuer {meta.get('issuer')!r}, not {issuer!r}")
        missing = [
            key
            for key in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint")
            if not isinstance(meta.get(key), str)
        ]
        if missing:
            raise ProviderError(f"{url} lacks {', '.join(missing)}")
        return Endpoints(
            meta["authorization_endpoint"],
            meta["token_endpoint"],
            meta["userinfo_endpoint"],
            issuer,
            bool(meta.get("authorization_response_iss_parameter_supported")),
        )


def fetch_profile(
    config: ProviderConfig,
    endpoints: Endpoints,
    client: requests.Session,
    token: Mapping[str, Any],
    nonce: str,
) -> Profile:
    """Who the token belongs to, asked of the provider with ``client`` (which sends the token).

    Raises :class:`ProviderError` when the provider does not answer or the answer is wrong.
    """
    if config.name == "github":
        return _github_profile(client)
    info = _get_json(client, str(endpoints.userinfo_url))
    subject = info.get("sub")
    if not isinstance(subject, str) or not subject:
        raise ProviderError("the provider's userinfo has no subject")
    if "id_token" not in token:
        raise ProviderError("the provider sent no ID token")
    _check_id_token(str(token["id_token"]), config, endpoints, nonce, subject)
    return Profile(
        subject=subject,
        name=_text(info.get("name")),
        username_hint=_text(info.get("preferred_username")) or _text(info.get("nickname")),
        email=_text(info.get("email")),
        email_verified=info.get("email_verified") is True,
    )


def _github_profile(client: requests.Session) -> Profile:
    user = _get_json(client, GITHUB_API + "user")
    if not isinstance(user.get("id"), int):
        raise ProviderError("GitHub's profile has no id")
    email, verified = None, False
    emails = _get_json(client, GITHUB_API + "user/emails", expect=list)
    for entry in emails:
        if isinstance(entry, dict) and entry.get("primary"):
            email, verified = _text(entry.get("email")), entry.get("verified") is True
    return Profile(
        subject=str(user["id"]),
        name=_text(user.get("name")),
        username_hint=_text(user.get("login")),
        email=email,
        email_verified=verified,
    )


def _get_json(client: requests.Session, url: str, expect: type = dict) -> Any:
    try:
        response = client.get(url, timeout=HTTP_TIMEOUT, headers={"Accept": "application/json"})
        response.raise_for_status()
        data = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise ProviderError(f"the provider's profile could not be read ({exc})") from exc
    if not isinstance(data, expect):
        raise ProviderError("the provider's profile is not what was expected")
    return data


def _check_id_token(
    id_token: str, config: ProviderConfig, endpoints: Endpoints, nonce: str, subject: str
) -> None:
    try:
        payload = id_token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError) as exc:
        raise ProviderError("the provider's ID token is malformed") from exc
    if not isinstance(claims, dict):
        raise ProviderError("the provider's ID token is malformed")
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    expires = claims.get("exp")
    problems = {
        "issuer": claims.get("iss") != endpoints.issuer,
        "audience": config.client_id not in audiences,
        "authorized party": "azp" in claims and claims["azp"] != config.client_id,
        "expiry": not isinstance(expires, int | float) or expires < time.time() - CLOCK_SKEW,
        "nonce": claims.get("nonce") != nonce,
        "subject": claims.get("sub") != subject,
    }
    wrong = [name for name, bad in problems.items() if bad]
    if wrong:
        raise ProviderError(f"the provider's ID token does not match ({', '.join(wrong)})")


def _text(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None
