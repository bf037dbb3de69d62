"""Wire authentication into an app: sessions and tokens, the login routes, rate limits."""

from __future__ import annotations

from flask import Flask

from movierec.config import Settings
from movierec.web.auth import limits, oauth, password, sessions


def init_app(app: Flask, settings: Settings) -> None:
    """Raises :class:`ConfigError` for malformed rate limits."""
    sessions.init_app(app)
    password.init_app(app)
    oauth.init_app(app, settings)
    limits.init_app(app, settings)  # after the views it limits are registered
