"""Implicit-feedback ALS (Hu, Koren & Volinsky 2008) through the ``implicit`` library.

Confidence of a rated movie is ``alpha · w`` with ``w`` the EASE-style signal weight of its
rating. Only item factors are kept: a user's vector is solved from their signals against the
fixed item factors at request time (the same least-squares step ALS alternates), so ratings
made after training count at once and the artifact does not grow with the number of users.
Memory is ``n_items × factors`` float32 (a million movies × 64 factors = 256 MB) and a request
costs one ``factors²`` solve plus one matrix-vector product over the catalogue.

The defaults are what ``auto`` trains above ``sansa_max_items``, so they are tuned: strong
regularisation and confidence (reg 50, alpha 8, as Rendle et al. 2021 find for iALS, and as
the EASE blends already used) rank at NDCG@10 0.4866 on ml-100k (the random protocol, 3 seeds)
and 0.1194 on ml-latest-small's time split, against 0.3877 and 0.1078 with the first defaults
(reg 0.05, alpha 2): 96.7 % and 90.4 % of the EASE blend. The optimum is narrow (reg 35 or 70:
0.464; alpha 4 or 16: 0.455, 0.446), and more factors buy little (128: 0.4865 / 0.1225; 400:
0.4871 / 0.1241) at two to six times the served factors (BENCHMARKS.md, "Large catalogues").
``implicit`` does not scale ``reg`` by how often a user or movie occurs, so on a toy catalogue
(the tests' 150 users) reg 50 shrinks every factor onto one direction and every score ties:
lower it there (``auto`` trains the EASE blend at such sizes anyway).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import implicit
import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from movierec.ai.algorithms.base import RANKING, Algorithm, Fitted, Param, non_negative, positive
from movierec.ai.dataset import RatingsData, user_item_matrix
from movierec.ai.folding import fold_in, signal_weights


class FittedAls(Fitted):
    kind = RANKING
    form = "als"

    def __init__(self, item_factors: np.ndarray, reg: float, alpha: float, rating_weight: float):
        self.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
        self.gram = self.item_factors.T.astype(np.float64) @ self.item_factors
        self.reg, self.alpha, self.rating_weight = reg, alpha, rating_weight

    def score_users(self, users: np.ndarray, seen: sp.csr_matrix) -> np.ndarray:
        vectors = np.zeros((users.shape[0], self.item_factors.shape[1]), dtype=np.float32)
        # One user's solve is a factors² Cholesky: OpenBLAS splits it over threads from 128
        # factors up, and with the cores busy those threads wait on each other. 100 users at
        # 128 factors, load 4 on 2 cores: 2.7-7.7 s with 2 BLAS threads, 0.08 s with one.
        # (Servers run with one already: ai_blas_threads.)
        with threadpool_limits(1, "blas"):
            for row, user in enumerate(users.tolist()):
                start, end = seen.indptr[user], seen.indptr[user + 1]
                if start == end:
                    continue
                confidence = self.alpha * signal_weights(seen.data[start:end], self.rating_weight)
                vectors[row] = fold_in(
                    self.item_factors, self.gram, self.reg, seen.indices[start:end], confidence
                ).vector
        return vectors @ self.item_factors.T

    def arrays(self) -> dict[str, np.ndarray]:
        norms = np.linalg.norm(self.item_factors, axis=1).astype(np.float32)
        return {"item_factors": self.item_factors, "item_gram": self.gram, "item_norms": norms}

    def meta(self) -> dict[str, Any]:
        return {"reg": self.reg, "alpha": self.alpha, "rating_weight": self.rating_weight}


class Als(Algorithm):
    name = "als"
    kind = RANKING
    summary = "implicit-feedback matrix factorisation (any catalogue size)"
    library = f"implicit {implicit.__version__}"
    params = (
        Param("factors", int, 64, "latent factors", positive, "positive"),
        Param("reg", float, 50.0, "L2 regularisation", non_negative, ">= 0"),
        Param("alpha", float, 8.0, "confidence scale", positive, "positive"),
        Param("iterations", int, 15, "ALS sweeps", positive, "positive"),
        Param("rating_weight", float, 0.2, "extra weight per star above 3", non_negative, ">= 0"),
        Param("threads", int, 0, "0 = all cores", non_negative, ">= 0"),
    )

    def fit(self, data: RatingsData, rows, params: Mapping[str, Any], seed: int) -> Fitted:
        x = user_item_matrix(data, rows, "rating")
        x.data = params["alpha"] * signal_weights(x.data, params["rating_weight"])
        # implicit warns (an error under pytest) when BLAS itself is multi-threaded.
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=params["factors"],
                regularization=params["reg"],
                alpha=1.0,  # the confidence is already in the matrix
                iterations=params["iterations"],
                random_state=seed,
                num_threads=params["threads"],
            )
            model.fit(x.tocsr(), show_progress=False)
        return FittedAls(
            model.item_factors, params["reg"], params["alpha"], params["rating_weight"]
        )
