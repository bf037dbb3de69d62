"""Log in with GitHub, Google or an OpenID Connect provider: flask-dance blueprints.

Routes, per configured provider ``<name>`` (github, google, oidc):

``POST /auth/oauth/<name>``
    Start: log in, or (when logged in) link the provider to the account. A POST with the CSRF
    token, so that no other site can start one in the user's name.
``GET /auth/oauth/<name>/authorized``
    The redirect URI to register at the provider.

:class:`ProviderBlueprint` is flask-dance's OAuth 2 blueprint with its two views made stricter
and safe for threaded workers (gunicorn gthread): flask-dance keeps the provider session on the
blueprint object, shared by all threads, and stores PKCE parameters on it per login (see its
issue #430); here they live in ``flask.g`` and in the user's session. A callback is refused
unless it carries the state of the sign-in this browser started (single use: a replayed callback
finds none), the provider's ``iss`` when it sends one (RFC 9207), and a code the provider
redeems for this client with the PKCE verifier (S256) kept in the user's session. Tokens are
kept with flask-dance's SQLAlchemy storage (:class:`TokenStorage`, table ``oauth_tokens``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import flask
import requests
from flask import Flask, abort, current_app, flash, g, redirect, request, url_for
from flask_dance.consumer import OAuth2ConsumerBlueprint, oauth_authorized
from flask_dance.consumer.requests import OAuth2Session
from flask_dance.consumer.storage.sqla import SQLAlchemyStorage
from flask_login import current_user
from oauthlib.common import generate_token
from oauthlib.oauth2 import OAuth2Error
from werkzeug.wrappers import Response

from movierec.db.schema import OAuthToken
from movierec.errors import BadInput
from movierec.web.auth import linking
from movierec.web.auth.providers import (
    HTTP_TIMEOUT,
    Discovery,
    Endpoints,
    Profile,
    ProviderConfig,
    ProviderError,
    configured_providers,
    fetch_profile,
)
from movierec.web.auth.sessions import LOCKED, CurrentUser, safe_next, start_session
from movierec.web.db import commit, get_session

log = logging.getLogger(__name__)
EXTENSION = "movierec.oauth"
URL_PREFIX = "/auth/oauth"
AGAIN = "It was refused: start again from the login page."
PENDING_TTL = 15 * 60  # seconds a sign-in may take at the provider


@dataclass(frozen=True)
class ProviderLink:
    """A provider as the login and account pages show it."""

    name: str
    title: str
    endpoint: str


class _RequestSession:
    """The request's database session, as flask-dance's storage sees it.

    The storage commits after each write; here the view commits instead, so that an account,
    its identity and its token are stored together or not at all.
    """

    def query(self, *entities: Any) -> Any:
        return get_session().query(*entities)

    def add(self, instance: object) -> None:
        get_session().add(instance)

    def commit(self) -> None:
        get_session().flush()


class TokenStorage(SQLAlchemyStorage):
    """flask-dance's SQLAlchemy storage: one token per user and provider, in ``oauth_tokens``.

    Without an explicit ``user_id`` it acts for the logged-in user.
    """

    def __init__(self) -> None:
        super().__init__(OAuthToken, _RequestSession(), user_required=True)

    def get(self, blueprint: Any, user: Any = None, user_id: int | None = None) -> Any:
        return super().get(blueprint, user_id=user_id or _current_user_id())

    def set(self, blueprint: Any, token: Any, user: Any = None, user_id: int | None = None) -> None:
        super().set(blueprint, dict(token), user_id=user_id or _current_user_id())

    def delete(self, blueprint: Any, user: Any = None, user_id: int | None = None) -> None:
        super().delete(blueprint, user_id=user_id or _current_user_id())


def _current_user_id() -> int | None:
    return current_user.id if current_user.is_authenticated else None


class ProviderBlueprint(OAuth2ConsumerBlueprint):
    """One provider's login routes (see the module's docstring)."""

    def __init__(self, config: ProviderConfig, discovery: Discovery):
        super().__init__(
            config.name,
            __name__,
            client_id=config.client_id,
            client_secret=config.client_secret,
            scope=list(config.scope),
            url_prefix=URL_PREFIX,
            login_url="/{bp.name}",
            authorized_url="/{bp.name}/authorized",
            rule_kwargs={"methods": ["GET", "POST"]},
            storage=TokenStorage(),
            use_pkce=True,
        )
        self.provider = config
        self.discovery = discovery
        self.pending_key = f"oauth_pending_{config.name}"

    @property
    def session(self) -> OAuth2Session:  # type: ignore[override]
        """This request's client session with the provider (never shared between threads)."""
        key = f"flask_dance_{self.name}"
        found = g.get(key)
        if found is None:
            found = self.session_class(
                client_id=self._client_id, scope=self.scope, blueprint=self, **self.kwargs
            )
            setattr(g, key, found)
        return cast(OAuth2Session, found)

    def teardown_session(self, exception: BaseException | None = None) -> None:
        found = g.pop(f"flask_dance_{self.name}", None)
        if found is not None:
            found.close()

    def login(self) -> Response:
        """Send the browser to the provider, remembering what to check when it comes back."""
        if request.method != "POST":
            abort(405)
        endpoints = self.discovery.endpoints()
        if endpoints is None:
            flash(f"Logging in with {self.provider.title} is not available right now.", "error")
            return redirect(url_for("auth.login"))
        pending = {
            "state": generate_token(32),
            "verifier": generate_token(64),
            "nonce": generate_token(32),
            "next": safe_next(request.args.get("next")),
            "link_to": _current_user_id(),
            "started": int(time.time()),
        }
        params = dict(self.authorization_url_params)
        params["code_challenge"] = _s256(pending["verifier"])
        params["code_challenge_method"] = "S256"
        if self.provider.issuer:
            params["nonce"] = pending["nonce"]
        client = self.session
        client.redirect_uri = url_for(".authorized", _external=True)
        url, _state = client.authorization_url(
            endpoints.authorization_url, state=pending["state"], **params
        )
        flask.session[self.pending_key] = pending
        return redirect(url)

    def authorized(self) -> Response:
        """The provider sent the browser back: check everything, then log in or link."""
        if request.method != "GET":
            abort(405)
        title = self.provider.title
        # Popped whatever happens next: a callback is good for one try only.
        pending = flask.session.pop(self.pending_key, None)
        if not isinstance(pending, dict) or time.time() - pending["started"] > PENDING_TTL:
            abort(400, description=f"This {title} sign-in was already used or has expired. {AGAIN}")
        if "error" in request.args:
            log.info("%s sign-in ended with error %r", self.name, request.args.get("error"))
            flash(f"Logging in with {title} was cancelled.", "error")
            return redirect(url_for("auth.login"))
        if not hmac.compare_digest(request.args.get("state", ""), str(pending["state"])):
            log.warning("%s callback refused: state does not match", self.name)
            abort(
                403, description=f"This {title} answer is not for a sign-in started here. {AGAIN}"
            )
        endpoints = self.discovery.endpoints()
        if endpoints is None:
            abort(503, description=f"{title} cannot be reached right now.")
        sent_iss = request.args.get("iss")
        if (endpoints.sends_iss or sent_iss is not None) and sent_iss != endpoints.issuer:
            log.warning("%s callback refused: iss %r", self.name, sent_iss)
            abort(403, description=f"This answer did not come from {title}, so it was refused.")
        token = self._redeem(endpoints, pending)
        try:
            profile = fetch_profile(
                self.provider, endpoints, self.session, token, str(pending["nonce"])
            )
        except ProviderError as exc:
            log.warning("%s sign-in refused: %s", self.name, exc)
            abort(502, description=f"{title} did not tell us who you are; please try again.")
        for _receiver, answer in oauth_authorized.send(
            self, token=token, profile=profile, pending=pending
        ):
            if isinstance(answer, Response | current_app.response_class):
                return answer
        return redirect(url_for("movies.index"))

    def _redeem(self, endpoints: Endpoints, pending: Mapping[str, Any]) -> dict[str, Any]:
        """Exchange the code (with the PKCE verifier) for the provider's token."""
        client = self.session
        client.redirect_uri = url_for(".authorized", _external=True)
        client._state = pending["state"]  # oauthlib checks the state again
        try:
            return dict(
                client.fetch_token(
                    endpoints.token_url,
                    authorization_response=request.url,
                    client_secret=self.client_secret,
                    code_verifier=pending["verifier"],
                    timeout=HTTP_TIMEOUT,
                )
            )
        except Warning as changed:  # oauthlib: granted scopes differ (GitHub lists them with ",")
            token = getattr(changed, "token", None)
            if token is None:
                raise
            client.token = token
            return dict(token)
        except (OAuth2Error, requests.RequestException, ValueError) as exc:
            log.warning("%s token exchange refused: %s", self.name, exc)
            abort(403, description=f"{self.provider.title} did not confirm this sign-in. {AGAIN}")


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def finish_login(
    blueprint: ProviderBlueprint,
    token: dict[str, Any],
    profile: Profile,
    pending: Mapping[str, Any],
) -> Response:
    """What a checked callback does: link, log in, or create an account (oauth_authorized)."""
    db, name, title = get_session(), blueprint.name, blueprint.provider.title
    if pending.get("link_to") is not None:
        if _current_user_id() != pending["link_to"]:
            abort(403, description=f"You are no longer logged in as the account to link. {AGAIN}")
        try:
            linking.link(db, current_user.id, name, profile)
        except BadInput as exc:
            flash(str(exc), "error")
            return redirect(url_for("account.index"))
        blueprint.storage.set(blueprint, token, user_id=current_user.id)
        commit()
        flash(f"{title} is linked: you can log in with it from now on.", "info")
        return redirect(url_for("account.index"))
    user = linking.identity_owner(db, name, profile.subject)
    if user is None:
        email = profile.verified_email
        if email and linking.account_with_email(db, email) is not None:
            # Never a silent takeover: the owner must prove they own the account first.
            flash(
                f"An account with the email address {email} exists already. If it is yours, "
                f"log in to it, then link {title} on your account page.",
                "error",
            )
            return redirect(url_for("auth.login"))
        user = linking.create_account(db, name, profile)
        welcome = f"Welcome, {user.display_name or user.username}! Your account is ready."
    else:
        welcome = None
        if user.locked_at is not None:  # movierec users lock: no way in, OAuth neither
            flash(LOCKED, "error")
            return redirect(url_for("auth.login"))
    blueprint.storage.set(blueprint, token, user_id=user.id)
    signed_in = CurrentUser.of(user)
    commit()
    start_session(signed_in)
    if welcome:  # a new account: the first visit's two steps
        flash(welcome, "info")
        return redirect(url_for("onboarding.genres"))
    return redirect(pending.get("next") or url_for("movies.index"))


