"""Operations (a method on a path, its parameters, its answers) and the OpenAPI document built
from them.

A server reads its query string with :meth:`Operation.read`, a client writes one with
:meth:`Operation.query`, and ``/openapi.json`` is :func:`document` of the same operations: the
description cannot drift from what is parsed, because it is the same objects.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from movierec.wire.params import Param, read_args, write_args

OPENAPI_VERSION = "3.1.0"  # its schemas are JSON Schema (2020-12): any validator reads them
ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string", "description": "one line for a person"}},
}
ERRORS = {
    400: "Bad parameters or body; the message says which and why.",
    401: "Log in first (a session cookie, or an API token as a Bearer header).",
    403: "Not allowed for this account.",
    404: "No such object.",
    405: "Method not allowed.",
    413: "The body is too large.",
    414: "The request line is too long.",
    429: "Too many attempts; wait before trying again.",
    503: "A dependency (database, model) is unavailable; retry after Retry-After seconds.",
}
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer", "minimum": 1},
    }
}


SCHEMES: dict[str, dict[str, str]] = {
    "session": {"type": "apiKey", "in": "cookie", "name": "session"},  # a logged-in browser
    "token": {"type": "http", "scheme": "bearer"},  # a user's API token
    "key": {"type": "http", "scheme": "bearer"},  # the recommender key (ai_key)
}
LOGGED_IN = ("session", "token")


@dataclass(frozen=True)
class Operation:
    """One method on one path. ``answer`` is the JSON schema of the 200 body (None: not
    JSON, see ``media``); ``errors`` the documented error statuses (JSON ``{"error"}``)."""

    method: str
    path: str
    summary: str
    params: tuple[Param, ...] = ()
    answer: Mapping[str, Any] | None = None
    errors: tuple[int, ...] = (400,)
    body: Mapping[str, Any] | None = None
    media: str = "application/json"
    path_params: tuple[Param, ...] = ()
    # The security schemes (:data:`SCHEMES`) any one of which the caller must present.
    security: tuple[str, ...] = ()
    extra_answers: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)

    def read(self, args: Mapping[str, str]) -> dict[str, Any]:
        """The operation's query parameters from ``args``, by name. Raises
        :class:`~movierec.errors.BadInput` naming every problem."""
        return read_args(self.params, args)

    def query(self, **values: Any) -> dict[str, str]:
        """The query fields for ``values`` (by parameter name; None: the server's default)."""
        return write_args(self.params, values)

    def answer_schema(self, status: int) -> Mapping[str, Any] | None:
        """The JSON schema of a ``status`` answer (None: undocumented or not JSON)."""
        if status == 200:
            return self.answer if self.media == "application/json" else None
        if status in self.extra_answers:
            return self.extra_answers[status]
        return ERROR if status in self.errors else None

    def openapi(self) -> dict[str, Any]:
        parameters = [p for param in self.params for p in param.openapi()]
        for param in self.path_params:
            (found,) = param.openapi()
            parameters.append({**found, "in": "path", "required": True})
        content = {self.media: {"schema": dict(self.answer or {"type": "string"})}}
        responses: dict[str, Any] = {"200": {"description": "OK", "content": content}}
        for status, schema in self.extra_answers.items():
            responses[str(status)] = {
                "description": ERRORS.get(status, "See the body."),
                "content": {"application/json": {"schema": dict(schema)}},
            }
        for status in self.errors:
            if str(status) in responses:
                continue
            responses[str(status)] = {
                "description": ERRORS[status],
                "content": {"application/json": {"schema": ERROR}},
            }
            if status == 503:
                responses[str(status)]["headers"] = RETRY_AFTER
        found: dict[str, Any] = {
            "summary": self.summary,
            "operationId": self.method.lower() + re.sub(r"\W+", "_", self.path).rstrip("_"),
            "parameters": parameters,
            "responses": responses,
        }
        if self.body is not None:
            found["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": dict(self.body)}},
            }
        if self.security:
            found["security"] = [{name: []} for name in self.security]
        return found


def document(
    title: str, description: str, operations: Sequence[Operation], version: str = "1"
) -> dict[str, Any]:
    """The OpenAPI document of ``operations``."""
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = op.openapi()
    doc: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": version, "description": description},
        "paths": paths,
    }
    used = sorted({name for op in operations for name in op.security})
    if used:
        doc["components"] = {"securitySchemes": {name: SCHEMES[name] for name in used}}
    return doc


def array_of(items: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "array", "items": dict(items), **extra}


def obj(required: Sequence[str], **properties: Mapping[str, Any]) -> dict[str, Any]:
    """A closed JSON object schema: these properties, ``required`` among them, no others."""
    return {
        "type": "object",
        "required": list(required),
        "properties": {name: dict(schema) for name, schema in properties.items()},
        "additionalProperties": False,
    }


def nullable(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {"anyOf": [dict(schema), {"type": "null"}]}


INTEGER = {"type": "integer"}
NUMBER = {"type": "number"}
STRING = {"type": "string"}
BOOLEAN = {"type": "boolean"}
