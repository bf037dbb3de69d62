"""Stand-in recommenders held to the wire contract (:mod:`movierec.wire.recommender`): they
read their requests with the operations the real server reads them with, and every JSON
answer they give is checked against the schema the real server's answers are documented by.
A stand-in that drifted from the contract fails the test instead of hiding a client bug."""

from __future__ import annotations

import json

import jsonschema_rs
from flask import Flask, g, jsonify, request

from movierec.errors import BadInput
from movierec.wire import recommender as wire

OPERATIONS = {(op.method, op.path): op for op in wire.OPERATIONS}


def held_to_the_contract(app: Flask) -> Flask:
    """``app`` with its requests read into ``g.args`` (a 400 for bad ones, as the real
    server answers) and its answers checked against the contract, unless the stand-in set
    ``g.misbehaving`` (a test asked it for a failure or a garbage answer)."""

    @app.before_request
    def read_request():
        op = OPERATIONS.get((request.method, request.path))
        if op is None:
            return None
        try:
            g.args = op.read(request.args)
        except BadInput as exc:
            return jsonify(error=str(exc)), 400
        return None

    @app.after_request
    def check_answer(response):
        op = OPERATIONS.get((request.method, request.path))
        schema = op.answer_schema(response.status_code) if op is not None else None
        if schema is not None and not g.get("misbehaving"):
            body = json.loads(response.get_data())
            errors = [e.message for e in jsonschema_rs.validator_for(schema).iter_errors(body)]
            assert not errors, f"stand-in answer breaks the contract: {errors}"
        return response

    return app
