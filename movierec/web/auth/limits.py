"""Rate limits on logging in and signing up (Flask-Limiter).

Failed logins are counted per client IP and per account name (existing or not, so the answer
does not tell which names exist); a successful login costs nothing. Sign-ups are counted per
IP. Counters live in ``ratelimit_storage_uri``: ``memory://`` counts per worker process, so a
site with several workers or servers should point them all at one Redis
(``redis://host:6379``). Should that Redis fail, each worker falls back to counting in memory.
Behind a proxy set ``web_proxy_count`` so that the client's IP, not the proxy's, is counted.
"""

from __future__ import annotations

from flask import Flask, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits import parse_many
from werkzeug.wrappers import Response

from movierec.config import Settings
from movierec.errors import ConfigError

EXTENSION = "movierec.limiter"
TOO_MANY = "Too many attempts. Wait a few minutes, then try again."


def init_app(app: Flask, settings: Settings) -> Limiter:
    """Limit the login and sign-up views (registered before this). Raises :class:`ConfigError`
    for a malformed limit."""
    for name in ("ratelimit_login", "ratelimit_signup"):
        try:
            parse_many(getattr(settings, name))
        except ValueError as exc:
            raise ConfigError(f"{name}: {getattr(settings, name)!r} is not a rate limit") from exc
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
    login = views["auth.login"]
    for key_func, scope in ((_account, "login-account"), (get_remote_address, "login-ip")):
        login = limiter.limit(
            settings.ratelimit_login,
            key_func=key_func,
            scope=scope,
            methods=["POST"],
            deduct_when=_failed_login,
            error_message=TOO_MANY,
        )(login)
    views["auth.login"] = login
    views["auth.signup"] = limiter.limit(
        settings.ratelimit_signup, scope="signup-ip", methods=["POST"], error_message=TOO_MANY
    )(views["auth.signup"])
    app.extensions[EXTENSION] = limiter
    return limiter


def _account() -> str:
    return "account:" + request.form.get("username", "").strip().lower()[:64]


def _failed_login(response: Response) -> bool:
    # A login that worked redirects; a failed one shows the form again (200) or is refused.
    return response.status_code != 302
