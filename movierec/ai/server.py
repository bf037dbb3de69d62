"""The recommender server: a small Flask app answering JSON from a loaded model.

``movierec serve`` runs it under gunicorn as ``movierec.ai.server:create_app()``.

=====================================  =====================================================
``GET /recommend?user=ID&k=N``         200 ``{user, k, model_version, fallback, reason,
                                       items: [{movie_id, score}]}``; k is 1..100, default 10
``GET /similar?movie=ID&k=N``          200 ``{movie, k, model_version, items}``; 404 when the
                                       model does not know the movie
``GET /health``                        200 ``{status: "ok", model_version}``, or 503
                                       ``{status: "no-model"}``
``GET /model``                         the artifact's meta.json (503 without a model)
=====================================  =====================================================

Errors are always JSON ``{"error": "one line"}``: 400 for bad parameters, 404, 405, 503 while
no model has been trained (the web side has its own popularity fallback; the server does not
scan the ratings table per request to imitate one), 500 for bugs. The server picks up a newly
trained artifact within ``reload_interval`` seconds. It reads the user's ratings and preferred
genres from the database per request; without a database it answers from the model alone.
"""

from __future__ import annotations

import logging
import re

from flask import Blueprint, Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from movierec.ai.scorer import FactorModel
from movierec.ai.user_context import UserContextReader
from movierec.ai.watcher import ModelWatcher
from movierec.config import Settings, load_settings
from movierec.db import Database
from movierec.errors import (
    BadInput,
    DatabaseUnavailable,
    ModelNotReady,
    MovierecError,
    NotFound,
)

log = logging.getLogger(__name__)

MAX_K = 100
DEFAULT_K = 10
MAX_ID = 2**63 - 1
EXTENSION = "movierec.ai"
INTEGER = re.compile(r"^[+-]?[0-9]{1,19}$")
STATUS = {BadInput: 400, NotFound: 404, ModelNotReady: 503, DatabaseUnavailable: 503}

bp = Blueprint("recommender", __name__)


def create_app(
    settings: Settings | None = None,
    model: FactorModel | None = None,
    reload_interval: float = 5.0,
) -> Flask:
    """The recommender app. Settings come from :func:`load_settings` when not given.

    With ``model`` the app serves that model only; otherwise the newest artifact in
    ``settings.model_dir``, re-checked every ``reload_interval`` seconds.
    Raises :class:`~movierec.errors.ConfigError` for bad settings.
    """
    settings = settings or load_settings()
    app = Flask(__name__)
    app.json.sort_keys = False
    watcher = ModelWatcher(settings.model_dir, reload_interval, pinned=model)
    database = Database(settings) if settings.database_url else None
    app.extensions[EXTENSION] = {
        "watcher": watcher,
        "users": UserContextReader(database),
        "database": database,  # so that whoever ends the app can dispose of its pool
    }
    app.register_blueprint(bp)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(MovierecError, _movierec_error)
    app.register_error_handler(Exception, _unexpected_error)
    loaded = watcher.current()
    log.info("recommender starting with model %s", loaded.version if loaded else "none")
    return app


def _model() -> FactorModel:
    model = current_app.extensions[EXTENSION]["watcher"].current()
    if model is None:
        raise ModelNotReady("no trained model yet; run `movierec model train`")
    return model


def _int_param(name: str, default: int | None = None, low: int = 1, high: int = MAX_ID) -> int:
    raw = request.args.get(name, "").strip()
    if not raw:
        if default is None:
            raise BadInput(f"missing parameter {name!r}")
        return default
    if not INTEGER.match(raw):
        raise BadInput(f"parameter {name!r} must be an integer, not {raw[:40]!r}")
    value = int(raw)
    if not low <= value <= high:
        raise BadInput(f"parameter {name!r} must be between {low} and {high}, not {value}")
    return value


def _items(pairs: tuple[tuple[int, float], ...]) -> list[dict[str, float | int]]:
    return [{"movie_id": movie_id, "score": round(score, 4)} for movie_id, score in pairs]


@bp.get("/recommend")
def recommend():
    """Top-k movies for a user, excluding everything the database says they rated."""
    user_id = _int_param("user")
    k = _int_param("k", DEFAULT_K, high=MAX_K)
    model = _model()
    users: UserContextReader = current_app.extensions[EXTENSION]["users"]
    # Preferred genres only matter for a user the model cannot personalise for.
    context = users.read(user_id, want_genres=not model.knows_user(user_id))
    recs = model.recommend(user_id, k, exclude=context.rated, genres=context.genres)
    return jsonify(
        user=user_id,
        k=k,
        model_version=recs.model_version,
        fallback=recs.fallback,
        reason=recs.reason,
        items=_items(recs.items),
    )


@bp.get("/similar")
def similar():
    """Movies closest to a movie in the model's factor space."""
    movie_id = _int_param("movie")
    k = _int_param("k", DEFAULT_K, high=MAX_K)
    found = _model().similar(movie_id, k)
    return jsonify(
        movie=movie_id, k=k, model_version=found.model_version, items=_items(found.items)
    )


@bp.get("/health")
def health():
    model = current_app.extensions[EXTENSION]["watcher"].current()
    if model is None:
        return jsonify(status="no-model"), 503
    return jsonify(status="ok", model_version=model.version)


@bp.get("/model")
def model_meta():
    return jsonify(_model().meta)


def _http_error(exc: HTTPException):
    return jsonify(error=f"{exc.name.lower()}: {request.method} {request.path}"), exc.code


def _movierec_error(exc: MovierecError):
    status = next((code for kind, code in STATUS.items() if isinstance(exc, kind)), 500)
    return jsonify(error=str(exc)), status


def _unexpected_error(exc: Exception):
    log.exception("unexpected error in %s %s", request.method, request.path)
    return jsonify(error="internal error"), 500
