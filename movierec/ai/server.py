"""The recommender server: a small Flask app answering JSON from a loaded model.

``movierec serve`` runs it under gunicorn as ``movierec.ai.server:create_app()``.

=====================================  =====================================================
``GET /recommend?user=ID&k=N``         200 ``{user, k, model_version, fallback, reason,
  ``&exclude=1,2&demote_genres=Horror``  items: [{movie_id, score, because?}]}``; k is 1..100,
  ``&shard=I&shards=N``                  default 10; ``because`` (a movie id) is there when a
                                       ranking model names the user's movie that weighed most
``POST /recommend?...``                the same, for the context sent in the JSON body
  ``{"context": {...}}``               (``movie_ids, stars, last_rated_at, genres, liked,
                                       searched``) instead of read from the database;
                                       ``stars=1`` adds each item's predicted ``stars``
``GET /predict?user=ID&movie=ID``      200 ``{user, movie, model_version, rating}`` from the
                                       rating model (503 when there is none, 404 for a
                                       movie it does not know)
``GET|POST /predictions?user=ID``      200 ``{user, model_version, items: [{movie_id, stars}]}``:
  ``&movies=1,2,3``                    a page's list at once, the user's ratings since
                                       training folded in; rated and unknown movies left out
``GET /similar?movie=ID&k=N``          200 ``{movie, k, model_version, items}``; 404 when the
  ``&shard=I&shards=N``                  model does not know the movie
``GET /health``                        200 ``{status: "ok", model_version}`` (and ``shard``
                                       on a one-shard server), or 503 ``{status: "no-model"}``
``GET /model``                         the /recommend model's meta.json (503 without one)
``GET /models``                        ``{ranking: meta|null, rating: meta|null}``
``GET /metrics``                       Prometheus text: requests per endpoint, cache hits
                                       and misses, exact/ANN scorings, the model as an info
                                       metric (this worker process's numbers)
``GET /openapi.json``                  the OpenAPI document of all of these
=====================================  =====================================================

The parameters, bodies and answers are :mod:`movierec.wire.recommender`'s: the server reads
its requests with those definitions, the web's AI client writes its requests with them, and
``/openapi.json`` is made from them.

``/recommend`` answers from the live ranking model (EASE or ALS: the user's database ratings,
favourites, preferred and searched genres are folded in per request), or from the rating
model when no ranking model was trained. ``exclude`` (movie ids the user marked "not
interested") never appear; movies of ``demote_genres`` come after all others, marked
``demoted`` so that a merge of shards' answers by score keeps them last. A caller that
has read the user's context already (the web reads it with the user's taste version) POSTs it
and spares the server a database read per request.

**Shards.** ``shard=i&shards=n`` restricts ``/recommend`` and ``/similar`` to the movies with
``movie_id % n == i``, scored exactly as without it, so the web side's merge by score of every
shard's top-k is the unsharded top-k. A server started with ``ai_shard = "i/n"`` keeps only
that slice of the catalogue (see :mod:`movierec.ai.candidates`), answers for it without the
parameters, and refuses other shards (400).

**Memory, shared and hot.** Every model array (SVD factors and biases, EASE's ``B``, ALS item
factors and Gram matrix, id maps, popularity) is a read-only memory-mapped ``.npy`` file, and
the ANN index (:mod:`movierec.ai.ann`) is mapped the same way, as is a one-shard server's
slice: the pages belong to the kernel's page cache, so gunicorn's workers on one machine
share one copy (``tests/ai/test_ai_serving.py`` checks that no model array is a private
copy). Per worker process, small: the popularity fallback lists per genre set, the vectors of
the most rated movies (``ai_hot_mb``), and a per-user result cache (``ai_cache_users``
entries for ``ai_cache_ttl`` seconds, :mod:`movierec.ai.cache`) keyed by model version and the
user's signals, so that neither a new rating nor a model swap is answered from it. BLAS runs
``ai_blas_threads`` (1) threads per process: the worker processes (``ai_workers``, each one
thread serving greenlets, see :mod:`movierec.serving`) are the parallelism.

**ANN.** Factor models (SVD, ALS) trained on more than ``ann_min_items`` movies carry an IVF
index; ``/recommend`` and ``/similar`` then score only the probed cells (``ann_nprobe``; 0
scores exhaustively). Rated and excluded movies are filtered inside the index search, so
they are still never returned.

**Callers** send ``Authorization: Bearer <ai_key>`` (:mod:`movierec.ai.keys`): without it every
endpoint but ``/health`` answers 401.

Errors are always JSON ``{"error": "one line"}``: 400 for bad parameters, 401, 404, 405, 503 (with
``Retry-After``) while no model has been trained (the web side has its own popularity
fallback; the server does not scan the ratings table per request to imitate one), 500 for
bugs. The server picks up a newly trained artifact within ``reload_interval`` seconds. It
reads the user's ratings and preferred genres from the database per GET request; without a
database it answers from the model alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from threadpoolctl import threadpool_limits
from werkzeug.exceptions import HTTPException

from movierec.ai import keys, stats
from movierec.ai.base import Recommendations, Recommender
from movierec.ai.cache import ResultCache
from movierec.ai.loader import load_model
from movierec.ai.shard import Shard
from movierec.ai.user_context import UserContext, UserContextReader, from_json
from movierec.ai.watcher import ModelWatcher
from movierec.config import Settings, load_settings
from movierec.db import Database
from movierec.errors import (
    BadInput,
    ConfigError,
    DatabaseUnavailable,
    ModelNotReady,
    MovierecError,
    NotFound,
)
from movierec.redact import redact
from movierec.wire import recommender as wire

log = logging.getLogger(__name__)

MAX_BODY = 16 << 20  # a POSTed context: 100,000 ratings take about 2 MB
EXTENSION = "movierec.ai"
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
    ``reload_interval`` seconds; restricted to ``settings.ai_shard`` when set. Every caller
    but ``/health``'s presents ``settings.ai_key`` (:mod:`movierec.ai.keys`). Raises
    :class:`~movierec.errors.ConfigError` for bad settings or no ``ai_key``.
    """
    settings = settings or load_settings()
    shard = _fixed_shard(settings)
    if settings.ai_blas_threads:
        # Process-wide: each worker process runs one request's products at a time; BLAS
        # threads on top of the workers only fight for the same cores.
        threadpool_limits(settings.ai_blas_threads, user_api="blas")
    app = Flask(__name__)
    app.json.sort_keys = False
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.before_request(_start_timer)  # first: refused calls are counted too
    keys.init_app(app, settings)
    if model is not None and shard is not None and model.shard != shard:
        model = model.restrict(shard)

    def load(model_dir: Path, version: str) -> Recommender:
        return load_model(
            model_dir, version, shard=shard, nprobe=settings.ann_nprobe,
            hot_bytes=settings.ai_hot_mb << 20,
        )  # fmt: skip

    watchers = {
        kind: ModelWatcher(
            None if model is not None else settings.model_dir,
            reload_interval,
            pinned=model if model is not None and model.kind == kind else None,
            kind=kind,
            load=load,
        )
        for kind in ("ranking", "rating")
    }
    watcher = _Either(watchers["ranking"], watchers["rating"])
    database = Database(_database_settings(settings)) if settings.database_url else None
    app.extensions[EXTENSION] = {
        "watcher": watcher,
        "watchers": watchers,
        "users": UserContextReader(database),
        "database": database,  # so that whoever ends the app can dispose of its pool
        "results": ResultCache(settings.ai_cache_users, settings.ai_cache_ttl),
        "shard": shard,
        "instance": settings.instance_name,
    }
    app.teardown_request(_count_request)
    app.after_request(_remember_status)
    app.register_blueprint(bp)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(MovierecError, _movierec_error)
    app.register_error_handler(Exception, _unexpected_error)
    loaded = watcher.current()
    log.info("recommender starting with model %s", loaded.version if loaded else "none")
    return app


