"""KNNBaseline (Koren 2010) estimates in NumPy, from the arrays of a fitted surprise model.

``r̂(u, i) = b_ui + Σ_v sim(u, v) (r_vi - b_vi) / Σ_v sim(u, v)`` over the ``k`` most similar
neighbours ``v`` that rated ``i`` (positive similarities only), exactly as surprise computes it;
item-based when ``user_based`` is false (the roles of users and items swap). The similarity
matrix is dense ``n²`` over users (or items), so this form is for small data sets: training
refuses more than ``MAX_ENTITIES`` (the bench shows the numbers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from movierec.ai.ann import AnnIndex
from movierec.ai.base import COMMON_ARRAYS, Query, RatingModel, Signals, Similar, clip_rating
from movierec.ai.candidates import Candidates
from movierec.ai.ids import dense_index
from movierec.ai.shard import Shard
from movierec.errors import ModelNotReady, NotFound

MAX_ENTITIES = 30_000
KNN_ARRAYS = ("knn_sim", "knn_indptr", "knn_neighbours", "knn_ratings")


class KnnEstimator:
    """Estimates from ``sim`` (n_x × n_x) and, per y, the x that rated it with their rating.

    ``x`` is the user and ``y`` the item when ``user_based``, the other way round otherwise.
    """

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray],
        global_mean: float,
        user_bias: np.ndarray,
        item_bias: np.ndarray,
        known_users: np.ndarray,
        known_items: np.ndarray,
        k: int,
        min_k: int,
        user_based: bool,
    ):
        self.sim = arrays["knn_sim"]
        self.indptr = arrays["knn_indptr"]
        self.neighbours = arrays["knn_neighbours"]
        self.ratings = arrays["knn_ratings"]
        self.mean, self.bu, self.bi = global_mean, user_bias, item_bias
        self.known_users, self.known_items = known_users, known_items
        self.k, self.min_k, self.user_based = k, min_k, user_based

    def estimate(self, u: int | None, i: int | None) -> float:
        """The unclipped estimate for dense ``u``, ``i`` (None: unknown to the model)."""
        ku = u is not None and bool(self.known_users[u])
        ki = i is not None and bool(self.known_items[i])
        est = self.mean + (float(self.bu[u]) if ku else 0.0) + (float(self.bi[i]) if ki else 0.0)
        if not (ku and ki):
            return est
        x, y = (u, i) if self.user_based else (i, u)
        bx, by = (self.bu, self.bi) if self.user_based else (self.bi, self.bu)
        start, end = int(self.indptr[y]), int(self.indptr[y + 1])
        others = np.asarray(self.neighbours[start:end])
        sims = np.asarray(self.sim[x, others], dtype=np.float64)
        if others.size > self.k:
            # heapq.nlargest keeps the first of equal similarities; a stable sort does too.
            top = np.argsort(-sims, kind="stable")[: self.k]
        else:
            top = np.arange(others.size)
        sims, others = sims[top], others[top]
        positive = sims > 0
        if int(positive.sum()) < self.min_k:
            return est
        sims, others = sims[positive], others[positive]
        residual = np.asarray(self.ratings[start:end], dtype=np.float64)[top][positive]
        residual -= self.mean + bx[others] + by[y]
        total = sims.sum()
        return est + float((sims * residual).sum() / total) if total > 0 else est

    def estimate_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        out = np.empty(users.shape[0], dtype=np.float64)
        for row, (u, i) in enumerate(zip(users.tolist(), items.tolist(), strict=True)):
            out[row] = self.estimate(u, i)
        return out


class KnnModel(RatingModel):
    """A served KNNBaseline rating model: ``/predict`` stars, and top-k by estimated stars."""

    array_names = (*COMMON_ARRAYS, *KNN_ARRAYS, "user_bias", "item_bias", "global_mean")

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray],
        meta: Mapping[str, Any],
        *,
        ann: AnnIndex | None = None,
        hot_bytes: int = 0,
    ):
        """Raises :class:`ModelNotReady` when the arrays do not fit together (a KNN model
        is small: no ANN index, nothing kept hot)."""
        self.meta = dict(meta)
        self.version = str(meta.get("version", "unsaved"))
        self.user_ids, self.movie_ids = arrays["user_ids"], arrays["movie_ids"]
        self.popularity = arrays["popularity"]
        self._rated_indptr, self._rated_items = arrays["rated_indptr"], arrays["rated_items"]
        self._popular_order = arrays["popular_order"]
        self.genre_names = [str(g) for g in arrays["genre_names"]]
        self._genre_column = {g.casefold(): j for j, g in enumerate(self.genre_names)}
        self._movie_genres = arrays["movie_genres"]
        n_users, n_items = self.user_ids.shape[0], self.movie_ids.shape[0]
        params = self.meta.get("params", {})
        user_based = bool(params.get("user_based", True))
        expected = (n_users if user_based else n_items,) * 2
        if arrays["knn_sim"].shape != expected or arrays["user_bias"].shape != (n_users,):
            raise ModelNotReady(f"model {self.version} is damaged: knn arrays mismatch")
        self._estimator = KnnEstimator(
            arrays,
            float(arrays["global_mean"]),
            arrays["user_bias"],
            arrays["item_bias"],
            np.diff(np.asarray(self._rated_indptr)) > 0,
            np.asarray(self.popularity) > 0,
            int(params.get("k", 40)),
            int(params.get("min_k", 1)),
            user_based,
        )
        # No per-movie arrays of its own: a shard keeps its ids, popularity and genres.
        self._cand = Candidates(
            self.movie_ids, self.popularity, self._popular_order, self._movie_genres, {}
        )

    def _pos(self, ids: np.ndarray, wanted: int) -> int | None:
        found = dense_index(ids, (wanted,))
        return int(found[0]) if found.size else None

    def knows_user(self, user_id: int) -> bool:
        u = self._pos(self.user_ids, user_id)
        return u is not None and bool(self._estimator.known_users[u])

    def knows_movie(self, movie_id: int) -> bool:
        i = self._pos(self.movie_ids, movie_id)
        return i is not None and bool(self._estimator.known_items[i])

    def rated_movie_ids(self, user_id: int) -> list[int]:
        u = self._pos(self.user_ids, user_id)
        if u is None:
            return []
        rows = self._rated_items[self._rated_indptr[u] : self._rated_indptr[u + 1]]
        return self.movie_ids[rows].tolist()

    def predict(self, user_id: int, movie_id: int) -> float:
        u, i = self._pos(self.user_ids, user_id), self._pos(self.movie_ids, movie_id)
        return clip_rating(self._estimator.estimate(u, i))

    def _query(self, user_id: int, genres: Sequence[str], signals: Signals) -> Query | None:
        """The user's training ratings; ``genres`` and ``signals`` are not used: the
        neighbours are those of the training ratings."""
        u = self._pos(self.user_ids, user_id)
        if u is None or not self._estimator.known_users[u]:
            return None
        rated = np.asarray(self._rated_items[self._rated_indptr[u] : self._rated_indptr[u + 1]])
        return Query(seen=rated, state=u)

    def _scores(self, query: Query) -> tuple[np.ndarray, None]:
        """One estimate per candidate: meant for small catalogues."""
        cand = self._cand
        movies = np.arange(cand.n) if cand.rows is None else np.asarray(cand.rows)
        users = np.full(movies.shape[0], query.state)
        return self._estimator.estimate_pairs(users, movies), None

    def similar(self, movie_id: int, k: int = 10, shard: Shard | None = None) -> Similar:
        raise NotFound(f"model {self.version} (knnbaseline) answers no similar-movie queries")
