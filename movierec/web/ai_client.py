"""The web layer's only way to the recommender (AI) servers: HTTP, never model code.

Several AI instances can serve the same model (replicas), and the model can be split by movie
over several *shards*, each served by its own group of replicas (setting ``ai_shards``).

* Balancing: each call goes to the less busy of two instances of the shard (power of two
  choices on calls in flight; ties go to the one used least recently).
* Timeouts and failover: a call that times out, is refused, answers 5xx or answers garbage is
  retried on another instance of the shard, each attempt with its own ``timeout``. A call
  whose kept-alive connection the server closed under it is first made again on a new one.
* Circuit breaker: after ``failure_threshold`` failures in a row an instance is skipped
  (circuit open) for ``cooldown`` seconds; then one call probes it (half-open), and its success
  closes the circuit, its failure opens it for another cool-down. When every instance of a
  shard is open, the call fails at once instead of waiting on timeouts.
* Fan-out: with several shards, ``recommend`` and ``similar`` ask every shard at once (in
  threads) and merge their top-N by score. A shard's AI server scores only its movies, those
  with ``movie_id % n == i``; the parameters ``shard=i&shards=n`` tell it which.

Requests are written with the recommender's own operations (:mod:`movierec.wire.recommender`),
the definitions its server reads them with: parameter names and formats cannot drift apart.
  When some shards answer and others do not, the answer is the merge of those that did,
  marked ``partial``.

Answers a caller must act on (404: the model does not know this movie) end the call at once,
since every instance would say the same.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlencode

import urllib3
from urllib3.exceptions import HTTPError, ProtocolError

from movierec.config import Settings
from movierec.errors import ConfigError, MovierecError, NotFound
from movierec.wire import recommender as wire
from movierec.wire.openapi import Operation

log = logging.getLogger(__name__)

FAILURE_THRESHOLD = 3
COOLDOWN_SECONDS = 5.0
VERSION_CHECK_SECONDS = 3.0
JSON_HEADERS = {"Content-Type": "application/json"}
Answer = TypeVar("Answer")


class AIUnavailable(MovierecError):
    """No recommender instance gave a usable answer."""


@dataclass(frozen=True)
class Scored:
    movie_id: int
    score: float
    # The movie the user liked that this one is recommended because of, when the model says.
    because: int | None = None
    # Of a genre the request demoted: it comes after every item that is not.
    demoted: bool = False
    # The user's predicted stars (asked for with stars=True), when the rating model has them.
    stars: float | None = None


@dataclass(frozen=True)
class AIAnswer:
    """Ranked movie ids from the recommender, best first."""

    items: tuple[Scored, ...]
    model_version: str | None = None
    fallback: bool = False
    reason: str | None = None
    # Some shards did not answer: the best of the movies of those that did.
    partial: bool = False


@dataclass(frozen=True)
class Predicted:
    """A user's predicted stars by movie (only movies they have not rated and the rating
    model knows), and the rating model's version."""

    stars: Mapping[int, float]
    model_version: str | None = None


@dataclass(frozen=True)
class InstanceStats:
    url: str
    shard: int
    calls: int
    failures: int
    in_flight: int
    circuit_open: int


class _BadAnswer(Exception):
    """This instance answered, but not with the documented JSON shape."""


class _Instance:
    """One AI server and what the client knows about it. Guarded by the client's lock."""

    def __init__(self, url: str, shard: int):
        self.url = url
        self.shard = shard
        self.in_flight = 0
        self.last_pick = -1
        self.failures_in_a_row = 0
        self.open_until: float | None = None  # circuit open until then; None: closed
        self.probing = False  # half-open: one call is trying it
        self.calls = 0
        self.failures = 0


