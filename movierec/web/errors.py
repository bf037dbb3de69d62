"""Error answers: HTML pages for the site, ``{"error": ...}`` JSON under /api/, no tracebacks.

Expected failures arrive as :class:`MovierecError` subclasses and map to a status here; what
a person sees for a 5xx is a fixed sentence, while the detail goes to the log.
"""

from __future__ import annotations

import logging

from flask import Flask, current_app, jsonify, render_template, request
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.wrappers import Response

from movierec.errors import BadInput, DatabaseUnavailable, MovierecError, NotFound
from movierec.web import db
from movierec.web.ai_client import AIUnavailable

log = logging.getLogger(__name__)
UNAVAILABLE = "The service is temporarily unavailable. Please try again in a moment."
# Seconds a client should wait before retrying after a 503: a failover or switchover of the
# database takes a few seconds, an AI server's circuit opens for five.
RETRY_AFTER = 5
STATUS = {BadInput: 400, NotFound: 404, DatabaseUnavailable: 503, AIUnavailable: 503}
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
    app.register_error_handler(DBAPIError, _driver_error)


def _driver_error(exc: DBAPIError) -> tuple[Response | str, int]:
    """A statement of the request's session failed after the session was opened (the
    connection was cut by a failover, the server became a replica): the db layer's rule says
    what it means. An error it does not know stays a bug (500, logged)."""
    translated = db.database().translate(exc)
    if translated is None:
        raise exc
    return _movierec_error(translated)


def _http_error(exc: HTTPException) -> tuple[Response | str, int]:
    code = exc.code or 500
    if isinstance(exc, InternalServerError):
        # Flask hands over unhandled exceptions wrapped in a 500; log them, show nothing of them.
        if exc.original_exception is not None:
            log.error("unhandled error", exc_info=exc.original_exception)
        return _answer(500, "An unexpected error occurred; it has been logged.")
    return _answer(code, exc.description or TITLES.get(code, "Error"))


def _movierec_error(exc: MovierecError) -> tuple[Response | str, int]:
    code = next((c for kind, c in STATUS.items() if isinstance(exc, kind)), 500)
    if code >= 500:
        log.warning("%s: %s", type(exc).__name__, exc)
        return _answer(code, UNAVAILABLE if code == 503 else TITLES[500])
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
