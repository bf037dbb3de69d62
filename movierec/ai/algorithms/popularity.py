"""Popularity: every user gets the most rated movies they have not rated. The floor to beat."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp

from movierec.ai.algorithms.base import RANKING, Algorithm, Fitted
from movierec.ai.dataset import RatingsData


class FittedPopularity(Fitted):
    kind = RANKING
    form = "popularity"

    def __init__(self, counts: np.ndarray):
        self.counts = counts.astype(np.float32)

    def score_users(self, users: np.ndarray, seen: sp.csr_matrix) -> np.ndarray:
        return np.tile(self.counts, (users.shape[0], 1))

    def arrays(self) -> dict[str, np.ndarray]:
        return {}


class Popularity(Algorithm):
    name = "popularity"
    kind = RANKING
    summary = "most rated movies (non-personal baseline)"

    def fit(self, data: RatingsData, rows, params: Mapping[str, Any], seed: int) -> Fitted:
        items = data.item_index if rows is None else data.item_index[rows]
        return FittedPopularity(np.bincount(items, minlength=data.n_items))