class AIClient:
    """Calls ``/recommend``, ``/similar`` and ``/health`` on the recommender instances."""

    def __init__(
        self,
        urls: Sequence[str] = (),
        timeout: float = 2.0,
        http: urllib3.PoolManager | None = None,
        *,
        shards: Sequence[Sequence[str]] = (),
        failure_threshold: int = FAILURE_THRESHOLD,
        cooldown: float = COOLDOWN_SECONDS,
        version_check: float = VERSION_CHECK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        key: str | None = None,
    ):
        """``urls`` are replicas of one whole model; ``shards`` (when given) are groups of
        replicas, one group per movie shard, and ``urls`` is then unused. ``key`` is the
        recommenders' ``ai_key``, sent as a bearer key with every call.

        Raises :class:`ConfigError` when there is no URL, or a shard without one.
        """
        groups = [tuple(group) for group in shards] if shards else [tuple(urls)]
        if not groups or not all(groups):
            raise ConfigError("ai_urls: at least one recommender URL is needed (per shard)")
        self.shards = tuple(
            tuple(_Instance(url.rstrip("/"), index) for url in group)
            for index, group in enumerate(groups)
        )
        self.urls = tuple(i.url for group in self.shards for i in group)
        self.timeout = timeout
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self.version_check = version_check
        self._clock = clock
        self._http = http or _pool_manager(len(self.urls), timeout)
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._post_headers = {**JSON_HEADERS, **self._headers}
        self._lock = threading.Lock()
        self._ticket = itertools.count()
        self._random = random.Random()
        self._pool: ThreadPoolExecutor | None = None
        self._version: str | None = None
        self._version_checked = float("-inf")
        self._version_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> AIClient:
        """The client for ``ai_shards`` when set, else for ``ai_urls``."""
        if not settings.ai_key:
            log.warning("ai_key is not set: the recommender servers will refuse this site")
        return cls(
            settings.ai_urls, settings.ai_timeout, shards=settings.ai_shards, key=settings.ai_key
        )

    # --- the recommender's endpoints -----------------------------------------------------------

    def recommend(
        self,
        user_id: int,
        k: int,
        *,
        exclude: Sequence[int] = (),
        demote_genres: Sequence[str] = (),
        context: Mapping[str, Any] | None = None,
        stars: bool = False,
    ) -> AIAnswer:
        """The top ``k`` movies for ``user_id``, none of ``exclude`` (the first
        :data:`~movierec.wire.recommender.MAX_LIST` are sent), movies of ``demote_genres``
        after all others.

        ``context`` is what the database says about the user
        (:func:`movierec.db.user_signals.as_json`), when the caller has read it: it is sent
        with the request (a POST), so that the recommender need not read it. With ``stars``,
        each item carries the user's predicted stars too (same call).

        Raises :class:`AIUnavailable`.
        """
        values = {"user": user_id, "k": k, "exclude": exclude, "demote_genres": demote_genres}
        if stars:
            values["stars"] = "1"
        if context is None:
            return self._fan_out(wire.RECOMMEND, values, k)
        payload = json.dumps({"context": context}).encode()
        return self._fan_out(wire.RECOMMEND_POSTED, values, k, payload)

    def similar(self, movie_id: int, k: int) -> AIAnswer:
        """Up to ``k`` movies like ``movie_id``.

        Raises :class:`NotFound` when the model does not know the movie, :class:`AIUnavailable`
        when no instance answers.
        """
        return self._fan_out(wire.SIMILAR, {"movie": movie_id, "k": k}, k)

    def predictions(
        self,
        user_id: int,
        movie_ids: Sequence[int],
        context: Mapping[str, Any] | None = None,
    ) -> Predicted:
        """The user's predicted stars of ``movie_ids`` (the first
        :data:`~movierec.wire.recommender.MAX_PREDICT`), in one call: a page's whole list.
        ``context`` as for :meth:`recommend`. Every shard's server predicts every movie (the
        rating model's users and movies stay whole), so the first shard that answers does.

        Raises :class:`AIUnavailable`.
        """
        ids = list(dict.fromkeys(movie_ids))[: wire.MAX_PREDICT]
        if not ids:
            return Predicted({})
        query = wire.PREDICTIONS.query(user=user_id, movies=ids)
        op, payload = wire.PREDICTIONS, None
        if context is not None:
            op, payload = wire.PREDICTIONS_POSTED, json.dumps({"context": context}).encode()
        problems = []
        for index in range(len(self.shards)):
            try:
                return self._get(index, op, query, _predicted, payload)
            except (AIUnavailable, NotFound) as exc:
                problems.append(str(exc))
        raise AIUnavailable("; ".join(problems))

    def model_version(self) -> str | None:
        """The model version the AI servers report on ``/health``, asked at most every
        ``version_check`` seconds (one shard's versions joined by ``+`` when shards differ).

        Keeps the last known version (None before the first answer) when no instance answers;
        never raises and never makes two callers wait for the same check.
        """
        if self._clock() < self._version_checked + self.version_check:
            return self._version
        if not self._version_lock.acquire(blocking=False):
            return self._version  # another thread is asking right now
        try:
            self._version_checked = self._clock()
            versions = []
            for index in range(len(self.shards)):
                versions.append(self._get(index, wire.HEALTH, {}, _health_version))
            self._version = "+".join(dict.fromkeys(versions))
        except (AIUnavailable, NotFound) as exc:
            log.info("model version unknown, keeping %s: %s", self._version, exc)
        finally:
            self._version_lock.release()
        return self._version

    def health(self) -> list[tuple[str, bool]]:
        """Each instance with whether it answered ``/health`` with status ok (no balancing,
        no circuit breaker: every instance is asked)."""
        report = []
        for base in self.urls:
            try:
                resp = self._http.request(
                    wire.HEALTH.method, base + wire.HEALTH.path, headers=self._headers
                )
                report.append((base, resp.status == 200 and resp.json().get("status") == "ok"))
            except (HTTPError, ValueError, AttributeError):
                report.append((base, False))
        return report

    def stats(self) -> list[InstanceStats]:
        """Calls, failures, calls in flight and circuit state of each instance."""
        now = self._clock()
        with self._lock:
            return [
                InstanceStats(
                    i.url,
                    i.shard,
                    i.calls,
                    i.failures,
                    i.in_flight,
                    int(i.open_until is not None and (now < i.open_until or i.probing)),
                )
                for group in self.shards
                for i in group
            ]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.clear()

    # --- fan-out over shards ----------------------------------------------------------------------

    def _fan_out(
        self, op: Operation, values: Mapping[str, Any], k: int, payload: bytes | None = None
    ) -> AIAnswer:
        count = len(self.shards)
        if count == 1:
            return self._get(0, op, op.query(**values), _answer, payload)
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(
                        max_workers=min(32, 4 * count), thread_name_prefix="ai-fan-out"
                    )
        futures = [
            self._pool.submit(
                self._get, i, op, op.query(**values, shard=(i, count)), _answer, payload
            )
            for i in range(count)
        ]
        answers: list[AIAnswer] = []
        failed: list[str] = []
        unknown = 0
        for future in futures:
            try:
                answers.append(future.result())
            except AIUnavailable as exc:
                failed.append(str(exc))
            except NotFound:
                unknown += 1  # this shard does not know the movie; another one may
        if not answers:
            if unknown and not failed:
                raise NotFound(f"the recommender does not know {dict(values)}")
            raise AIUnavailable("; ".join(failed))
        return merge(answers, k, partial=bool(failed))

    # --- one shard: balancing, failover, circuit breaker ---------------------------------------

    def _get(
        self,
        shard: int,
        op: Operation,
        params: Mapping[str, str],
        parse: Callable[[Mapping[str, Any]], Answer],
        payload: bytes | None = None,
    ) -> Answer:
        """The JSON answer of ``op`` with the query ``params`` (and body ``payload``) from one
        of the shard's instances, as ``parse`` reads it (raising :class:`_BadAnswer` for one
        it cannot)."""
        path = op.path
        tried: set[_Instance] = set()
        problems: list[str] = []
        while True:
            instance = self._pick(self.shards[shard], tried)
            if instance is None:
                break
            tried.add(instance)
            ok = False
            try:
                resp = self._send(instance.url + path, params, payload)
                if resp.status == 404:
                    ok = True  # the instance is fine; the movie is unknown to the model
                    raise NotFound(f"the recommender does not know {dict(params)}")
                if resp.status >= 500:
                    problems.append(f"{instance.url}: HTTP {resp.status}")
                    continue
                if resp.status != 200:
                    # Our request (or our key: 401) is wrong; every instance would refuse it
                    # the same way.
                    ok = True
                    hint = " (check ai_key)" if resp.status == 401 else ""
                    raise AIUnavailable(f"recommender refused {path}: HTTP {resp.status}{hint}")
                try:
                    body = resp.json()
                    if not isinstance(body, dict):
                        raise _BadAnswer("not a JSON object")
                    parsed = parse(body)
                except (ValueError, _BadAnswer) as exc:
                    problems.append(f"{instance.url}: malformed answer ({exc})")
                    continue
                ok = True
                return parsed
            except HTTPError as exc:
                problems.append(f"{instance.url}: {type(exc).__name__}")
            finally:
                self._record(instance, ok)
        if not problems:
            problems.append(f"every instance of shard {shard} is failing (circuit open)")
        log.warning("no recommender answered %s: %s", path, "; ".join(problems))
        raise AIUnavailable("recommender unavailable: " + "; ".join(problems))

    def _send(
        self, url: str, params: Mapping[str, Any], payload: bytes | None
    ) -> urllib3.BaseHTTPResponse:
        """One call to ``url``: a GET, or a POST of ``payload`` when given.

        A kept-alive connection can be closed by the server (its keep-alive ran out) just as
        the pool hands it out again: the request then fails with a :class:`ProtocolError`
        with no answer. That call is made once more, on a new connection to the same
        instance, rather than counted against a healthy instance (with a single recommender,
        the page would have fallen back to popular movies). The calls only read, so making
        one twice is harmless; a server that really died refuses the new connection at once.
        """
        try:
            return self._send_once(url, params, payload)
        except ProtocolError:
            return self._send_once(url, params, payload)

    def _send_once(
        self, url: str, params: Mapping[str, Any], payload: bytes | None
    ) -> urllib3.BaseHTTPResponse:
        if payload is None:
            return self._http.request("GET", url, fields=params, headers=self._headers)
        resp = self._http.request(
            "POST", f"{url}?{urlencode(params)}", body=payload, headers=self._post_headers
        )
        if resp.status == 405:  # a recommender older than POST: it reads itself
            resp = self._http.request("GET", url, fields=params, headers=self._headers)
        return resp

    def _pick(self, group: Sequence[_Instance], tried: set[_Instance]) -> _Instance | None:
        """Two random candidates, the one with fewer calls in flight (then the one used least
        recently); instances already tried, or with an open circuit, are left out. An instance
        whose cool-down is over is a candidate for one probing call."""
        now = self._clock()
        with self._lock:
            usable = [
                i
                for i in group
                if i not in tried
                and (i.open_until is None or (now >= i.open_until and not i.probing))
            ]
            if not usable:
                return None
            if len(usable) > 2:
                usable = self._random.sample(usable, 2)
            chosen = min(usable, key=lambda i: (i.in_flight, i.last_pick))
            if chosen.open_until is not None:
                chosen.probing = True  # half-open: this call decides
            chosen.in_flight += 1
            chosen.calls += 1
            chosen.last_pick = next(self._ticket)
            return chosen

    def _record(self, instance: _Instance, ok: bool) -> None:
        with self._lock:
            instance.in_flight -= 1
            if ok:
                instance.failures_in_a_row = 0
                instance.open_until = None
                instance.probing = False
                return
            instance.failures += 1
            instance.failures_in_a_row += 1
            if instance.probing or instance.failures_in_a_row >= self.failure_threshold:
                if instance.open_until is None:
                    log.warning("AI instance %s failing: skipped for %.0fs", instance.url,
                                self.cooldown)  # fmt: skip
                instance.open_until = self._clock() + self.cooldown
                instance.probing = False


