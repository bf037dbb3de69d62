"""surprise's rating-prediction algorithms behind the one trainer interface.

SVD, SVD++, NMF and BaselineOnly become :class:`~movierec.ai.factors.Factors` (served by
``FactorModel``); KNNBaseline keeps its similarity matrix (served by ``KnnModel``). Every
estimate is computed in NumPy from the fitted parameters and equals surprise's ``predict``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp
import surprise

from movierec.ai.algorithms.base import RATING, Algorithm, Fitted, Param, non_negative, positive
from movierec.ai.base import RATING_MAX, RATING_MIN
from movierec.ai.dataset import RatingsData, to_trainset
from movierec.ai.factors import Factors
from movierec.ai.knn import MAX_ENTITIES, KnnEstimator
from movierec.errors import BadInput

SIMILARITIES = ("msd", "cosine", "pearson", "pearson_baseline")


def known_masks(data: RatingsData, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    users = data.user_index if rows is None else data.user_index[rows]
    items = data.item_index if rows is None else data.item_index[rows]
    return (
        np.bincount(users, minlength=data.n_users) > 0,
        np.bincount(items, minlength=data.n_items) > 0,
    )


class FittedFactors(Fitted):
    kind = RATING
    form = "factors"

    def __init__(self, factors: Factors):
        self.factors = factors

    def estimate_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.factors.estimate_pairs(users, items)

    def score_users(self, users: np.ndarray, seen: sp.csr_matrix) -> np.ndarray:
        f = self.factors
        ku, ki = f.known_users[users], f.known_items
        dots = f.user_factors[users] @ f.item_factors.T
        known = ku[:, None] & ki[None, :]
        if not f.biased:
            return np.where(known, dots, f.global_mean)
        base = f.global_mean + (f.user_bias[users] * ku)[:, None] + (f.item_bias * ki)[None, :]
        return base + np.where(known, dots, 0.0)

    def arrays(self) -> dict[str, np.ndarray]:
        return {}  # training writes model_arrays(factors, ...), FactorModel's layout

    def meta(self) -> dict[str, Any]:
        return {"biased": self.factors.biased}


class FittedKnn(Fitted):
    kind = RATING
    form = "knn"

    def __init__(self, arrays: dict[str, np.ndarray], estimator: KnnEstimator):
        self._arrays = arrays
        self.estimator = estimator

    def estimate_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        est = self.estimator.estimate_pairs(users, items)
        return np.clip(est, RATING_MIN, RATING_MAX)

    def score_users(self, users: np.ndarray, seen: sp.csr_matrix) -> np.ndarray:
        raise BadInput("knnbaseline is not evaluated on top-N (one estimate per movie and user)")

    def arrays(self) -> dict[str, np.ndarray]:
        return self._arrays


class SurpriseAlgorithm(Algorithm):
    """One surprise class; ``build(params, seed)`` makes the configured instance."""

    kind = RATING
    library = f"scikit-surprise {surprise.__version__}"

    def build(self, params: Mapping[str, Any], seed: int) -> Any:
        raise NotImplementedError

    def fit(self, data: RatingsData, rows, params: Mapping[str, Any], seed: int) -> Fitted:
        if rows is not None and rows.size == 0 or data.n_ratings == 0:
            raise BadInput(f"{self.name} needs at least one rating to fit")
        trainset = to_trainset(data, rows)
        algo = self.build(params, seed)
        algo.fit(trainset)
        known_users, known_items = known_masks(data, rows)
        return FittedFactors(Factors.from_surprise(algo, trainset, known_users, known_items))


class Svd(SurpriseAlgorithm):
    name = "svd"
    summary = "biased matrix factorisation by SGD (Funk SVD)"
    params = (
        Param("factors", int, 100, "latent factors", positive, "positive"),
        Param("epochs", int, 20, "SGD passes", positive, "positive"),
        Param("lr", float, 0.005, "learning rate", positive, "positive"),
        Param("reg", float, 0.02, "L2 regularisation", non_negative, ">= 0"),
    )

    surprise_class = surprise.SVD

    def build(self, params, seed):
        return self.surprise_class(
            n_factors=params["factors"],
            n_epochs=params["epochs"],
            lr_all=params["lr"],
            reg_all=params["reg"],
            random_state=seed,
        )


class SvdPP(Svd):
    """Built like :class:`Svd`, with surprise's defaults for SVD++."""

    name = "svdpp"
    summary = "SVD with implicit feedback of what each user rated (slow)"
    params = (
        Param("factors", int, 20, "latent factors", positive, "positive"),
        Param("epochs", int, 20, "SGD passes", positive, "positive"),
        Param("lr", float, 0.007, "learning rate", positive, "positive"),
        Param("reg", float, 0.02, "L2 regularisation", non_negative, ">= 0"),
    )
    surprise_class = surprise.SVDpp


