"""A value read from the database at most every ``ttl`` seconds per process: for lists every
user shares and that a minute-old copy serves as well (the first visit's candidates, the new
movies)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from sqlalchemy.orm import Session

from movierec.web.db import read_session

T = TypeVar("T")


class Refreshed(Generic[T]):
    def __init__(self, read: Callable[[Session], T], ttl: float):
        self.read, self.ttl = read, ttl
        self._lock = threading.Lock()
        self._value: T | None = None
        self._expires = 0.0

    def get(self) -> T:
        """The value, read again when older than ``ttl`` (one reader at a time; the others
        wait for its answer). Raises :class:`DatabaseUnavailable` when it must be read and
        cannot."""
        with self._lock:
            if self._value is None or time.monotonic() >= self._expires:
                with read_session() as session:
                    self._value = self.read(session)
                self._expires = time.monotonic() + self.ttl
            return self._value
