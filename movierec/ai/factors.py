"""The numbers a biased matrix-factorisation model consists of, and its rating estimate.

``r̂(u, i) = μ + b_u + b_i + q_i · p_u``, with surprise's rule for ids the training ratings did
not contain: an unknown user contributes neither ``b_u`` nor the dot product, an unknown item
neither ``b_i`` nor the dot product.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from surprise import SVD, Trainset

from movierec.ai.base import RATING_MAX, RATING_MIN


@dataclass(frozen=True)
class Factors:
    """Parameters of a fitted model, indexed by the dense indices of the training data."""

    global_mean: float
    user_bias: np.ndarray  # (n_users,)
    item_bias: np.ndarray  # (n_items,)
    user_factors: np.ndarray  # (n_users, n_factors)
    item_factors: np.ndarray  # (n_items, n_factors)
    known_users: np.ndarray  # bool (n_users,): had a rating in the training rows
    known_items: np.ndarray  # bool (n_items,)

    @classmethod
    def from_svd(cls, algo: SVD, trainset: Trainset) -> Factors:
        """Copy a fitted surprise SVD's parameters into float32 arrays."""
        known_users = np.zeros(trainset.n_users, dtype=bool)
        known_users[list(trainset.ur)] = True
        known_items = np.zeros(trainset.n_items, dtype=bool)
        known_items[list(trainset.ir)] = True
        return cls(
            global_mean=float(trainset.global_mean),
            user_bias=np.asarray(algo.bu, dtype=np.float32),
            item_bias=np.asarray(algo.bi, dtype=np.float32),
            user_factors=np.ascontiguousarray(algo.pu, dtype=np.float32),
            item_factors=np.ascontiguousarray(algo.qi, dtype=np.float32),
            known_users=known_users,
            known_items=known_items,
        )

    def estimate_pairs(self, users: np.ndarray, items: np.ndarray, clip: bool = True):
        """Estimates for the parallel dense-index arrays ``users`` and ``items`` (float64)."""
        ku = self.known_users[users]
        ki = self.known_items[items]
        both = ku & ki
        est = np.full(users.shape[0], self.global_mean, dtype=np.float64)
        est += np.where(ku, self.user_bias[users], 0.0)
        est += np.where(ki, self.item_bias[items], 0.0)
        dots = np.einsum("ij,ij->i", self.user_factors[users[both]], self.item_factors[items[both]])
        est[both] += dots
        return np.clip(est, RATING_MIN, RATING_MAX) if clip else est
