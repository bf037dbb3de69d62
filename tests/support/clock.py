"""A clock for code that takes one (``clock=time.monotonic`` and the like)."""

from __future__ import annotations


class Clock:
    """Time that moves only when the test sets or adds to ``now``."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
