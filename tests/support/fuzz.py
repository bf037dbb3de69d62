"""Requests generated from an OpenAPI document (schemathesis over hypothesis), each sent and
its answer checked against the document: no 5xx, and status, content type, headers and body
as documented; for secured operations also that a request without (or with forged)
credentials is refused. Hypothesis is driven directly (schemathesis' pytest loader does not
work with this pytest), derandomized, and keeps no example database in the work tree."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.auths import AuthStorage


def fuzz(
    schema: Any,
    method: str,
    path: str,
    examples: int,
    token: str | None = None,
    excluded: Sequence[Callable] = (),
    invalid: bool = True,
) -> None:
    """Send ``examples`` valid and (with ``invalid``: an operation that takes input) as many
    invalid requests of one operation, with the API ``token`` as a Bearer header when given;
    raises the first failure hypothesis finds, with the request that caused it.
    ``excluded``: checks that do not apply (say why)."""
    schema.hook("filter_query")(_no_integral_floats)
    operation = schema[path][method]
    storage = None
    if token is not None:
        storage = AuthStorage()

        @storage.auth()
        class Bearer:
            def get(self, case: Any, context: Any) -> str:
                return token

            def set(self, case: Any, data: str, context: Any) -> None:
                case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}

    modes = (
        (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        if invalid
        else (GenerationMode.POSITIVE,)
    )
    for mode in modes:
        strategy = operation.as_strategy(generation_mode=mode, auth_storage=storage)

        @given(case=strategy)
        @settings(
            max_examples=examples,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            case.call_and_validate(excluded_checks=list(excluded))

        run()


def _no_integral_floats(context: Any, query: Any) -> bool:
    """Leave out queries with a float of no fraction where the document says integer: JSON
    Schema counts 10.0 as an integer, and the generator writes it "10.0"; in a query string
    the one rule for whole numbers reads ASCII digits only, so it is rightly a 400."""
    return not any(isinstance(v, float) and v.is_integer() for v in (query or {}).values())
