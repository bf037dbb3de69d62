"""Two health answers: one for the director, one for people.

``GET /healthz`` is what HAProxy routes by: whether *this instance* can serve, so it asks no
dependency. A database outage is the same for every instance; had the check asked the
database, the director would have taken every instance out at once, and the whole site
(cached pages, movie pages a replica serves, static files) answered 503 where it could have
answered most requests (3,734 of 3,734 requests failed in the failover drill). The pages
themselves degrade instead: reads go to a replica or come from the caches, writes answer 503
with Retry-After.

``GET /readyz`` is for operators and monitoring, never for routing: each dependency (the
primary, the replica, each recommender) with whether it answers, 200 when all do and 503 when
one does not. It names servers and their errors, so like ``/metrics`` it answers loopback
clients only.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Blueprint, abort, current_app, jsonify, request
from sqlalchemy import text
from werkzeug.wrappers import Response

from movierec.errors import DatabaseUnavailable
from movierec.web import picks
from movierec.web.db import database
from movierec.web.metrics import is_loopback

bp = Blueprint("health", __name__)
RETRY_AFTER = 5


@bp.get("/healthz")
def healthz() -> Response:
    """200 while this worker answers; asks no dependency (see the module docstring)."""
    return jsonify(status="ok", instance=_instance(), pid=os.getpid())


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Each dependency with whether it answers now (loopback clients only)."""
    if not is_loopback(request.remote_addr):
        abort(404)
    found = {"database": _database_health("primary")}
    if database().settings.replica_url:
        found["replica"] = _database_health("replica")
    found["recommenders"] = [{"url": url, "ok": ok} for url, ok in picks.ai_client().health()]
    ready = found["database"]["ok"] and all(
        part["ok"] for part in (found.get("replica", {"ok": True}), *found["recommenders"])
    )
    answer = jsonify(status="ok" if ready else "degraded", instance=_instance(), **found)
    if not ready:
        answer.headers["Retry-After"] = str(RETRY_AFTER)
    return answer, 200 if ready else 503


def _database_health(which: str) -> dict[str, Any]:
    engine = database().primary if which == "primary" else database().replica
    try:
        with engine.connect() as conn:  # type: ignore[union-attr]
            conn.execute(text("SELECT 1"))
    except DatabaseUnavailable as exc:
        return {"ok": False, "error": str(exc)}
    return {"ok": True}


def _instance() -> str:
    return current_app.extensions["movierec.settings"].instance_name or "web"
