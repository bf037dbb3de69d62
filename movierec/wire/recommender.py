"""The recommender server's wire contract: its endpoints, their parameters and their JSON.

:mod:`movierec.ai.server` reads requests with these operations and serves :data:`OPENAPI` at
``/openapi.json``; :mod:`movierec.web.ai_client` writes its requests with the same ones. A
parameter's name or format changes here, for both sides at once.
"""

from __future__ import annotations

from movierec.wire.openapi import (
    BOOLEAN,
    INTEGER,
    NUMBER,
    STRING,
    Operation,
    array_of,
    document,
    nullable,
    obj,
)
from movierec.wire.params import MAX_ID, Choice, Ids, Integer, ShardOf, Words

MAX_K = 100
DEFAULT_K = 10
MAX_LIST = 1000  # ids in exclude, genres in demote_genres
MAX_RATINGS = 100_000  # in a posted context: far above any real user's
MAX_WORDS = 1000
MAX_SHARDS = 4096
WORD_CHARS = 64

USER = Integer("user", "The user's id.", required=True)
MOVIE = Integer("movie", "The movie's id.", required=True)
K = Integer("k", "How many movies to answer.", default=DEFAULT_K, high=MAX_K)
EXCLUDE = Ids(
    "exclude", "Movies never to answer (e.g. the user's 'not interested').", max_items=MAX_LIST
)
DEMOTE = Words(
    "demote_genres", "Genres whose movies come after all others.", max_items=MAX_LIST,
    max_chars=WORD_CHARS,
)  # fmt: skip
SHARD = ShardOf(most=MAX_SHARDS)
MAX_PREDICT = 100  # movies per /predictions call: a page's list, its movie and more
MOVIES = Ids(
    "movies", "The movies to predict stars of (a page's list; none: no stars).",
    max_items=MAX_PREDICT,
)  # fmt: skip
WITH_STARS = Choice(
    "stars", "1: each item also carries the user's predicted stars from the rating model.",
    choices=("0", "1"), default="0",
)  # fmt: skip

ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
STARS = {"type": "number", "minimum": 0.5, "maximum": 5}
SIGNED_ID = {"type": "integer", "minimum": -(2**63), "maximum": MAX_ID}
ITEM = {
    "type": "object",
    "required": ["movie_id", "score"],
    "properties": {
        "movie_id": ID,
        "score": NUMBER,
        "because": {**ID, "description": "the user's movie that weighed most"},
        "demoted": {
            "type": "boolean",
            "description": "of a demote_genres genre: after every item without the mark",
        },
        "stars": {**STARS, "description": "with stars=1: the rating model's prediction"},
    },
    "additionalProperties": False,
}
RECOMMENDED = obj(
    ["user", "k", "model_version", "fallback", "reason", "items"],
    user=ID, k=INTEGER, model_version=STRING, fallback=BOOLEAN, reason=nullable(STRING),
    items=array_of(ITEM),
)  # fmt: skip
SIMILAR_ANSWER = obj(
    ["movie", "k", "model_version", "items"],
    movie=ID, k=INTEGER, model_version=STRING, items=array_of(ITEM),
)  # fmt: skip
PREDICTED = obj(
    ["user", "movie", "model_version", "rating"],
    user=ID, movie=ID, model_version=STRING, rating=STARS,
)  # fmt: skip
PREDICTION = obj(["movie_id", "stars"], movie_id=ID, stars=STARS)
PREDICTIONS_ANSWER = obj(
    ["user", "model_version", "items"],
    user=ID, model_version=nullable(STRING),
    items=array_of(PREDICTION, maxItems=MAX_PREDICT),
)  # fmt: skip
PREDICTIONS_ANSWER["description"] = (
    "Movies the model knows and the user has not rated, with their ratings since training "
    "folded in; the others are left out. No rating model: model_version null, no items."
)
WORD = {"type": "string", "maxLength": WORD_CHARS}
CONTEXT = obj(
    ["movie_ids", "stars", "last_rated_at", "genres", "liked", "searched"],
    movie_ids=nullable(array_of(SIGNED_ID, maxItems=MAX_RATINGS)),
    stars=nullable(
        array_of({"type": "number", "minimum": 0.5, "maximum": 5}, maxItems=MAX_RATINGS)
    ),
    last_rated_at=nullable(NUMBER),
    genres=nullable(array_of(WORD, maxItems=MAX_WORDS)),
    liked=nullable(array_of(SIGNED_ID, maxItems=MAX_RATINGS)),
    searched=nullable(array_of(WORD, maxItems=MAX_WORDS)),
)
CONTEXT["description"] = "What the database says about the user; movie_ids and stars pair up."
POSTED = obj(["context"], context=CONTEXT)
HEALTHY = {
    "type": "object",
    "required": ["status", "model_version"],
    "properties": {"status": {"enum": ["ok"]}, "model_version": STRING, "shard": STRING},
    "additionalProperties": False,
}
NO_MODEL = obj(["status"], status={"enum": ["no-model"]})
META = {"type": "object", "description": "the artifact's meta.json"}