def _fixed_shard(settings: Settings) -> Shard | None:
    try:
        return Shard.parse(settings.ai_shard)
    except BadInput as exc:
        raise ConfigError(f"ai_shard: {exc}") from None


def _start_timer() -> None:
    g.ai_started = time.perf_counter()


def _remember_status(response: Response) -> Response:
    g.ai_status = response.status_code
    return response


def _count_request(exc: BaseException | None) -> None:
    started = g.get("ai_started")
    if started is None:
        return
    # The route's pattern, never the raw path: a scanner must not create unbounded series.
    endpoint = request.url_rule.rule if request.url_rule is not None else "other"
    status = str(g.get("ai_status", 500 if exc is not None else 200))
    stats.COUNTERS.add("movierec_recommender_requests_total", endpoint=endpoint, status=status)
    seconds = time.perf_counter() - started
    stats.COUNTERS.add("movierec_recommender_request_seconds_total", seconds, endpoint=endpoint)


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


def _posted_context() -> UserContext:
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or set(body) != {"context"}:
        raise BadInput('a POST body must be the JSON object {"context": {...}} and no more')
    return from_json(body["context"])


def _shard(found: tuple[int, int] | None) -> Shard | None:
    return None if found is None else Shard(*found)


def _items(
    pairs: tuple[tuple[int, float], ...],
    because: tuple[int | None, ...] = (),
    demoted: Sequence[bool] = (),
    stars: Mapping[int, float] | None = None,
) -> list[dict[str, float | int | bool]]:
    items: list[dict[str, float | int | bool]] = []
    for j, (movie_id, score) in enumerate(pairs):
        # Six decimals: shards' answers are merged by score, so near-ties must survive.
        item: dict[str, float | int | bool] = {"movie_id": movie_id, "score": round(score, 6)}
        if j < len(because) and because[j] is not None:
            item["because"] = because[j]
        if j < len(demoted) and demoted[j]:
            item["demoted"] = True
        if stars and movie_id in stars:
            item["stars"] = stars[movie_id]
        items.append(item)
    return items


