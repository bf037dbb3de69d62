"""GET /healthz for the director's health checks: 200 while the database answers."""

from __future__ import annotations

from flask import Blueprint, jsonify
from werkzeug.wrappers import Response

from movierec.errors import DatabaseUnavailable
from movierec.web.db import database

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    try:
        database().check()
    except DatabaseUnavailable:
        return jsonify(status="unavailable", error="database unavailable"), 503
    return jsonify(status="ok"), 200
