"""The web layer's only way to the recommender (AI) servers: HTTP, never model code.

Several AI instances serve the same model; each call starts at the next instance in turn (so
load spreads even without the director) and moves on when one times out, refuses the
connection, answers 5xx or answers garbage. Answers a caller must act on (404: the model does
not know this movie) end the call at once, since every instance would say the same.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import requests

from movierec.errors import ConfigError, MovierecError, NotFound

log = logging.getLogger(__name__)


class AIUnavailable(MovierecError):
    """No recommender instance gave a usable answer."""


@dataclass(frozen=True)
class Scored:
    movie_id: int
    score: float


@dataclass(frozen=True)
class AIAnswer:
    """Ranked movie ids from the recommender, best first."""

    items: tuple[Scored, ...]
    model_version: str | None = None
    fallback: bool = False
    reason: str | None = None


class _BadAnswer(Exception):
    """This instance answered, but not with the documented JSON shape."""


class AIClient:
    """Calls ``/recommend`` and ``/similar`` on the first instance of ``urls`` that answers."""

    def __init__(self, urls: Sequence[str], timeout: float, http: requests.Session | None = None):
        """Raises :class:`ConfigError` when ``urls`` is empty."""
        if not urls:
            raise ConfigError("ai_urls: at least one recommender URL is needed")
        self.urls = tuple(url.rstrip("/") for url in urls)
        self.timeout = timeout
        self._http = http or requests.Session()
        # next() on a count is atomic under the GIL, so threaded workers share it safely.
        self._turn = itertools.count()

    def recommend(self, user_id: int, k: int) -> AIAnswer:
        """The top ``k`` movies for ``user_id``. Raises :class:`AIUnavailable`."""
        body = self._get("/recommend", {"user": user_id, "k": k})
        return _answer(body, fallback=body.get("fallback", False), reason=body.get("reason"))

    def similar(self, movie_id: int, k: int) -> AIAnswer:
        """Up to ``k`` movies like ``movie_id``.

        Raises :class:`NotFound` when the model does not know the movie, :class:`AIUnavailable`
        when no instance answers.
        """
        return _answer(self._get("/similar", {"movie": movie_id, "k": k}))

    def health(self) -> list[tuple[str, bool]]:
        """Each instance with whether it answered ``/health`` with status ok."""
        report = []
        for base in self.urls:
            try:
                resp = self._http.get(base + "/health", timeout=self.timeout)
                report.append((base, resp.ok and resp.json().get("status") == "ok"))
            except (requests.RequestException, ValueError):
                report.append((base, False))
        return report

    def close(self) -> None:
        self._http.close()

    def _get(self, path: str, params: Mapping[str, Any]) -> dict[str, Any]:
        start = next(self._turn) % len(self.urls)
        order = self.urls[start:] + self.urls[:start]
        problems = []
        for base in order:
            try:
                resp = self._http.get(base + path, params=params, timeout=self.timeout)
            except requests.RequestException as exc:
                problems.append(f"{base}: {type(exc).__name__}")
                continue
            if resp.status_code == 404:
                raise NotFound(f"the recommender does not know {dict(params)}")
            if resp.status_code >= 500:
                problems.append(f"{base}: HTTP {resp.status_code}")
                continue
            if resp.status_code != 200:
                # Our request is wrong; every instance would refuse it the same way.
                raise AIUnavailable(f"recommender refused {path}: HTTP {resp.status_code}")
            try:
                body = resp.json()
                if not isinstance(body, dict):
                    raise _BadAnswer("not a JSON object")
                _items(body)
            except (ValueError, _BadAnswer) as exc:
                problems.append(f"{base}: malformed answer ({exc})")
                continue
            return body
        log.warning("no recommender answered %s: %s", path, "; ".join(problems))
        raise AIUnavailable("recommender unavailable: " + "; ".join(problems))


def _items(body: Mapping[str, Any]) -> tuple[Scored, ...]:
    items = body.get("items")
    if not isinstance(items, list):
        raise _BadAnswer("no items list")
    try:
        return tuple(Scored(int(i["movie_id"]), float(i["score"])) for i in items)
    except (TypeError, KeyError, ValueError) as exc:
        raise _BadAnswer(f"bad item: {exc}") from exc


def _answer(body: Mapping[str, Any], fallback: Any = False, reason: Any = None) -> AIAnswer:
    version = body.get("model_version")
    return AIAnswer(
        items=_items(body),
        model_version=None if version is None else str(version),
        fallback=bool(fallback),
        reason=None if reason is None else str(reason),
    )
