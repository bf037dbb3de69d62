"""Serving sparse item-item weights (SANSA's ``B``): ``scores = q · B``.

``B`` is a CSR matrix stored as three plain arrays (``<name>_indptr|indices|data``) and
memory-mapped like every other array. A request reads the rows of the user's signals, about
``weights_per_movie`` entries each: its cost follows the signals, not the catalogue, and only
the movies reached get a score (every other one scores 0). A shard keeps the columns of its
movies (:func:`slice_columns`); the rows stay, since signals may be any movie. A column's sum
runs over the signals in the same order whichever other columns exist, so a shard scores its
movies exactly as the whole model does.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import scipy.sparse as sp

CSR_PARTS = ("indptr", "indices", "data")


def csr_arrays(prefix: str, matrix: sp.spmatrix) -> dict[str, np.ndarray]:
    """A CSR matrix as three plain arrays ``<prefix>_indptr|indices|data`` for the artifact;
    ``indptr`` and ``indices`` share one integer type, so that loading them maps, not copies."""
    matrix = sp.csr_matrix(matrix)
    matrix.sort_indices()
    index_type = np.int32 if max(matrix.nnz, *matrix.shape) < 2**31 else np.int64
    return {
        f"{prefix}_indptr": matrix.indptr.astype(index_type),
        f"{prefix}_indices": matrix.indices.astype(index_type),
        f"{prefix}_data": matrix.data.astype(np.float32),
    }


def csr_names(prefix: str) -> tuple[str, ...]:
    return tuple(f"{prefix}_{part}" for part in CSR_PARTS)


def csr_from_arrays(arrays: Mapping[str, np.ndarray], prefix: str, n_columns: int) -> sp.csr_matrix:
    """The CSR matrix of :func:`csr_arrays` over the (memory-mapped) arrays, without a copy."""
    indptr, indices, data = (arrays[name] for name in csr_names(prefix))
    matrix = sp.csr_matrix((indptr.shape[0] - 1, n_columns), dtype=np.float32)
    # Set the parts directly: the constructor would check (and may copy) every index.
    matrix.indptr, matrix.indices, matrix.data = indptr, indices, data
    return matrix


def slice_columns(
    arrays: Mapping[str, np.ndarray], prefix: str, columns: np.ndarray, n_columns: int
) -> dict[str, np.ndarray]:
    """The CSR matrix ``prefix`` keeping only the sorted ``columns``, renumbered ``0..``: the
    same rows, each with its entries in those columns (a shard's part of the decoder)."""
    indptr, indices, data = (np.asarray(arrays[name]) for name in csr_names(prefix))
    position = np.full(n_columns, -1, dtype=np.int64)
    position[columns] = np.arange(columns.size)
    new_position = position[indices]
    keep = new_position >= 0
    kept_before = np.r_[0, np.cumsum(keep)]
    index_type = indices.dtype
    return {
        f"{prefix}_indptr": kept_before[indptr].astype(index_type),
        f"{prefix}_indices": new_position[keep].astype(index_type),
        f"{prefix}_data": data[keep],
    }


class SparseWeights:
    """Sparse item-item weights ``B`` (row: a signal movie, any of the model's; column: a
    candidate), scored and explained for one user's signals."""

    def __init__(self, weights: sp.csr_matrix):
        self.weights = weights

    def scores(self, idx: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The candidates reached from signals ``idx`` weighing ``w`` (positions, ascending)
        and their scores ``Σ w_j B[j]``; every other candidate scores 0."""
        order = np.argsort(idx, kind="stable")
        query = sp.csr_matrix(
            (w[order].astype(np.float32), np.asarray(idx)[order], np.array([0, idx.size])),
            shape=(1, self.weights.shape[0]),
        )
        out = sp.csr_matrix(query @ self.weights)
        out.sort_indices()
        return out.indices.astype(np.int64), out.data.astype(np.float64)

    def contributions(self, idx: np.ndarray, w: np.ndarray, top: np.ndarray) -> np.ndarray:
        """Each signal's part of the scores of candidates ``top``, ``w_j B[j, top]``:
        ``(len(idx), len(top))``, whose columns sum to those scores."""
        if idx.size == 0 or top.size == 0:
            return np.zeros((idx.size, top.size))
        picked = sp.csr_matrix(
            (np.ones(top.size, dtype=np.float32), (np.asarray(top), np.arange(top.size))),
            shape=(self.weights.shape[1], top.size),
        )
        block = np.asarray((self.weights[np.asarray(idx)] @ picked).todense(), np.float64)
        return block * np.asarray(w, dtype=np.float64)[:, None]