# Every operation but /health (and this document) wants the recommender key (movierec.ai.keys).
KEY = ("key",)
_RECOMMEND = dict(
    params=(USER, K, EXCLUDE, DEMOTE, SHARD, WITH_STARS), answer=RECOMMENDED,
    errors=(400, 401, 503), security=KEY,
)  # fmt: skip
RECOMMEND = Operation(
    "GET", "/recommend", "Top-k movies for a user (their context read from the database).",
    **_RECOMMEND,
)  # fmt: skip
RECOMMEND_POSTED = Operation(
    "POST", "/recommend", "Top-k movies for a user whose context the caller sends.",
    body=POSTED, **_RECOMMEND,
)  # fmt: skip
SIMILAR = Operation(
    "GET", "/similar", "Movies like a movie, in the model's space.",
    params=(MOVIE, K, SHARD), answer=SIMILAR_ANSWER, errors=(400, 401, 404, 503), security=KEY,
)  # fmt: skip
PREDICT = Operation(
    "GET", "/predict", "A user's predicted stars for a movie, from the rating model.",
    params=(USER, MOVIE), answer=PREDICTED, errors=(400, 401, 404, 503), security=KEY,
)  # fmt: skip
_PREDICTIONS = dict(
    params=(USER, MOVIES), answer=PREDICTIONS_ANSWER, errors=(400, 401, 503), security=KEY
)
PREDICTIONS = Operation(
    "GET", "/predictions",
    "A user's predicted stars for a list of movies (their ratings read from the database).",
    **_PREDICTIONS,
)  # fmt: skip
PREDICTIONS_POSTED = Operation(
    "POST", "/predictions",
    "A user's predicted stars for a list of movies, for the context the caller sends.",
    body=POSTED, **_PREDICTIONS,
)  # fmt: skip
HEALTH = Operation(
    "GET", "/health", "Whether a model is loaded, and its version.",
    answer=HEALTHY, errors=(), extra_answers={503: NO_MODEL},
)  # fmt: skip
MODEL = Operation(
    "GET", "/model", "The /recommend model's meta.json.", answer=META, errors=(401, 503),
    security=KEY,
)  # fmt: skip
MODELS = Operation(
    "GET", "/models", "The live model of each kind.",
    answer=obj(["ranking", "rating"], ranking=nullable(META), rating=nullable(META)),
    errors=(401,), security=KEY,
)  # fmt: skip
METRICS = Operation(
    "GET", "/metrics", "Prometheus text: this worker's counters.", media="text/plain",
    errors=(401,), security=KEY,
)  # fmt: skip
OPERATIONS = (
    RECOMMEND, RECOMMEND_POSTED, SIMILAR, PREDICT, PREDICTIONS, PREDICTIONS_POSTED, HEALTH,
    MODEL, MODELS, METRICS,
)  # fmt: skip
OPENAPI = document(
    "movierec recommender",
    'Answers from the loaded model. Every error is JSON {"error": "one line"}.',
    OPERATIONS,
)
