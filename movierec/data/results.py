"""What the data commands hand back: frozen summaries and the progress callback type."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

#: ``progress(done, total)``: the same shape as :func:`movierec.cli.common.progress_bar`.
Progress = Callable[[int, int | None], None]


def no_progress(done: int, total: int | None = None) -> None:
    """The progress callback used when the caller passes none."""


@dataclass(frozen=True)
class ImportSummary:
    """One MovieLens import: rows read from the files (and now in the database), and time."""

    source: str
    movies: int
    users: int
    ratings: int
    seconds: float


@dataclass(frozen=True)
class GenerateSummary:
    """One synthetic catalogue written to the database."""

    movies: int
    users: int
    ratings: int
    preferences: int
    seconds: float
