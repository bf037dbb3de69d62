"""Keep passwords out of whatever movierec prints or logs.

Messages are redacted where they leave the program (the CLI's one-line errors, settings
errors, log records, ``cluster status``), whatever built them: a URL's password becomes
``***`` and so does a ``password=...`` of a libpq connection string. The settings that are
secrets in themselves are named once here, for the settings file's permission check.
"""

from __future__ import annotations

import logging
import re

HIDDEN = "***"
# Settings whose whole value is a secret (a URL's password is found by its shape instead).
SECRET_SETTINGS = frozenset(
    {"secret_key", "ai_key", "github_client_secret", "google_client_secret", "oidc_client_secret"}
)
# scheme://user:PASSWORD@host: everything from the first ":" after the user to the last "@"
# of the token, so that a malformed password holding "@" or "/" is hidden whole.
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s:/@'\"]*:)[^\s'\"]*(@)", re.IGNORECASE)
_KEYWORD_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s'\"]+)", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with every URL password and ``password=`` value replaced by ``***``."""
    text = _URL_PASSWORD.sub(rf"\g<1>{HIDDEN}\g<2>", text)
    return _KEYWORD_PASSWORD.sub(rf"\g<1>{HIDDEN}", text)


def url_has_password(url: str) -> bool:
    return bool(_URL_PASSWORD.search(url)) or bool(_KEYWORD_PASSWORD.search(url))


class RedactingFilter(logging.Filter):
    """A handler filter that redacts each record's message (and its traceback text) before
    any formatter sees it; the record is never dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True