def _pool_manager(instances: int, timeout: float) -> urllib3.PoolManager:
    """Connections kept to each instance for a threaded worker. urllib3 itself rather than
    requests: a call costs a third of the CPU (no cookie jar, hooks or environment lookups,
    none of which a loopback JSON call needs), and the web worker's CPU is what bounds the
    rate of recommendation cache misses. Each attempt connects and reads within ``timeout``;
    no retries here (the caller retries on another instance)."""
    return urllib3.PoolManager(
        num_pools=max(10, instances),
        maxsize=32,
        timeout=urllib3.Timeout(connect=timeout, read=timeout),
        retries=urllib3.Retry(0, read=False, redirect=False),
    )


def merge(answers: Sequence[AIAnswer], k: int, partial: bool = False) -> AIAnswer:
    """The best ``k`` of the shards' answers by score (ties: lower movie id first), demoted
    movies after all others, as each shard ordered its own.

    Each shard holds different movies, so the top ``k`` of all movies is among the shards'
    top ``k`` lists. It is a fallback when any shard's answer is, its reason the first one
    given; differing model versions are joined with ``+``.
    """
    best: dict[int, Scored] = {}
    for answer in answers:
        for item in answer.items:
            if item.movie_id not in best or item.score > best[item.movie_id].score:
                best[item.movie_id] = item
    ranked = sorted(best.values(), key=lambda s: (s.demoted, -s.score, s.movie_id))[:k]
    versions = [a.model_version for a in answers if a.model_version is not None]
    return AIAnswer(
        items=tuple(ranked),
        model_version="+".join(dict.fromkeys(versions)) if versions else None,
        fallback=any(a.fallback for a in answers),
        reason=next((a.reason for a in answers if a.reason), None),
        partial=partial,
    )


