"""Collective EASE (or, above the dense size, SANSA) + iALS, added with fixed scales: the best
top-N measured on ml-100k.

``score = s_ease / σ_ease + s_als / σ_als`` where ``s_ease = q · B`` (collective EASE, see
:mod:`movierec.ai.algorithms.ease`) and ``s_als`` is the ALS score of the user folded in
against the item factors (see :mod:`movierec.ai.algorithms.als`). The scales ``σ`` are global
constants fixed at training time: the standard deviation of each model's scores over the
(training user, unrated movie) pairs (over a seeded sample of at most ``SCALE_USERS`` users).
Being fixed and the sum linear, a movie's score depends on nothing but the user's signals and
that movie, so a shard scores its own movies exactly as the whole model would (per-user
z-scores measured the same NDCG@10, 0.5013 vs 0.5012, but would not shard). Both parts are
sums over the user's signals, so "because you liked X" names the signal with the largest
share of the blended score.

On ml-100k (issue protocol, mean of 3 seeds) the blend reaches NDCG@10 0.503 against 0.499
for collective EASE alone and 0.487 for iALS alone (400 factors); see BENCHMARKS.md. It costs
both fits (the dense EASE one bounds the catalogue: ``max_items``) and both artifacts' arrays.
``sansaals`` is the same sum with SANSA's sparse approximation of EASE
(:mod:`movierec.ai.algorithms.sansa`) as the item-item part: what ``auto`` trains above
``ease_max_items``.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from typing import Any

import implicit
import numpy as np
import scipy.sparse as sp

from movierec.ai.algorithms.als import Als, FittedAls
from movierec.ai.algorithms.base import RANKING, Algorithm, Fitted, Param
from movierec.ai.algorithms.ease import EASE_PARAMS, FittedEase, fit_ease
from movierec.ai.algorithms.sansa import SANSA_PARAMS, FittedSansa, fit_sansa
from movierec.ai.dataset import RatingsData, user_item_matrix

SCALE_USERS = 2000


def score_scale(scores: np.ndarray, seen: sp.csr_matrix) -> float:
    """Standard deviation of ``scores`` (users × items) over the unseen cells (1.0 when none)."""
    unseen = ~(seen.toarray() > 0)
    values = scores.astype(np.float64)[unseen]
    scale = float(values.std()) if values.size else 0.0
    return scale if np.isfinite(scale) and scale > 0 else 1.0


class FittedEaseAls(Fitted):
    """An item-item part (collective EASE, or SANSA above the dense size) plus iALS, each
    divided by its fixed scale; ``form`` names which (``easeals`` or ``sansaals``)."""

    kind = RANKING

    def __init__(
        self, items: Fitted, als: FittedAls, ease_scale: float, als_scale: float,
        form: str = "easeals",
    ):  # fmt: skip
        self.ease, self.als, self.form = items, als, form
        self.ease_scale, self.als_scale = float(ease_scale), float(als_scale)

    def score_users(self, users: np.ndarray, seen: sp.csr_matrix) -> np.ndarray:
        return (
            self.ease.score_users(users, seen) / self.ease_scale
            + self.als.score_users(users, seen) / self.als_scale
        )

    def arrays(self) -> dict[str, np.ndarray]:
        return {**self.ease.arrays(), **self.als.arrays()}

    def meta(self) -> dict[str, Any]:
        return {
            **self.als.meta(),
            **self.ease.meta(),
            "ease_scale": self.ease_scale,
            "als_scale": self.als_scale,
        }


def blend_params(item_params: tuple[Param, ...]) -> tuple[Param, ...]:
    """The item part's parameters (its rating_weight weighs the query of both parts) and
    ALS's."""
    return (*item_params, *(p for p in Als.params if p.name != "rating_weight"))


def blend(
    items: Fitted, data: RatingsData, rows, params: Mapping[str, Any], seed: int, form: str
) -> FittedEaseAls:
    """``items`` plus iALS fitted on the same rows, with the two scales measured."""
    als = Als().fit(data, rows, {p.name: params[p.name] for p in Als.params}, seed)
    assert isinstance(als, FittedAls)
    seen = user_item_matrix(data, rows, "rating")
    users = np.flatnonzero(np.diff(seen.indptr) > 0)
    if users.size > SCALE_USERS:
        users = np.sort(np.random.default_rng(seed).choice(users, SCALE_USERS, replace=False))
    if users.size == 0:
        return FittedEaseAls(items, als, 1.0, 1.0, form)
    seen_users = seen[users]
    ease_scale = score_scale(items.score_users(users, seen), seen_users)
    als_scale = score_scale(als.score_users(users, seen), seen_users)
    return FittedEaseAls(items, als, ease_scale, als_scale, form)


class ItemsPlusAls(Algorithm):
    """A blend: :meth:`item_part` (fitted by the subclass) plus iALS on the same rows, the
    form named after the algorithm."""

    kind = RANKING

    @abstractmethod
    def item_part(self, data: RatingsData, rows, params: Mapping[str, Any]) -> Fitted:
        """The item-item part, fitted on ``rows`` of ``data``."""

    def fit(self, data: RatingsData, rows, params: Mapping[str, Any], seed: int) -> Fitted:
        return blend(self.item_part(data, rows, params), data, rows, params, seed, self.name)


class EaseAls(ItemsPlusAls):
    name = "easeals"
    summary = "collective EASE + iALS, scaled sum (best top-N up to ~20k movies)"
    library = f"numpy + implicit {implicit.__version__}"
    # 64, 128, 200 and 400 ALS factors all measured 0.5029-0.5031; each request's fold-in
    # costs factors³, so ALS's 64 stay.
    params = blend_params(EASE_PARAMS)

    def item_part(self, data: RatingsData, rows, params: Mapping[str, Any]) -> Fitted:
        return FittedEase(fit_ease(data, rows, params, self.name), params["rating_weight"])


class SansaAls(ItemsPlusAls):
    """What ``auto`` trains above ``ease_max_items`` up to ``sansa_max_items`` (ALS above: its
    exact factorisation does not scale to any size, see ``choose_ranking_algo``): the blend
    with SANSA's sparse weights in place of EASE's dense ones (memory linear in the catalogue
    once fitted), the same fixed-scale sum.
    Measured (BENCHMARKS.md, "Large catalogues"), forced on the small data sets: NDCG@10
    0.496 on ml-100k (issue protocol; the blend 0.503) and 0.131 on ml-latest-small's
    time-ordered hold-out (the blend 0.132)."""

    name = "sansaals"
    summary = "collective SANSA (sparse EASE) + iALS, scaled sum (up to sansa_max_items)"
    library = f"sansa + implicit {implicit.__version__}"
    params = blend_params(SANSA_PARAMS)

    def item_part(self, data: RatingsData, rows, params: Mapping[str, Any]) -> Fitted:
        return FittedSansa(fit_sansa(data, rows, params), params["rating_weight"])
