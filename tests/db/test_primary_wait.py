"""The rule for waiting out a switch of the primary: only connection attempts that something
turned away are made again, within one bounded window per engine; a real server that turns
connections away (read-only, as a demoted primary is) is waited for until it takes writes."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from sqlalchemy import text
from support.clock import Clock

from movierec.db import Database
from movierec.db.errors import turned_away
from movierec.db.primary_wait import PrimaryWait
from movierec.errors import DatabaseUnavailable

CLOSED = "connection to server failed: server closed the connection unexpectedly"
REFUSED = "connection to server failed: Connection refused"


class Attempts:
    """A connection attempt that fails with ``errors`` in turn, then answers "conn"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors, self.made = list(errors), 0

    def __call__(self) -> str:
        self.made += 1
        if self.errors:
            raise self.errors.pop(0)
        return "conn"


def waiting(seconds: float = 2.0) -> tuple[PrimaryWait, Clock]:
    clock = Clock()

    def sleep(pause: float) -> None:
        clock.now += pause

    return PrimaryWait(seconds, pause=0.1, clock=clock, sleep=sleep), clock


def test_what_counts_as_turned_away():
    assert turned_away(psycopg.OperationalError(CLOSED))
    assert turned_away(psycopg.OperationalError("failed: server is in hot standby mode"))
    assert turned_away(psycopg.OperationalError("failed: session is read-only"))
    shutting_down = "connection failed: FATAL:  the database system is shutting down"
    assert turned_away(psycopg.OperationalError(shutting_down))
    assert not turned_away(psycopg.OperationalError(REFUSED))
    assert not turned_away(psycopg.OperationalError("failed: timeout expired"))
    assert not turned_away(psycopg.errors.InvalidPassword("password authentication failed"))
    assert not turned_away(ValueError(CLOSED))


def test_an_attempt_turned_away_is_made_again_until_the_primary_answers():
    wait, clock = waiting()
    attempts = Attempts(*(psycopg.OperationalError(CLOSED) for _ in range(5)))
    assert wait.connect(attempts) == "conn"
    assert attempts.made == 6
    assert clock.now == pytest.approx(0.5)


def test_an_attempt_nothing_answered_fails_at_once():
    wait, clock = waiting()
    attempts = Attempts(psycopg.OperationalError(REFUSED))
    with pytest.raises(psycopg.OperationalError, match="refused"):
        wait.connect(attempts)
    assert attempts.made == 1 and clock.now == 0


def test_the_window_is_bounded_and_shared_until_an_attempt_gets_through():
    wait, clock = waiting(seconds=2.0)
    never = Attempts(*(psycopg.OperationalError(CLOSED) for _ in range(1000)))
    with pytest.raises(psycopg.OperationalError):
        wait.connect(never)
    assert clock.now == pytest.approx(2.0)
    assert 15 <= never.made <= 22
    # The primary is still missing: a request now is not held up another window.
    made = never.made
    clock.now += 0.5
    with pytest.raises(psycopg.OperationalError):
        wait.connect(never)
    assert never.made == made + 1
    # One attempt got through: the next switch gets a whole window again.
    assert wait.connect(Attempts()) == "conn"
    started = clock.now
    with pytest.raises(psycopg.OperationalError):
        wait.connect(never)
    assert clock.now - started == pytest.approx(2.0)


def test_a_quiet_while_after_a_long_outage_opens_a_new_window():
    wait, clock = waiting(seconds=1.0)
    never = Attempts(*(psycopg.OperationalError(CLOSED) for _ in range(1000)))
    with pytest.raises(psycopg.OperationalError):
        wait.connect(never)
    clock.now += 5  # no attempt at all meanwhile
    started = clock.now
    with pytest.raises(psycopg.OperationalError):
        wait.connect(never)
    assert clock.now - started == pytest.approx(1.0)


def _read_only(db_url: str, connect, on: bool) -> None:
    name = db_url.rsplit("/", 1)[1]
    with connect(db_url) as conn:
        conn.execute("SET default_transaction_read_only = off")  # this session may write
        conn.execute(f"ALTER DATABASE {name} SET default_transaction_read_only = {on}")


def test_the_primary_engine_waits_for_a_server_that_takes_writes(settings, db_url, connect):
    """A database that turns sessions read-only stands in for a demoted primary: libpq
    refuses it (target_session_attrs=read-write) and the engine asks again until it is
    writable, within database_connect_wait."""
    _read_only(db_url, connect, True)
    released = threading.Timer(0.6, _read_only, (db_url, connect, False))
    started = time.monotonic()
    released.start()
    try:
        with Database(settings.replace(database_connect_wait=10.0)) as db, db.session() as s:
            assert s.execute(text("SHOW transaction_read_only")).scalar_one() == "off"
    finally:
        released.join()
    assert 0.5 < time.monotonic() - started < 5


def test_the_primary_engine_gives_up_after_the_wait(settings, db_url, connect):
    _read_only(db_url, connect, True)
    try:
        db = Database(settings.replace(database_connect_wait=0.5))
        started = time.monotonic()
        with db, pytest.raises(DatabaseUnavailable, match="read-only"):
            db.check()
        assert 0.4 < time.monotonic() - started < 3
    finally:
        _read_only(db_url, connect, False)
