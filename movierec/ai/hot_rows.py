"""The rows a fold-in reads, the most rated movies' kept in process memory.

A user's signals are mostly popular movies (the ones users rate), so a fold-in reads the same
few thousand rows of a large memory-mapped matrix again and again: :class:`HotRows` copies
them into process memory within a byte budget (no page fault, no page-cache eviction risk),
and :func:`weighted_row_sum` sums a user's rows where they lie.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from movierec.ai.stats import COUNTERS


def weighted_row_sum(matrix: np.ndarray, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``weights @ matrix[rows]`` (a user's scores from their signals' rows of ``B``), in the
    matrix's dtype, reading the rows where they lie: gathering a hundred rows of a large ``B``
    first cost more than the sum itself.

    Through a one-row sparse product, which adds row after row (in the order of ``rows``)
    into each column: a column's sum does not depend on which other columns there are, so a
    shard holding some of the columns scores them exactly as the whole model does (BLAS's
    gemv blocks the sum differently for a different width)."""
    if not matrix.flags.c_contiguous:  # the product would copy all of it
        matrix, rows = np.ascontiguousarray(matrix[rows]), np.arange(len(rows))
    query = sp.csr_matrix(
        (weights, np.asarray(rows), np.array([0, len(rows)])), shape=(1, matrix.shape[0])
    )
    return np.asarray(query @ matrix).ravel()


class HotRows:
    """Rows of a (memory-mapped) matrix, the most popular ones copied into process memory.

    ``rows[idx]`` gathers rows like the matrix would; hot ones come from the copy (no page
    fault, no page-cache eviction risk). The copy holds the first rows of ``order`` that fit
    in ``budget`` bytes.
    """

    def __init__(self, matrix: np.ndarray, order: np.ndarray, budget: int):
        self.matrix = matrix
        row_bytes = max(1, int(np.prod(matrix.shape[1:], dtype=np.int64)) * matrix.itemsize)
        n_hot = int(min(len(order), max(0, budget) // row_bytes))
        self.ids = np.sort(np.asarray(order[:n_hot], dtype=np.int64))
        self.rows = np.ascontiguousarray(matrix[self.ids]) if n_hot else None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.matrix.shape

    @property
    def nbytes(self) -> int:
        return 0 if self.rows is None else int(self.rows.nbytes)

    def __getitem__(self, idx) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.int64)
        if self.rows is None or idx.ndim != 1:
            return np.asarray(self.matrix[idx])
        pos, hot = self._lookup(idx)
        if hot.all():
            return self.rows[pos]
        out = np.empty((idx.size, *self.matrix.shape[1:]), dtype=self.matrix.dtype)
        out[hot] = self.rows[pos[hot]]
        out[~hot] = self.matrix[idx[~hot]]
        return out

    def weighted_sum(self, idx: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """``weights @ self[idx]`` (see :func:`weighted_row_sum`) without gathering the rows:
        from the copy when all of them are in it."""
        pos = self._all_hot(idx)
        if pos is None:
            return weighted_row_sum(self.matrix, idx, weights)
        return weighted_row_sum(self.rows, pos, weights)

    def block(self, idx: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """``self[idx][:, columns]``, reading only those cells."""
        pos = self._all_hot(idx)
        if pos is None:
            return np.asarray(self.matrix[np.ix_(idx, columns)])
        return self.rows[np.ix_(pos, columns)]

    def _all_hot(self, idx: np.ndarray) -> np.ndarray | None:
        """The copy's positions of rows ``idx`` when it holds them all."""
        if self.rows is None:
            return None
        pos, hot = self._lookup(np.asarray(idx, dtype=np.int64))
        return pos if hot.all() else None

    def _lookup(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where each of ``idx`` would be in the copy, and whether it is there (counted)."""
        pos = np.minimum(np.searchsorted(self.ids, idx), self.ids.size - 1)
        hot = self.ids[pos] == idx
        n_hot = int(hot.sum())
        COUNTERS.add("movierec_recommender_cache_hits_total", n_hot, cache="hot_rows")
        COUNTERS.add("movierec_recommender_cache_misses_total", idx.size - n_hot, cache="hot_rows")
        return pos, hot
