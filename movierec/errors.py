"""Every error movierec raises on purpose descends from :class:`MovierecError`.

The CLI and the web layer catch this one base class and turn it into a one-line message (CLI) or
a 4xx/5xx JSON/HTML answer (web); anything else is a bug and keeps its traceback.
"""


class MovierecError(Exception):
    """Base of all expected failures; ``str(err)`` is a one-line message for a person."""


class ConfigError(MovierecError):
    """A setting is missing or malformed."""


class BadInput(MovierecError):
    """Input from a user or a file is not what was expected (the message says where and what)."""


class NotFound(MovierecError):
    """A requested object (movie, user, model version) does not exist."""


class DatabaseUnavailable(MovierecError):
    """The database server cannot be reached or refused the connection.

    ``retry_after``: seconds a client should wait before asking again (the site's 503
    answers say it in ``Retry-After``); a restart or a failover takes a few.
    ``disconnected``: the connection turned out dead and the pool dropped it (and the
    others): asking again at once connects afresh."""

    retry_after = 5
    disconnected = False


class ModelNotReady(MovierecError):
    """No trained model artifact is available yet."""

    retry_after = 30  # a model is trained and picked up in minutes, not seconds


class OpsCommandFailed(MovierecError):
    """An external tool (initdb, pg_ctl, gunicorn, ...) exited with an error."""


def first_line(exc: BaseException) -> str:
    """The first line of an error's message, for a one-line report: PostgreSQL's add DETAIL
    and HINT lines, and a wrapper (SQLAlchemy's) gives the error it wraps as ``orig``. An
    error without a message is named by its type."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
