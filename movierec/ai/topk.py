"""Checking ``k`` and picking the ``k`` best of a score array: what every ``recommend`` and
``similar`` does, whatever scored the movies."""

from __future__ import annotations

import numpy as np

from movierec.errors import BadInput


def check_k(k: int) -> int:
    """``k`` as an int. Raises :class:`BadInput` unless it is a positive integer."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise BadInput(f"k must be a positive integer, not {k!r}")
    return int(k)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest finite scores, best first (ties: lower index); -inf marks
    excluded items."""
    k = min(k, int(np.count_nonzero(np.isfinite(scores))))
    if k == 0:
        return np.empty(0, dtype=np.int64)
    top = np.argpartition(-scores, k - 1)[:k] if k < scores.size else np.arange(k)
    return top[np.lexsort((top, -scores[top]))]
