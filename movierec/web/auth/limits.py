"""Rate limits: sign-ups per IP (Flask-Limiter), and the login throttle
(:mod:`movierec.web.auth.throttle`, which counts before the password is checked).

Counters live in ``ratelimit_storage_uri``: ``memory://`` counts per worker process, so a
site with several workers or servers should point them all at one Redis
(``redis://host:6379``; ``movierec cluster up`` and the demo start one). Should that Redis
fail, each worker falls back to counting in memory. Behind a proxy set ``web_proxy_count`` so
that the client's IP, not the proxy's, is counted.
"""

from __future__ import annotations

from flask import Flask, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits import parse_many

from movierec.config import Settings
from movierec.errors import ConfigError
from movierec.web.auth.throttle import LoginThrottle

EXTENSION = "movierec.limiter"
THROTTLE = "movierec.login_throttle"
TOO_MANY = "Too many attempts. Wait a few minutes, then try again."


def init_app(app: Flask, settings: Settings) -> Limiter:
    """Limit sign-ups (the view is registered before this) and set up the login throttle.
    Raises :class:`ConfigError` for a malformed limit or storage URI."""
    try:
        parse_many(settings.ratelimit_signup)
    except ValueError as exc:
        raise ConfigError(
            f"ratelimit_signup: {settings.ratelimit_signup!r} is not a rate limit"
        ) from exc
    app.extensions[THROTTLE] = LoginThrottle.from_settings(settings)
    in_memory = settings.ratelimit_storage_uri.startswith("memory://")
    limiter = Limiter(
        key_func=get_remote_address,
        storage_uri=settings.ratelimit_storage_uri,
        strategy="moving-window",
        key_prefix="movierec",
        headers_enabled=True,
        swallow_errors=True,
        in_memory_fallback_enabled=not in_memory,
    )
    limiter.init_app(app)
    # Every limit is on a POST: reads (most requests) skip the limiter's bookkeeping.
    limiter.request_filter(lambda: request.method in ("GET", "HEAD", "OPTIONS"))
    views = app.view_functions
    views["auth.signup"] = limiter.limit(
        settings.ratelimit_signup, scope="signup-ip", methods=["POST"], error_message=TOO_MANY
    )(views["auth.signup"])
    app.extensions[EXTENSION] = limiter
    return limiter
