"""A bounded load on the site for drills: virtual users who sign up, search, rate movies and
ask for their recommendations, each request's outcome recorded, each acknowledged rating kept.

A virtual user is a thread with its own cookie session (keep-alive connections, as a browser
has). It is given every address of the site (the two directors, as the two A records of a DNS
name) and behaves as a browser does with them: a connection that cannot be opened is tried
on the next address at once; a GET whose connection broke before an answer is tried on the
next address too; a POST that may have reached the server is never sent twice, so its
failure is counted. The load stays on 127.0.0.1 and ends at ``max_requests`` or
``max_seconds``, whichever comes first.

>>> with Load(["http://127.0.0.1:8000/", "http://127.0.0.1:8100/"]) as load:  # doctest: +SKIP
...     load.wait(2.0)
...     load.mark("fault")
...     kill_something()
...     load.wait(3.0)
>>> load.requests, load.acknowledged                                          # doctest: +SKIP
"""

from __future__ import annotations

import random
import re
import threading
import time
import uuid
from dataclasses import dataclass

import requests

CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
CSRF_FIELD = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
# What a virtual user does next, by weight: mostly reading, some writing, a few newcomers.
MIX = (("search", 40), ("rate", 30), ("for_you", 25), ("signup", 5))
TIMEOUT = 10.0  # a request unanswered after this counts as failed


@dataclass(frozen=True)
class Request:
    """One request as the user saw it (after a retry on another address, if there was one)."""

    kind: str  # signup, page, search, rate, for_you
    started: float  # time.monotonic()
    elapsed: float  # seconds
    status: int | None  # None: no HTTP answer at all
    error: str = ""  # the exception's class for a request without an answer
    degraded: bool = False  # answered, but with less than usual (recommendations unavailable)
    attempts: int = 1

    @property
    def failed(self) -> bool:
        return self.status is None or self.status >= 400

    @property
    def outcome(self) -> str:
        """``200``, ``502``, ``ConnectionError``, ... : what :class:`DrillReport` counts by."""
        return str(self.status) if self.status is not None else self.error


@dataclass(frozen=True)
class Rating:
    """A rating the site acknowledged (2xx): it must be in the database afterwards."""

    username: str
    movie_id: int
    rating: float


class _NoAnswer(Exception):
    """A request that got no HTTP answer from any address."""

    def __init__(self, error: str, attempts: int) -> None:
        super().__init__(error)
        self.error, self.attempts = error, attempts


