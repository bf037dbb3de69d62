"""Hostile input at scale: schemathesis generates requests from the recommender's own OpenAPI
document (/openapi.json, movierec.wire.recommender) and sends them to the server with a
trained model and its database; no answer may be a 5xx or differ from the document."""

from __future__ import annotations

import schemathesis
from support.fuzz import fuzz
from support.keys import AI_KEY

from movierec.ai.server import create_app
from movierec.db.roles import AI_ROLE
from movierec.wire import recommender as wire

EXAMPLES = 20  # per operation and mode (valid, invalid)


def test_no_answer_breaks_the_document(trained, settings, as_role):
    app = create_app(settings.replace(database_url=as_role(settings.database_url, AI_ROLE)))
    try:
        assert app.test_client().get("/openapi.json").get_json() == wire.OPENAPI
        schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
        schema.hook("filter_query")(_one_shard_of_the_count)
        schema.hook("filter_body")(_paired_ratings)
        for op in wire.OPERATIONS:
            token = AI_KEY if op.security else None
            fuzz(schema, op.method, op.path, EXAMPLES, token, invalid=bool(op.params or op.body))
    finally:
        app.extensions["movierec.ai"]["database"].dispose()


def _one_shard_of_the_count(context, query) -> bool:
    """Leave out generated queries that break the rule of the shard pair (both or neither,
    ``shard < shards``): a rule of two parameters, which OpenAPI cannot state, so the server
    rightly answers them 400 though each parameter alone is valid."""
    given = [name for name in ("shard", "shards") if query and query.get(name) not in (None, "")]
    if len(given) == 1:
        return False
    if len(given) == 2 and all(isinstance(query[name], int) for name in given):
        return query["shard"] < query["shards"]
    return True


def _paired_ratings(context, body) -> bool:
    """Leave out posted contexts whose ``movie_ids`` and ``stars`` differ in length: they
    pair up, a rule of two fields that the document states in words only."""
    found = body.get("context") if isinstance(body, dict) else None
    if not isinstance(found, dict):
        return True
    ids, stars = found.get("movie_ids") or [], found.get("stars") or []
    return not (isinstance(ids, list) and isinstance(stars, list) and len(ids) != len(stars))