@bp.route(wire.RECOMMEND.path, methods=[wire.RECOMMEND.method, wire.RECOMMEND_POSTED.method])
def recommend():
    """Top-k movies for a user, excluding everything the database says they rated. A POST
    carries the same parameters and, as its JSON body ``{"context": {...}}``, what the
    database says about the user (see :func:`~movierec.ai.user_context.from_json`): then the
    server does not read it itself."""
    args = wire.RECOMMEND.read(request.args)
    user_id, k, exclude, demote = args["user"], args["k"], args["exclude"], args["demote_genres"]
    shard = _shard(args["shard"])
    model = _model()  # this one object answers the whole request, whatever is swapped in
    ext = current_app.extensions[EXTENSION]
    users: UserContextReader = ext["users"]
    results: ResultCache = ext["results"]
    if request.method == "POST":
        context = _posted_context()
    else:
        # Preferred genres only matter to a rating model for a user it cannot personalise for.
        want_genres = model.kind == "ranking" or not model.knows_user(user_id)
        context = users.read(user_id, want_genres=want_genres)
    key = (
        model.version, str(shard or model.shard or ""), user_id, k,
        tuple(sorted(set(exclude))), tuple(demote), context.fingerprint(),
    )  # fmt: skip
    recs: Recommendations | None = results.get(key)
    if recs is None:
        if model.kind == "ranking":
            recs = model.recommend(
                user_id, k, exclude=context.rated | set(exclude), signals=context.signals(),
                demote_genres=demote, shard=shard,
            )  # fmt: skip
        else:
            recs = model.recommend(
                user_id, k, exclude=context.rated | set(exclude), genres=context.genres,
                demote_genres=demote, shard=shard,
            )  # fmt: skip
        results.put(key, recs)
    # Marked, so that a caller merging shards' answers by score keeps them last as well.
    demoted = model.in_genres(recs.movie_ids, demote) if demote else ()
    # Asked for with the list, so that a page showing it makes one call, not two.
    stars = _stars(user_id, recs.movie_ids, context) if args["stars"] == "1" else None
    return jsonify(
        user=user_id,
        k=k,
        model_version=recs.model_version,
        fallback=recs.fallback,
        reason=recs.reason,
        items=_items(recs.items, recs.because, demoted, stars),
    )


def _stars(user_id: int, movie_ids: Sequence[int], context: UserContext) -> dict[int, float]:
    """The rating model's stars (rounded to what a page shows) of ``movie_ids`` the user has
    not rated, their newest ratings folded in; none without a rating model."""
    model = current_app.extensions[EXTENSION]["watchers"]["rating"].current()
    if model is None:
        return {}
    found = model.predict_many(user_id, movie_ids, context.ratings)
    return {movie_id: round(value, 2) for movie_id, value in found.items()}


@bp.route(wire.PREDICTIONS.path, methods=[wire.PREDICTIONS.method, wire.PREDICTIONS_POSTED.method])
def predictions():
    """Predicted stars of a list of movies for one user, from the rating model, with the
    user's ratings since training folded in (see :mod:`movierec.ai.rating_fold_in`): the stars
    beside a page's movies, in one call per page. Movies the user rated, and movies the
    model does not know, are left out. A POST carries the user's context as ``/recommend``'s
    does; a GET reads it from the database. No rating model is an answer too, with no
    stars (``model_version`` null): a page then shows none, and the instance is not taken
    for a failing one."""
    args = wire.PREDICTIONS.read(request.args)
    user_id, movie_ids = args["user"], args["movies"]
    model = current_app.extensions[EXTENSION]["watchers"]["rating"].current()
    if model is None:
        return jsonify(user=user_id, model_version=None, items=[])
    if request.method == "POST":
        context = _posted_context()
    else:
        context = current_app.extensions[EXTENSION]["users"].read(user_id, want_genres=False)
    found = _stars(user_id, movie_ids, context)
    items = [{"movie_id": movie_id, "stars": stars} for movie_id, stars in found.items()]
    return jsonify(user=user_id, model_version=model.version, items=items)