class Nmf(SurpriseAlgorithm):
    """NMF divides by each movie's rating count, so it is fitted on the users and movies the
    rows contain (compact indices) and its factors are spread back (zero, unknown) after."""

    name = "nmf"
    summary = "non-negative matrix factorisation"
    params = (
        Param("factors", int, 15, "latent factors", positive, "positive"),
        Param("epochs", int, 50, "SGD passes", positive, "positive"),
        Param("reg_pu", float, 0.06, "user regularisation", non_negative, ">= 0"),
        Param("reg_qi", float, 0.06, "item regularisation", non_negative, ">= 0"),
        Param("biased", bool, False, "add baselines", rule="true or false"),
    )

    def fit(self, data: RatingsData, rows, params: Mapping[str, Any], seed: int) -> Fitted:
        rows = np.arange(data.n_ratings) if rows is None else rows
        if rows.size == 0:
            raise BadInput("nmf needs at least one rating to fit")
        users, user_index = np.unique(data.user_index[rows], return_inverse=True)
        items, item_index = np.unique(data.item_index[rows], return_inverse=True)
        compact = RatingsData(
            user_index=user_index.astype(np.int32),
            item_index=item_index.astype(np.int32),
            ratings=data.ratings[rows],
            user_ids=data.user_ids[users],
            movie_ids=data.movie_ids[items],
        )
        small = super().fit(compact, None, params, seed)
        assert isinstance(small, FittedFactors)
        f = small.factors

        def spread(values: np.ndarray, index: np.ndarray, n: int) -> np.ndarray:
            out = np.zeros((n, *values.shape[1:]), dtype=values.dtype)
            out[index] = values
            return out

        known_users, known_items = known_masks(data, rows)
        return FittedFactors(
            Factors(
                global_mean=f.global_mean,
                user_bias=spread(f.user_bias, users, data.n_users),
                item_bias=spread(f.item_bias, items, data.n_items),
                user_factors=spread(f.user_factors, users, data.n_users),
                item_factors=spread(f.item_factors, items, data.n_items),
                known_users=known_users,
                known_items=known_items,
                biased=f.biased,
            )
        )

    def build(self, params, seed):
        return surprise.NMF(
            n_factors=params["factors"],
            n_epochs=params["epochs"],
            reg_pu=params["reg_pu"],
            reg_qi=params["reg_qi"],
            biased=params["biased"],
            random_state=seed,
        )


class BaselineOnly(SurpriseAlgorithm):
    name = "baselineonly"
    summary = "global mean + user bias + movie bias (ALS)"
    params = (
        Param("epochs", int, 10, "ALS passes", positive, "positive"),
        Param("reg_u", float, 15.0, "user bias regularisation", non_negative, ">= 0"),
        Param("reg_i", float, 10.0, "movie bias regularisation", non_negative, ">= 0"),
    )

    def build(self, params, seed):
        options = {"method": "als", "n_epochs": params["epochs"]}
        options |= {"reg_u": params["reg_u"], "reg_i": params["reg_i"]}
        return surprise.BaselineOnly(bsl_options=options, verbose=False)


class KnnBaseline(SurpriseAlgorithm):
    name = "knnbaseline"
    summary = "k nearest neighbours on baseline residuals (n² similarities)"
    can_rank = False
    params = (
        Param("k", int, 40, "neighbours", positive, "positive"),
        Param("min_k", int, 1, "fewest neighbours", positive, "positive"),
        Param(
            "sim", str, "msd", "similarity", lambda s: s in SIMILARITIES, " | ".join(SIMILARITIES)
        ),
        Param("user_based", bool, True, "neighbours are users", rule="true or false"),
        Param("shrinkage", int, 100, "pearson_baseline shrinkage", non_negative, ">= 0"),
    )

    def build(self, params, seed):
        sim = {"name": params["sim"], "user_based": params["user_based"]}
        if params["sim"] == "pearson_baseline":
            sim["shrinkage"] = params["shrinkage"]
        return surprise.KNNBaseline(
            k=params["k"], min_k=params["min_k"], sim_options=sim, verbose=False
        )

    def fit(self, data: RatingsData, rows, params: Mapping[str, Any], seed: int) -> Fitted:
        side = data.n_users if params["user_based"] else data.n_items
        if side > MAX_ENTITIES:
            who = "users" if params["user_based"] else "movies"
            raise BadInput(
                f"knnbaseline keeps a dense {side}² similarity matrix of {who}; above "
                f"{MAX_ENTITIES} use svd"
            )
        if rows is not None and rows.size == 0 or data.n_ratings == 0:
            raise BadInput("knnbaseline needs at least one rating to fit")
        trainset = to_trainset(data, rows)
        algo = self.build(params, seed)
        algo.fit(trainset)
        known_users, known_items = known_masks(data, rows)
        users = data.user_index if rows is None else data.user_index[rows]
        items = data.item_index if rows is None else data.item_index[rows]
        values = data.ratings if rows is None else data.ratings[rows]
        x, y = (users, items) if params["user_based"] else (items, users)
        order = np.argsort(y, kind="stable")
        n_y = data.n_items if params["user_based"] else data.n_users
        arrays = {
            "knn_sim": np.asarray(algo.sim, dtype=np.float32),
            "knn_indptr": np.r_[0, np.cumsum(np.bincount(y, minlength=n_y))].astype(np.int64),
            "knn_neighbours": x[order].astype(np.int32),
            "knn_ratings": values[order].astype(np.float32),
            "user_bias": np.asarray(algo.bu, dtype=np.float32),
            "item_bias": np.asarray(algo.bi, dtype=np.float32),
            "global_mean": np.array(trainset.global_mean, dtype=np.float64),
        }
        estimator = KnnEstimator(
            arrays,
            float(trainset.global_mean),
            np.asarray(algo.bu, dtype=np.float64),
            np.asarray(algo.bi, dtype=np.float64),
            known_users,
            known_items,
            params["k"],
            params["min_k"],
            params["user_based"],
        )
        return FittedKnn(arrays, estimator)
