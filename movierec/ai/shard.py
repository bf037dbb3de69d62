"""A shard of the catalogue: shard ``i`` of ``n`` holds the movies with ``movie_id % n == i``.

The rule needs no table, is the same on every server and on the web side (which merges the
shards' answers), and spreads old and new, popular and obscure movies evenly. Scores do not
depend on the shard: it is the same model and the same scoring, restricted to fewer movies, so
the merge by score of every shard's top-k is the unsharded top-k. How a model keeps only one
shard's movies is :mod:`movierec.ai.candidates`' and :mod:`movierec.ai.slices`' business.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from movierec.errors import BadInput
from movierec.wire.recommender import MAX_SHARDS

SHARD_PATTERN = re.compile(r"^\s*(\d{1,4})\s*/\s*(\d{1,4})\s*$")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``: the movies with ``movie_id % count == index``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not (1 <= self.count <= MAX_SHARDS and 0 <= self.index < self.count):
            raise BadInput(f"shard must be i/n with 0 <= i < n <= {MAX_SHARDS}, not {self}")

    @classmethod
    def parse(cls, text: str | None) -> Shard | None:
        """``"i/n"`` as a shard, ``""`` or None as none. Raises :class:`BadInput`."""
        if not text or not text.strip():
            return None
        found = SHARD_PATTERN.match(text)
        if not found:
            raise BadInput(f"shard must be written i/n (e.g. 0/4), not {text!r}")
        return cls(int(found[1]), int(found[2]))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def mask(self, movie_ids: np.ndarray) -> np.ndarray:
        return np.asarray(movie_ids) % self.count == self.index