@bp.get(wire.PREDICT.path)
def predict():
    """Predicted stars of one movie for one user, from the rating model; 404 for a movie the
    model does not know (it would only answer the user's bias: no prediction about it)."""
    args = wire.PREDICT.read(request.args)
    user_id, movie_id = args["user"], args["movie"]
    model = current_app.extensions[EXTENSION]["watchers"]["rating"].current()
    if model is None:
        raise ModelNotReady("no rating model yet; run `movierec model train --algo svd`")
    if not model.knows_movie(movie_id):
        raise NotFound(f"model {model.version} does not know movie {movie_id}")
    return jsonify(
        user=user_id,
        movie=movie_id,
        model_version=model.version,
        rating=round(model.predict(user_id, movie_id), 4),
    )


@bp.get(wire.SIMILAR.path)
def similar():
    """Movies closest to a movie in the model's factor space."""
    args = wire.SIMILAR.read(request.args)
    movie_id, k = args["movie"], args["k"]
    found = _model().similar(movie_id, k, shard=_shard(args["shard"]))
    return jsonify(
        movie=movie_id, k=k, model_version=found.model_version, items=_items(found.items)
    )


@bp.get(wire.HEALTH.path)
def health():
    model = current_app.extensions[EXTENSION]["watcher"].current()
    if model is None:
        return jsonify(status="no-model"), 503
    shard = current_app.extensions[EXTENSION]["shard"]
    if shard is not None:
        return jsonify(status="ok", model_version=model.version, shard=str(shard))
    return jsonify(status="ok", model_version=model.version)


@bp.get(wire.MODEL.path)
def model_meta():
    return jsonify(_model().meta)


@bp.get(wire.MODELS.path)
def models_meta():
    watchers = current_app.extensions[EXTENSION]["watchers"]
    found = {kind: watcher.current() for kind, watcher in watchers.items()}
    return jsonify({kind: (m.meta if m is not None else None) for kind, m in found.items()})


@bp.get(wire.METRICS.path)
def metrics() -> Response:
    """This worker's counters, the result cache's size and the models answering."""
    ext = current_app.extensions[EXTENSION]
    gauges: list[tuple[str, dict[str, str], float]] = [
        ("movierec_recommender_cache_entries", {"cache": "recommend"}, float(len(ext["results"]))),
    ]
    for kind, watcher in ext["watchers"].items():
        model = watcher.current()
        if model is not None:
            ann = getattr(model, "ann", None) is not None
            labels = {
                "kind": kind, "version": model.version,
                "algorithm": str(model.meta.get("algorithm", "")),
                "shard": str(model.shard or ""), "ann": "true" if ann else "false",
            }  # fmt: skip
            gauges.append(("movierec_recommender_model_info", labels, 1.0))
    text = stats.render(stats.base_labels(ext["instance"]), gauges)
    return Response(text, content_type=stats.CONTENT_TYPE)


@bp.get("/openapi.json")
def openapi():
    """The wire contract (:mod:`movierec.wire.recommender`) as an OpenAPI document."""
    return jsonify(wire.OPENAPI)


def _http_error(exc: HTTPException):
    return jsonify(error=f"{exc.name.lower()}: {request.method} {request.path}"), exc.code


def _movierec_error(exc: MovierecError):
    status = next((code for kind, code in STATUS.items() if isinstance(exc, kind)), 500)
    answer = jsonify(error=redact(str(exc)))
    if status == 503:
        answer.headers["Retry-After"] = str(getattr(exc, "retry_after", 5))
    return answer, status


def _unexpected_error(exc: Exception):
    log.exception("unexpected error in %s %s", request.method, request.path)
    return jsonify(error="internal error"), 500


def _database_settings(settings: Settings) -> Settings:
    """The recommender's database settings: it waits for a switched primary at most half the
    time the site gives it to answer (``ai_timeout``). Its reads are optional context (without
    them it answers from the model alone), and a request held longer than the site waits
    would fail the page instead of degrading it."""
    wait = min(settings.database_connect_wait, settings.ai_timeout / 2)
    return settings.replace(database_connect_wait=wait)
