"""Error answers: HTML pages for the site, ``{"error": ...}`` JSON under /api/, no tracebacks.

Expected failures arrive as :class:`MovierecError` subclasses and map to a status here; what
a person sees for a 5xx is a fixed sentence, while the detail goes to the log. A 503 (a
dependency that does not answer) says in ``Retry-After`` when to ask again: the error's
``retry_after``, as :mod:`movierec.db.errors` sets it per kind of failure.
"""

from __future__ import annotations

import logging

from flask import Flask, current_app, jsonify, render_template, request
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.wrappers import Response

from movierec.errors import BadInput, DatabaseUnavailable, MovierecError, NotFound
from movierec.redact import redact
from movierec.web.ai_client import AIUnavailable

log = logging.getLogger(__name__)
UNAVAILABLE = "The service is temporarily unavailable. Please try again in a moment."
STATUS = {BadInput: 400, NotFound: 404, DatabaseUnavailable: 503, AIUnavailable: 503}
# Seconds a client should wait before retrying after a 503 whose error does not say: a
# failover or switchover of the database takes a few seconds, an AI server's circuit opens
# for five.
RETRY_AFTER = 5
TITLES = {
    400: "Bad request",
    401: "Log in first",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    413: "Too large",
    429: "Too many attempts",
    500: "Something went wrong",
    502: "The other site failed",
    503: "Temporarily unavailable",
}


def init_app(app: Flask) -> None:
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(MovierecError, _movierec_error)


def _http_error(exc: HTTPException) -> tuple[Response | str, int] | Response:
    code = exc.code or 500
    if isinstance(exc, InternalServerError):
        # Flask hands over unhandled exceptions wrapped in a 500; log them, show nothing of them.
        if exc.original_exception is not None:
            log.error("unhandled error", exc_info=exc.original_exception)
        return _answer(500, "An unexpected error occurred; it has been logged.")
    answer = _answer(code, exc.description or TITLES.get(code, "Error"))
    # A 429's or 503's own Retry-After (werkzeug puts it in the exception's headers).
    retry = [value for name, value in exc.get_headers() if name == "Retry-After"]
    if retry:
        return _retry_later(answer, retry[0])
    return _retry_later(answer, RETRY_AFTER) if code == 503 else answer


def _retry_later(answer: tuple[Response | str, int], seconds: int | str) -> Response:
    response = current_app.make_response(answer)
    response.headers["Retry-After"] = str(seconds)
    return response


def _movierec_error(exc: MovierecError) -> tuple[Response | str, int] | Response:
    code = next((c for kind, c in STATUS.items() if isinstance(exc, kind)), 500)
    if code == 503:
        log.warning("%s: %s", type(exc).__name__, redact(str(exc)))
        return _retry_later(_answer(code, UNAVAILABLE), getattr(exc, "retry_after", RETRY_AFTER))
    if code >= 500:
        log.warning("%s: %s", type(exc).__name__, redact(str(exc)))
        return _answer(code, TITLES[500])
    return _answer(code, str(exc))


def _answer(code: int, message: str) -> tuple[Response | str, int]:
    if code == 503:
        return _with_retry_after(_body(code, message)), code
    return _body(code, message), code


def _with_retry_after(body: Response | str) -> Response:
    response = current_app.make_response(body)
    response.headers["Retry-After"] = str(RETRY_AFTER)
    return response


def _body(code: int, message: str) -> Response | str:
    if request.path.startswith("/api/"):
        return jsonify(error=message)
    context = {"code": code, "title": TITLES.get(code, "Error"), "message": message}
    if code >= 500:
        # Rendered without context processors: flask-login's loads the user from the database,
        # which may be what just failed. The page's navigation then leaves out account links.
        template = current_app.jinja_env.get_template("error.html")
        return template.render(**context, show_account=False)
    return render_template("error.html", **context)
