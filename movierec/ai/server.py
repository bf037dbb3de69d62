"""The recommender server: a small Flask app answering JSON from a loaded model.

``movierec serve`` runs it under gunicorn as ``movierec.ai.server:create_app()``.

=====================================  =====================================================
``GET /recommend?user=ID&k=N``         200 ``{user, k, model_version, fallback, reason,
  ``&exclude=1,2&demote_genres=Horror``  items: [{movie_id, score, because?}]}``; k is 1..100,
                                       default 10; ``because`` (a movie id) is there when a
                                       ranking model names the user's movie that weighed most
``GET /predict?user=ID&movie=ID``      200 ``{user, movie, model_version, rating}`` from the
                                       rating model (503 when there is none)
``GET /similar?movie=ID&k=N``          200 ``{movie, k, model_version, items}``; 404 when the
                                       model does not know the movie
``GET /health``                        200 ``{status: "ok", model_version}``, or 503
                                       ``{status: "no-model"}``
``GET /model``                         the /recommend model's meta.json (503 without one)
``GET /models``                        ``{ranking: meta|null, rating: meta|null}``
=====================================  =====================================================

``/recommend`` answers from the live ranking model (EASE or ALS: the user's database ratings,
favourites, preferred and searched genres are folded in per request), or from the rating
model when no ranking model was trained. ``exclude`` (movie ids the user marked "not
interested") never appear; movies of ``demote_genres`` come after all others.

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

from movierec.ai.base import Recommender
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
MAX_LIST = 1000  # exclude ids / demoted genres per request
MAX_ID = 2**63 - 1
EXTENSION = "movierec.ai"
INTEGER = re.compile(r"^[+-]?[0-9]{1,19}$")
STATUS = {BadInput: 400, NotFound: 404, ModelNotReady: 503, DatabaseUnavailable: 503}

bp = Blueprint("recommender", __name__)


def create_app(
    settings: Settings | None = None,
    model: Recommender | None = None,
    reload_interval: float = 5.0,
) -> Flask:
    """The recommender app. Settings come from :func:`load_settings` when not given.

    With ``model`` the app serves that model only (for its kind); otherwise the live (or
    newest) artifact of each kind in ``settings.model_dir``, re-checked every
    ``reload_interval`` seconds. Raises :class:`~movierec.errors.ConfigError` for bad settings.
    """
    settings = settings or load_settings()
    app = Flask(__name__)
    app.json.sort_keys = False
    watchers = {
        kind: ModelWatcher(
            None if model is not None else settings.model_dir,
            reload_interval,
            pinned=model if model is not None and model.kind == kind else None,
            kind=kind,
        )
        for kind in ("ranking", "rating")
    }
    watcher = _Either(watchers["ranking"], watchers["rating"])
    database = Database(settings) if settings.database_url else None
    app.extensions[EXTENSION] = {
        "watcher": watcher,
        "watchers": watchers,
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


class _Either:
    """The ranking model when there is one, else the rating model (both may be None)."""

    def __init__(self, ranking: ModelWatcher, rating: ModelWatcher):
        self.ranking, self.rating = ranking, rating

    def current(self) -> Recommender | None:
        return self.ranking.current() or self.rating.current()


def _model() -> Recommender:
    model = current_app.extensions[EXTENSION]["watcher"].current()
    if model is None:
        raise ModelNotReady("no trained model yet; run `movierec model train`")
    return model


def _id_list(name: str) -> list[int]:
    raw = request.args.get(name, "").strip()
    parts = [p.strip() for p in raw.split(",") if p.strip()] if raw else []
    if len(parts) > MAX_LIST:
        raise BadInput(f"parameter {name!r} lists more than {MAX_LIST} ids")
    bad = [p for p in parts if not INTEGER.match(p)]
    if bad:
        raise BadInput(f"parameter {name!r} must list integers, not {bad[0][:40]!r}")
    return [int(p) for p in parts]


def _word_list(name: str) -> list[str]:
    raw = request.args.get(name, "").strip()
    words = [w.strip() for w in raw.split(",") if w.strip()] if raw else []
    if len(words) > MAX_LIST or any(len(w) > 64 for w in words):
        raise BadInput(f"parameter {name!r} is too long")
    return words


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


def _items(
    pairs: tuple[tuple[int, float], ...], because: tuple[int | None, ...] = ()
) -> list[dict[str, float | int]]:
    items: list[dict[str, float | int]] = []
    for j, (movie_id, score) in enumerate(pairs):
        item: dict[str, float | int] = {"movie_id": movie_id, "score": round(score, 4)}
        if j < len(because) and because[j] is not None:
            item["because"] = because[j]
        items.append(item)
    return items


@bp.get("/recommend")
def recommend():
    """Top-k movies for a user, excluding everything the database says they rated."""
    user_id = _int_param("user")
    k = _int_param("k", DEFAULT_K, high=MAX_K)
    exclude = _id_list("exclude")
    demote = _word_list("demote_genres")
    model = _model()  # this one object answers the whole request, whatever is swapped in
    users: UserContextReader = current_app.extensions[EXTENSION]["users"]
    if model.kind == "ranking":
        context = users.read(user_id, want_genres=True)
        recs = model.recommend(
            user_id,
            k,
            exclude=context.rated | set(exclude),
            signals=context.signals(),
            demote_genres=demote,
        )
    else:
        # Preferred genres only matter for a user the model cannot personalise for.
        context = users.read(user_id, want_genres=not model.knows_user(user_id))
        recs = model.recommend(
            user_id,
            k,
            exclude=context.rated | set(exclude),
            genres=context.genres,
            demote_genres=demote,
        )
    return jsonify(
        user=user_id,
        k=k,
        model_version=recs.model_version,
        fallback=recs.fallback,
        reason=recs.reason,
        items=_items(recs.items, recs.because),
    )


@bp.get("/predict")
def predict():
    """Predicted stars of one movie for one user, from the rating model."""
    user_id = _int_param("user")
    movie_id = _int_param("movie")
    model = current_app.extensions[EXTENSION]["watchers"]["rating"].current()
    if model is None:
        raise ModelNotReady("no rating model yet; run `movierec model train --algo svd`")
    return jsonify(
        user=user_id,
        movie=movie_id,
        model_version=model.version,
        rating=round(model.predict(user_id, movie_id), 4),
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


@bp.get("/models")
def models_meta():
    watchers = current_app.extensions[EXTENSION]["watchers"]
    found = {kind: watcher.current() for kind, watcher in watchers.items()}
    return jsonify({kind: (m.meta if m is not None else None) for kind, m in found.items()})


def _http_error(exc: HTTPException):
    return jsonify(error=f"{exc.name.lower()}: {request.method} {request.path}"), exc.code


def _movierec_error(exc: MovierecError):
    status = next((code for kind, code in STATUS.items() if isinstance(exc, kind)), 500)
    return jsonify(error=str(exc)), status


def _unexpected_error(exc: Exception):
    log.exception("unexpected error in %s %s", request.method, request.path)
    return jsonify(error="internal error"), 500