def init_app(app: Flask, settings: Any) -> None:
    """Register a blueprint for each configured provider (no network traffic here)."""
    blueprints: dict[str, ProviderBlueprint] = {}
    for config in configured_providers(settings):
        blueprint = ProviderBlueprint(config, Discovery(config))
        oauth_authorized.connect_via(blueprint)(finish_login)
        app.register_blueprint(blueprint)
        blueprints[config.name] = blueprint
    app.extensions[EXTENSION] = blueprints


def blueprints() -> dict[str, ProviderBlueprint]:
    return cast("dict[str, ProviderBlueprint]", current_app.extensions.get(EXTENSION, {}))


def available_providers() -> list[ProviderLink]:
    """The configured providers that can be used now (may run discovery, briefly)."""
    return [
        ProviderLink(bp.name, bp.provider.title, f"{bp.name}.login")
        for bp in blueprints().values()
        if bp.discovery.endpoints() is not None
    ]


def provider_title(name: str) -> str:
    found = blueprints().get(name)
    return found.provider.title if found else name


def form_action_sources() -> list[str]:
    """Origins the login forms redirect to (CSP form-action also covers redirects)."""
    origins = []
    for bp in blueprints().values():
        known = bp.discovery.known()
        if known is not None:
            parts = urlsplit(known.authorization_url)
            origins.append(f"{parts.scheme}://{parts.netloc}")
    return sorted(set(origins))
