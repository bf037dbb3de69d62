"""The application factory: ``gunicorn "movierec.web:create_app()"``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from flask import Flask, current_app
from flask_wtf import CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response

from movierec.config import Settings, load_settings
from movierec.db import Database
from movierec.web import (
    account,
    admin,
    api,
    auth,
    cache,
    changes,
    dashboard,
    db,
    errors,
    health,
    impressions,
    metrics,
    movies,
    new_movies,
    onboarding,
    picks,
    popular,
    ratings,
    recommendations,
)
from movierec.web.ai_client import AIClient
from movierec.wire.params import IdConverter

SETTINGS = "movierec.settings"
csrf = CSRFProtect()
# Pages use no inline script or style and load nothing from other sites; forms post here only
# (and to the login providers, whose pages the OAuth start forms redirect to).
CSP = "default-src 'self'; frame-ancestors 'none'; form-action 'self'"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
HSTS = "max-age=31536000"


def create_app(test_config: Settings | Mapping[str, Any] | None = None) -> Flask:
    """The movierec site.

    ``test_config`` is a :class:`Settings`, or a mapping: lower-case keys override settings,
    upper-case keys are Flask config (e.g. ``WTF_CSRF_ENABLED``). Without it, settings come from
    :func:`load_settings`. Set ``web_secure_cookies`` when the site is served over HTTPS
    (``extra.session_cookie_secure`` still works), and ``web_proxy_count`` when it is behind
    proxies. Raises :class:`ConfigError` for missing or malformed settings.
    """
    settings, flask_config = _split_config(test_config)
    settings.require("database_url", "secret_key")
    secure = settings.web_secure_cookies or bool(settings.extra.get("session_cookie_secure"))
    app = Flask(__name__)
    app.config.from_mapping(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure,
        PREFERRED_URL_SCHEME="https" if secure else "http",
        # auth.sessions checks CSRF itself: Bearer-token API calls need no CSRF token.
        WTF_CSRF_CHECK_DEFAULT=False,
        MAX_CONTENT_LENGTH=64 * 1024,
        # Login sessions end after this long idle, and this long after the login (see
        # auth.sessions); Flask itself refuses a cookie signed longer ago than the lifetime.
        SESSION_IDLE_SECONDS=settings.session_idle_minutes * 60,
        SESSION_LIFETIME_SECONDS=settings.session_lifetime_hours * 3600,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.session_lifetime_hours),
    )
    app.config.update(flask_config)
    app.url_map.converters["id"] = IdConverter  # <id:...>: ids by the one input rule
    app.extensions[SETTINGS] = settings
    if settings.web_proxy_count:
        # The client's address and scheme as the proxies saw them (rate limits, redirect URIs).
        n = settings.web_proxy_count
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n)  # type: ignore[method-assign]
    metrics.init_app(app)  # first: its timer starts before the other request hooks
    db.init_app(app, Database(settings))
    impressions.init_app(app)
    app.extensions[picks.EXTENSION] = AIClient.from_settings(settings)
    cache.init_app(app, settings)
    changes.init_app(app, settings.database_url)
    popular.init_app(app)
    csrf.init_app(app)
    for blueprint in (movies.bp, ratings.bp, recommendations.bp, account.bp, api.bp, health.bp):
        app.register_blueprint(blueprint)
    app.register_blueprint(admin.bp)
    app.register_blueprint(dashboard.bp)
    onboarding.init_app(app)
    new_movies.init_app(app)
    auth.init_app(app, settings)
    errors.init_app(app)
    app.after_request(_security_headers)
    return app


def close_app(app: Flask) -> None:
    """Release the app's database connections (its change listener's too) and HTTP
    connections (tests, shutdown)."""
    changes.close(app)
    impressions.recorder(app).close()
    app.extensions[db.EXTENSION].dispose()
    app.extensions[picks.EXTENSION].close()


def _split_config(
    test_config: Settings | Mapping[str, Any] | None,
) -> tuple[Settings, dict[str, Any]]:
    if test_config is None:
        return load_settings(), {}
    if isinstance(test_config, Settings):
        return test_config, {}
    flask_config = {k: v for k, v in test_config.items() if k.isupper()}
    overrides = {k: v for k, v in test_config.items() if not k.isupper()}
    return load_settings(overrides=overrides), flask_config


def _security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers.setdefault("Content-Security-Policy", _csp())
    if current_app.config["SESSION_COOKIE_SECURE"]:
        response.headers.setdefault("Strict-Transport-Security", HSTS)
    return response


def _csp() -> str:
    providers = auth.form_action_sources()
    return f"{CSP} {' '.join(providers)}" if providers else CSP
