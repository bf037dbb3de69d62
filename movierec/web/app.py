"""The application factory: ``gunicorn "movierec.web:create_app()"``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask
from flask_wtf import CSRFProtect
from werkzeug.wrappers import Response

from movierec.config import Settings, load_settings
from movierec.db import Database
from movierec.web import (
    account,
    api,
    auth,
    db,
    errors,
    health,
    movies,
    picks,
    popular,
    ratings,
    recommendations,
)
from movierec.web.ai_client import AIClient

SETTINGS = "movierec.settings"
csrf = CSRFProtect()
# Pages use no inline script or style and load nothing from other sites.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def create_app(test_config: Settings | Mapping[str, Any] | None = None) -> Flask:
    """The movierec site.

    ``test_config`` is a :class:`Settings`, or a mapping: lower-case keys override settings,
    upper-case keys are Flask config (e.g. ``WTF_CSRF_ENABLED``). Without it, settings come from
    :func:`load_settings`. Set ``extra.session_cookie_secure`` when the site is served over
    HTTPS. Raises :class:`ConfigError` for missing or malformed settings.
    """
    settings, flask_config = _split_config(test_config)
    settings.require("database_url", "secret_key")
    app = Flask(__name__)
    app.config.from_mapping(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=bool(settings.extra.get("session_cookie_secure", False)),
        MAX_CONTENT_LENGTH=64 * 1024,
    )
    app.config.update(flask_config)
    app.extensions[SETTINGS] = settings
    db.init_app(app, Database(settings))
    app.extensions[picks.EXTENSION] = AIClient(settings.ai_urls, settings.ai_timeout)
    popular.init_app(app)
    csrf.init_app(app)
    auth.init_app(app)
    for blueprint in (movies.bp, ratings.bp, recommendations.bp, account.bp, api.bp, health.bp):
        app.register_blueprint(blueprint)
    errors.init_app(app)
    app.after_request(_security_headers)
    return app


def close_app(app: Flask) -> None:
    """Release the app's database connections and HTTP connections (tests, shutdown)."""
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
    return response
