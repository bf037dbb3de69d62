"""Who may ask a recommender server: callers present its bearer key.

A recommender answers any user's recommendations, and their ``because`` field names movies
that user rated highly: only the web instances may ask. They send ``Authorization: Bearer
<ai_key>``; every endpoint but ``/health`` (what load balancers and ``cluster status`` poll,
which tells nothing of users) and ``/openapi.json`` (the API's description, this key
included) answers 401 JSON without it. There is one key, the web
instances' role: no endpoint needs more than they may see, so an admin key would guard
nothing more. ``movierec cluster up`` and the demo generate it (``state_dir/ai_key``, mode
0600) and hand it to both sides. Keys are compared as SHA-256 digests with
:func:`hmac.compare_digest`, so neither the content nor the length of the right key shows in
the time a wrong one takes.
"""

from __future__ import annotations

import hashlib
import hmac

from flask import Flask, Response, current_app, jsonify, request

from movierec.config import Settings
from movierec.errors import ConfigError

# /health tells nothing of users; the OpenAPI document only what every caller must send.
OPEN_ENDPOINTS = frozenset({"recommender.health", "recommender.openapi"})
BEARER = "Bearer "
DIGEST = "movierec.ai.key_digest"


def init_app(app: Flask, settings: Settings) -> None:
    """Demand ``settings.ai_key`` of every caller. Raises :class:`ConfigError` without one."""
    if not settings.ai_key:
        raise ConfigError(
            "ai_key: a recommender server needs the key its callers must present "
            "(MOVIEREC_AI_KEY; `movierec cluster up` and the demo make one in state_dir/ai_key)"
        )
    app.config[DIGEST] = _digest(settings.ai_key)
    app.before_request(_authenticate)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _authenticate() -> tuple[Response, int, dict[str, str]] | None:
    if request.endpoint in OPEN_ENDPOINTS:
        return None
    header = request.headers.get("Authorization", "")
    given = header[len(BEARER) :].strip() if header.startswith(BEARER) else ""
    if given and hmac.compare_digest(_digest(given), current_app.config[DIGEST]):
        return None
    challenge = {"WWW-Authenticate": 'Bearer realm="movierec-ai"'}
    refused = jsonify(error="missing or wrong key: send Authorization: Bearer <ai_key>")
    return refused, 401, challenge