class Load:
    """Start with ``with Load(urls) as load:`` (or :meth:`start` / :meth:`stop`)."""

    def __init__(
        self,
        urls: list[str],
        users: int = 4,
        max_requests: int = 5000,
        max_seconds: float = 60.0,
        movies: int = 120,
        think: float = 0.01,
        seed: int = 0,
        mix: tuple[tuple[str, int], ...] = MIX,
    ) -> None:
        self.urls = [u.rstrip("/") for u in urls]
        self.users, self.movies, self.think = users, movies, think
        self.max_requests, self.max_seconds = max_requests, max_seconds
        self.requests: list[Request] = []
        self.acknowledged: list[Rating] = []
        self.marks: dict[str, float] = {}
        self._seed, self.mix = seed, mix
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.started = 0.0
        self.stopped = 0.0

    # --- control -----------------------------------------------------------------------------

    def start(self) -> Load:
        self.started = time.monotonic()
        for index in range(self.users):
            thread = threading.Thread(target=self._user, args=(index,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(TIMEOUT * 2)
        self.stopped = time.monotonic()

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def wait(self, seconds: float) -> None:
        """Let the load run for ``seconds`` (less if it reaches its bounds)."""
        self._stop.wait(seconds)

    def mark(self, name: str) -> float:
        """Note when something happened (``fault``, ``restarted``); the time."""
        self.marks[name] = now = time.monotonic()
        return now

    @property
    def running(self) -> bool:
        return not self._stop.is_set()

    # --- a virtual user ----------------------------------------------------------------------

    def _user(self, index: int) -> None:
        rng = random.Random(self._seed * 1000 + index)
        kinds, weights = zip(*self.mix, strict=True)
        user = _User(self, rng)
        while self._within_bounds():
            kind = "signup" if user.username is None else rng.choices(kinds, weights)[0]
            getattr(user, kind)()
            self._stop.wait(self.think)

    def _within_bounds(self) -> bool:
        if self._stop.is_set():
            return False
        if len(self.requests) >= self.max_requests or (
            time.monotonic() - self.started > self.max_seconds
        ):
            self._stop.set()
            return False
        return True

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def _acknowledge(self, rating: Rating) -> None:
        with self._lock:
            self.acknowledged.append(rating)


class _User:
    """One virtual user's session: signs up, then reads and rates."""

    def __init__(self, load: Load, rng: random.Random) -> None:
        self.load, self.rng = load, rng
        self.username: str | None = None
        self.http = requests.Session()
        self.csrf = ""
        self.unrated: list[int] = []
        self.home = rng.randrange(len(load.urls))  # resolvers rotate the addresses

    def signup(self) -> None:
        """A newcomer: a fresh session, the sign-up form, then the home page (its CSRF token
        is the one the API wants)."""
        self.http.close()
        self.http, self.username = requests.Session(), None
        form = self.send("signup", "GET", "/auth/signup")
        token = CSRF_FIELD.search(form.text) if form is not None else None
        if token is None:
            return
        name = f"drill-{uuid.uuid4().hex[:16]}"
        password = uuid.uuid4().hex
        fields = {"username": name, "password": password, "confirm": password}
        answer = self.send(
            "signup", "POST", "/auth/signup", data={**fields, "csrf_token": token.group(1)},
            allow_redirects=False,
        )  # fmt: skip
        if answer is None or answer.status_code != 302:
            return
        page = self.send("page", "GET", "/")
        meta = CSRF_META.search(page.text) if page is not None else None
        if meta is not None:
            self.username, self.csrf = name, meta.group(1)
            self.unrated = self.rng.sample(range(1, self.load.movies + 1), self.load.movies)

    def search(self) -> None:
        words = self.rng.choice(["movie", "movie 1", "movi", f"movie {self.rng.randrange(120)}"])
        self.send("search", "GET", "/api/search", params={"q": words})

    def rate(self) -> None:
        if not self.unrated:  # every movie rated once: ratings stay unambiguous
            return self.for_you()
        movie_id, rating = self.unrated.pop(), self.rng.randrange(1, 11) / 2
        answer = self.send(
            "rate", "POST", "/api/ratings", json={"movie_id": movie_id, "rating": rating},
            headers={"X-CSRFToken": self.csrf},
        )  # fmt: skip
        if answer is not None and 200 <= answer.status_code < 300 and self.username:
            self.load._acknowledge(Rating(self.username, movie_id, rating))

    def for_you(self) -> None:
        self.send("for_you", "GET", "/api/recommendations", params={"k": 10})

    def send(self, kind: str, method: str, path: str, **options) -> requests.Response | None:
        """One request, recorded; the answer, or None when there was none."""
        started = time.monotonic()
        try:
            answer, attempts = self._try_addresses(method, path, options)
        except _NoAnswer as exc:
            elapsed = time.monotonic() - started
            self.load._record(Request(kind, started, elapsed, None, exc.error, False, exc.attempts))
            return None
        elapsed = time.monotonic() - started
        degraded = kind == "for_you" and answer.status_code == 200 and _limited(answer)
        self.load._record(
            Request(kind, started, elapsed, answer.status_code, "", degraded, attempts)
        )
        return answer

    def _try_addresses(
        self, method: str, path: str, options: dict
    ) -> tuple[requests.Response, int]:
        urls = self.load.urls
        order = [urls[(self.home + i) % len(urls)] for i in range(len(urls))]
        error = ""
        for attempt, base in enumerate(order):
            url = base + path
            try:
                return self.http.request(method, url, timeout=TIMEOUT, **options), attempt + 1
            # A director that dies while it sends the body cuts the answer short, as one
            # that dies before it answers closes the connection: a GET is asked again.
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
                error = _error_name(exc)
                never_sent = isinstance(exc, requests.ConnectTimeout) or "NewConnectionError" in (
                    repr(exc)
                )
                if not (never_sent or method == "GET"):
                    raise _NoAnswer(error, attempt + 1) from None
                self.home = (self.home + 1) % len(urls)  # this address is gone: stay away
            except requests.RequestException as exc:
                raise _NoAnswer(_error_name(exc), attempt + 1) from None
        raise _NoAnswer(error, len(urls))


def _limited(answer: requests.Response) -> bool:
    try:
        return bool(answer.json().get("limited"))
    except ValueError:
        return False


def _error_name(exc: requests.RequestException) -> str:
    """A short name for a request without an answer: refused, reset, closed, timeout."""
    text = repr(exc)
    for needle, name in (
        ("RemoteDisconnected", "closed"),
        ("ConnectionResetError", "reset"),
        ("Connection refused", "refused"),
        ("NewConnectionError", "refused"),
        ("Timeout", "timeout"),
    ):
        if needle in text:
            return name
    return type(exc).__name__