def _health_version(body: Mapping[str, Any]) -> str:
    if body.get("status") != "ok":
        raise _BadAnswer(f"status {body.get('status')!r}")
    return str(body.get("model_version"))


def _items(body: Mapping[str, Any]) -> tuple[Scored, ...]:
    items = body.get("items")
    if not isinstance(items, list):
        raise _BadAnswer("no items list")
    try:
        return tuple(
            Scored(
                int(i["movie_id"]),
                float(i["score"]),
                _optional_int(i.get("because")),
                i.get("demoted") is True,
                _optional_stars(i.get("stars")),
            )
            for i in items
        )
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        raise _BadAnswer(f"bad item: {exc}") from exc


def _optional_int(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"not a movie id: {value!r}")
    return int(value)


def _optional_stars(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.5 <= value <= 5:
        raise ValueError(f"not stars: {value!r}")
    return float(value)


def _predicted(body: Mapping[str, Any]) -> Predicted:
    items = body.get("items")
    if not isinstance(items, list):
        raise _BadAnswer("no items list")
    try:
        stars = {int(i["movie_id"]): _optional_stars(i["stars"]) for i in items}
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        raise _BadAnswer(f"bad item: {exc}") from exc
    version = body.get("model_version")
    return Predicted(
        {m: v for m, v in stars.items() if v is not None},
        None if version is None else str(version),
    )


def _answer(body: Mapping[str, Any]) -> AIAnswer:
    version = body.get("model_version")
    reason = body.get("reason")
    return AIAnswer(
        items=_items(body),
        model_version=None if version is None else str(version),
        fallback=bool(body.get("fallback", False)),
        reason=None if reason is None else str(reason),
    )
