"""Database ids to a model's dense indices: a binary search over the sorted ids it was trained on.

Its own module, with NumPy only, because serving needs it on every request: a recommender
server must not import the database driver, SQLAlchemy or surprise (what :mod:`.dataset`
needs to read ratings) just to find a user's row.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def dense_index(sorted_ids: np.ndarray, ids: Iterable[int]) -> np.ndarray:
    """Dense indices of those ``ids`` present in ``sorted_ids`` (absent ones are dropped)."""
    pos, found = dense_lookup(sorted_ids, np.fromiter(ids, dtype=np.int64))
    return pos[found]


def dense_lookup(sorted_ids: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``wanted`` (int64), its position in ``sorted_ids`` and whether it is there:
    one vectorised search for a whole list (a served request looks up each of a user's
    ratings)."""
    if wanted.size == 0 or sorted_ids.size == 0:
        return np.zeros(wanted.size, dtype=np.int64), np.zeros(wanted.size, dtype=bool)
    ids = sorted_ids.view(np.ndarray)  # a memory map's indexing costs more than the search
    pos = np.minimum(np.searchsorted(ids, wanted), ids.size - 1)
    return pos, ids[pos] == wanted
