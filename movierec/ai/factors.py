"""The numbers a biased matrix-factorisation model consists of, and its rating estimate.

``r̂(u, i) = μ + b_u + b_i + q_i · p_u``, with surprise's rule for ids the training ratings did
not contain: an unknown user contributes neither ``b_u`` nor the dot product, an unknown item
neither ``b_i`` nor the dot product.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
    biased: bool = True  # False (NMF): the estimate is the dot product alone, or the mean

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

    @classmethod
    def from_surprise(
        cls, algo: Any, trainset: Trainset, known_users: np.ndarray, known_items: np.ndarray
    ) -> Factors:
        """Parameters of a fitted SVD, SVD++, NMF or BaselineOnly as :class:`Factors`.

        SVD++'s implicit term ``|N(u)|^-½ Σ y_j`` is folded into the user factors (it depends
        on the training ratings only); BaselineOnly has zero factors. ``known_*`` must be
        computed from the rows, since surprise's baseline code adds empty users to ``ur``.
        """
        n_users, n_items = trainset.n_users, trainset.n_items
        if hasattr(algo, "pu"):
            pu = np.array(algo.pu, dtype=np.float64)
            qi = np.asarray(algo.qi, dtype=np.float32)
        else:
            pu, qi = np.zeros((n_users, 0)), np.zeros((n_items, 0), dtype=np.float32)
        if hasattr(algo, "yj"):
            yj = np.asarray(algo.yj, dtype=np.float64)
            for u, rated in trainset.ur.items():
                if rated:
                    items = [i for i, _ in rated]
                    pu[u] += yj[items].sum(axis=0) / np.sqrt(len(items))
        biased = bool(getattr(algo, "biased", True))  # only NMF and SVD have the switch
        bu, bi = (algo.bu, algo.bi) if biased else (np.zeros(n_users), np.zeros(n_items))
        return cls(
            global_mean=float(trainset.global_mean),
            user_bias=np.asarray(bu, dtype=np.float32),
            item_bias=np.asarray(bi, dtype=np.float32),
            user_factors=np.ascontiguousarray(pu, dtype=np.float32),
            item_factors=np.ascontiguousarray(qi, dtype=np.float32),
            known_users=known_users,
            known_items=known_items,
            biased=biased,
        )

    def estimate_pairs(self, users: np.ndarray, items: np.ndarray, clip: bool = True):
        """Estimates for the parallel dense-index arrays ``users`` and ``items`` (float64)."""
        ku = self.known_users[users]
        ki = self.known_items[items]
        both = ku & ki
        est = np.full(users.shape[0], self.global_mean, dtype=np.float64)
        if self.biased:
            est += np.where(ku, self.user_bias[users], 0.0)
            est += np.where(ki, self.item_bias[items], 0.0)
        else:
            est[both] = 0.0  # NMF: a known pair is the dot product alone
        dots = np.einsum("ij,ij->i", self.user_factors[users[both]], self.item_factors[items[both]])
        est[both] += dots
        return np.clip(est, RATING_MIN, RATING_MAX) if clip else est
