"""A steady writer through the site, for failover drills: rates movies over the JSON API with
personal API tokens and remembers which writes the site acknowledged, so a drill can count
the acknowledged writes that were lost and time the outage as the site's users saw it.

Each write is a new (user, movie) pair, so "acknowledged and lost" is a plain lookup
afterwards. Bounded: it stops after ``max_seconds`` or ``stop()``, whichever comes first.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import requests
from sqlalchemy import select

from movierec.db import Database, Movie, Rating
from movierec.web.auth.tokens import create_token
from movierec.web.users import create_user

# Longer than any failover the drills allow: a request in flight when a primary is killed is
# held until the site gives up on it (12 s seen, then a 503 with Retry-After), and a client
# that hung up first would record "no answer" where the site did answer.
CLIENT_TIMEOUT = 30


def make_writers(database: Database, count: int, prefix: str) -> list[tuple[int, str]]:
    """``count`` new users with an API token each: ``[(user_id, token)]``."""
    found = []
    with database.session() as session:
        for i in range(count):
            user_id = create_user(session, f"{prefix}{i}", "!not-a-password-hash")
            assert user_id is not None
            found.append((user_id, create_token(session, user_id, "drill")))
    return found


def movie_ids(database: Database) -> list[int]:
    with database.session() as session:
        return list(session.scalars(select(Movie.id).order_by(Movie.id)))


@dataclass
class Outcome:
    at: float  # monotonic time the request was sent
    took: float
    status: int  # 0: no answer (connection refused, timeout)
    retry_after: str | None
    pair: tuple[int, int]


@dataclass
class SteadyWriter:
    """POST /api/ratings in a loop from one thread, a new (user, movie) pair each time."""

    site: str
    writers: list[tuple[int, str]]
    movies: list[int]
    max_seconds: float = 120.0
    pause: float = 0.02
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> SteadyWriter:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def _pairs(self):
        for movie in self.movies:
            for user_id, token in self.writers:
                yield user_id, token, movie

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        with requests.Session() as http:
            for user_id, token, movie in self._pairs():
                if self._stop.is_set() or time.monotonic() > deadline:
                    return
                sent = time.monotonic()
                try:
                    answer = http.post(
                        f"{self.site}/api/ratings",
                        json={"movie_id": movie, "rating": 4.5},
                        headers={"Authorization": f"Bearer {token}"},
                        timeout=CLIENT_TIMEOUT,
                    )
                    status, retry = answer.status_code, answer.headers.get("Retry-After")
                except requests.RequestException:
                    status, retry = 0, None
                self.outcomes.append(
                    Outcome(sent, time.monotonic() - sent, status, retry, (user_id, movie))
                )
                time.sleep(self.pause)

    def acknowledged(self) -> set[tuple[int, int]]:
        return {o.pair for o in self.outcomes if o.status == 200}

    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status != 200]

    def outage_after(self, moment: float) -> float:
        """Seconds from ``moment`` until the site took writes again: to the acknowledgement
        that ended the longest stretch after ``moment`` in which none arrived. A request held
        while the site waits for a new primary counts as outage, as a failed one does (the
        time of a failed request alone would hide the wait)."""
        _gap, end = self._longest_stall(moment)
        return end - moment

    def stall_after(self, moment: float) -> float:
        """The longest stretch after ``moment`` in which no acknowledgement arrived: the
        outage itself, without the time before it (a switchover's command and Patroni take
        seconds before the old primary stops)."""
        return self._longest_stall(moment)[0]

    def _longest_stall(self, moment: float) -> tuple[float, float]:
        answered = sorted(o.at + o.took for o in self.outcomes if o.status == 200)
        after = [moment] + [t for t in answered if t > moment]
        assert len(after) > 1, "the site never took a write again"
        return max((b - a, b) for a, b in zip(after, after[1:], strict=False))

    def lost(self, database: Database) -> set[tuple[int, int]]:
        """Acknowledged writes that are not in the database."""
        users = [user_id for user_id, _ in self.writers]
        with database.session() as session:
            rows = session.execute(
                select(Rating.user_id, Rating.movie_id).where(Rating.user_id.in_(users))
            )
            stored = {(u, m) for u, m in rows}
        return self.acknowledged() - stored
