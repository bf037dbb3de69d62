"""Scoring a factor model with NumPy: recommendations, similar movies, single predictions.

>>> from movierec.ai import load_model
>>> model = load_model(".state/models")                     # doctest: +SKIP
>>> recs = model.recommend(42, k=10, exclude={1, 2})         # doctest: +SKIP
>>> recs.items[0], recs.fallback                             # doctest: +SKIP
((318, 4.71), False)

One user's scores are one matrix-vector product over all item factors; the best ``k`` come
from ``argpartition``, so a recommendation costs O(items x factors) in BLAS, not a Python loop.
Above ``ann_min_items`` movies the artifact carries an ANN index (:mod:`movierec.ai.ann`) and
only the items of the probed cells are scored. Which movies are scored (all, or one shard's)
is :mod:`movierec.ai.candidates`'s business.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from movierec.ai.ann import AnnIndex
from movierec.ai.base import Query, RatingModel, Signals, Similar, clip_rating
from movierec.ai.candidates import Candidates
from movierec.ai.ids import dense_index, dense_lookup
from movierec.ai.rating_fold_in import FOLD_IN_REG, fold_in_ratings
from movierec.ai.shard import Shard
from movierec.ai.topk import check_k
from movierec.errors import ModelNotReady, NotFound

if TYPE_CHECKING:
    from movierec.ai.dataset import RatingsData
    from movierec.ai.factors import Factors

ARRAY_NAMES = (
    "user_ids", "movie_ids", "user_factors", "item_factors", "user_bias", "item_bias",
    "item_norms", "global_mean", "popularity", "popular_order", "genre_names", "movie_genres",
    "rated_indptr", "rated_items",
)  # fmt: skip


def common_arrays(
    data: RatingsData,
    genre_names: np.ndarray | None = None,
    movie_genres: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Arrays every artifact holds: id maps, popularity, genres, and who rated what (CSR)."""
    counts = data.item_counts()
    by_user = np.lexsort((data.item_index, data.user_index))
    per_user = np.bincount(data.user_index, minlength=data.n_users)
    if genre_names is None or movie_genres is None:
        genre_names = np.array([], dtype=np.str_)
        movie_genres = np.zeros((data.n_items, 0), dtype=bool)
    return {
        "user_ids": data.user_ids.astype(np.int64),
        "movie_ids": data.movie_ids.astype(np.int64),
        "popularity": counts,
        # Most rated first; among equals the older (smaller) id, so the order is stable.
        "popular_order": np.lexsort((data.movie_ids, -counts)).astype(np.int32),
        "genre_names": np.asarray(genre_names, dtype=np.str_),
        "movie_genres": np.asarray(movie_genres, dtype=bool),
        # CSR of what each user had rated: items of user u are rated_items[indptr[u]:indptr[u+1]].
        "rated_indptr": np.r_[0, np.cumsum(per_user)].astype(np.int64),
        "rated_items": data.item_index[by_user].astype(np.int32),
        "rated_values": data.ratings[by_user].astype(np.float32),
    }


def model_arrays(
    factors: Factors,
    data: RatingsData,
    genre_names: np.ndarray | None = None,
    movie_genres: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The arrays :class:`FactorModel` needs, from factors fitted on all of ``data``."""
    common = common_arrays(data, genre_names, movie_genres)
    del common["rated_values"]
    return {
        **common,
        "user_factors": factors.user_factors,
        "item_factors": factors.item_factors,
        "user_bias": factors.user_bias,
        "item_bias": factors.item_bias,
        "item_norms": np.linalg.norm(factors.item_factors, axis=1).astype(np.float32),
        "global_mean": np.array(factors.global_mean, dtype=np.float64),
    }


class FactorModel(RatingModel):
    """A matrix-factorisation rating model (SVD, SVD++, NMF, BaselineOnly) over its arrays."""

    array_names = ARRAY_NAMES

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray],
        meta: Mapping[str, Any],
        *,
        ann: AnnIndex | None = None,
        hot_bytes: int = 0,
    ):
        """Raises :class:`ModelNotReady` when the arrays (or the ANN index) do not fit."""
        self.meta = dict(meta)
        self.version = str(meta.get("version", "unsaved"))
        self.user_ids = arrays["user_ids"]
        self.movie_ids = arrays["movie_ids"]
        self._pu = arrays["user_factors"]
        self._qi = arrays["item_factors"]
        self._bu = arrays["user_bias"]
        self._bi = arrays["item_bias"]
        self._norms = arrays["item_norms"]
        self.global_mean = float(arrays["global_mean"])
        self.popularity = arrays["popularity"]
        self._popular_order = arrays["popular_order"]
        self.genre_names = [str(g) for g in arrays["genre_names"]]
        self._movie_genres = arrays["movie_genres"]
        self._rated_indptr = arrays["rated_indptr"]
        self._rated_items = arrays["rated_items"]
        self._genre_column = {g.casefold(): j for j, g in enumerate(self.genre_names)}
        self.biased = bool(self.meta.get("biased", True))  # False for NMF
        self.fold_in_reg = float(self.meta.get("fold_in_reg", FOLD_IN_REG))
        self._check_shapes()
        dim = self._qi.shape[1] + (1 if self.biased else 0)
        if ann is not None and (ann.n, ann.dim) != (self.n_items, dim):
            raise ModelNotReady(f"model {self.version} is damaged: ANN index mismatch")
        item_arrays = {"item_factors": self._qi, "item_bias": self._bi, "item_norms": self._norms}
        self._cand = Candidates(
            self.movie_ids, self.popularity, self._popular_order, self._movie_genres,
            item_arrays, ann,
        )  # fmt: skip

    def _check_shapes(self) -> None:
        n_users, n_items = self.user_ids.shape[0], self.movie_ids.shape[0]
        pu, qi = self._pu.shape, self._qi.shape
        expected = {
            "user_factors": pu[0] == n_users,
            "item_factors": qi[0] == n_items and qi[1:] == pu[1:],
            "biases": self._bu.shape == (n_users,) and self._bi.shape == (n_items,),
            "item_norms": self._norms.shape == (n_items,),
            "popularity": self.popularity.shape == self._popular_order.shape == (n_items,),
            "movie_genres": self._movie_genres.shape == (n_items, len(self.genre_names)),
            "rated_indptr": self._rated_indptr.shape == (n_users + 1,),
        }
        bad = [name for name, ok in expected.items() if not ok]
        if bad:
            raise ModelNotReady(f"model {self.version} is damaged: {', '.join(bad)} mismatch")

    @property
    def n_users(self) -> int:
        return int(self.user_ids.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.movie_ids.shape[0])

    def _user_pos(self, user_id: int) -> int | None:
        found = dense_index(self.user_ids, (user_id,))
        return int(found[0]) if found.size else None

    def _item_pos(self, movie_id: int) -> int | None:
        found = dense_index(self.movie_ids, (movie_id,))
        return int(found[0]) if found.size else None

    def knows_user(self, user_id: int) -> bool:
        return self._user_pos(user_id) is not None

    def knows_movie(self, movie_id: int) -> bool:
        return self._item_pos(movie_id) is not None

    def rated_movie_ids(self, user_id: int) -> np.ndarray:
        """Movies the user had rated when the model was trained (empty when unknown)."""
        u = self._user_pos(user_id)
        if u is None:
            return np.empty(0, dtype=np.int64)
        return self.movie_ids[self._rated_items[self._rated_indptr[u] : self._rated_indptr[u + 1]]]

    def estimate_all(self, user_id: int) -> np.ndarray | None:
        """Unclipped rating estimates of ``user_id`` for every movie (aligned with
        ``movie_ids``), or None when the model does not know the user."""
        u = self._user_pos(user_id)
        return None if u is None else self._estimates(u, self._qi, self._bi)

    def _estimates(self, u: int, qi: np.ndarray, bi: np.ndarray) -> np.ndarray:
        scores = np.asarray(qi @ self._pu[u])
        if not self.biased:
            return scores
        scores += bi
        scores += np.float32(self.global_mean + self._bu[u])
        return scores

    def _query(self, user_id: int, genres: Sequence[str], signals: Signals) -> Query | None:
        """The user's factors and training ratings; ``genres`` and ``signals`` are not used
        (a rating model knows its training ratings only; ranking models fold signals in)."""
        u = self._user_pos(user_id)
        if u is None:
            return None
        rated = np.asarray(self._rated_items[self._rated_indptr[u] : self._rated_indptr[u + 1]])
        return Query(seen=rated, state=u)

    def _scores(self, query: Query) -> tuple[np.ndarray, None]:
        cand = self._cand
        return self._estimates(
            query.state, cand.arrays["item_factors"], cand.arrays["item_bias"]
        ), None

    def _own_top(self, query, k, blocked, shard, demoted):
        """With an ANN index: it searches the user's factors (with a 1 for the item bias)."""
        u, cand = query.state, self._cand
        if cand.ann is None:
            return None
        user = np.asarray(self._pu[u], dtype=np.float32)
        vector = np.r_[user, np.float32(1.0)] if self.biased else user
        qi, bi = cand.arrays["item_factors"], cand.arrays["item_bias"]
        top, estimates, _ = cand.ann_top(
            vector, k, blocked, shard, lambda pos: self._estimates(u, qi[pos], bi[pos]), demoted
        )
        return top, estimates, None

    def similar(self, movie_id: int, k: int = 10, shard: Shard | None = None) -> Similar:
        """The ``k`` movies nearest to ``movie_id`` by cosine similarity of item factors
        (only ``shard``'s movies when given; the query movie may be any).

        Raises :class:`NotFound` for a movie the model does not know, :class:`BadInput` for a
        ``k`` that is not a positive integer.
        """
        k = check_k(k)
        i = self._item_pos(movie_id)
        if i is None:
            raise NotFound(f"movie {movie_id} is not in model {self.version}")
        cand = self._cand
        skip = cand.from_full(np.array([i]))
        top, sims = cand.cosine_top(np.asarray(self._qi[i]), k, skip, shard)
        items = tuple(
            (int(cand.movie_ids[j]), float(s))
            for j, s in zip(top.tolist(), sims.tolist(), strict=True)
        )
        return Similar(movie_id=int(movie_id), items=items, model_version=self.version)

    def predict(self, user_id: int, movie_id: int) -> float:
        """The predicted rating in 0.5..5, as surprise predicts it: an unknown user or movie
        drops its bias and the factor product."""
        u, i = self._user_pos(user_id), self._item_pos(movie_id)
        est = self.global_mean
        if not self.biased:
            both = u is not None and i is not None
            return clip_rating(float(np.dot(self._pu[u], self._qi[i])) if both else est)
        if u is not None:
            est += float(self._bu[u])
        if i is not None:
            est += float(self._bi[i])
        if u is not None and i is not None:
            est += float(np.dot(self._pu[u], self._qi[i]))
        return clip_rating(est)

    def predict_many(
        self,
        user_id: int,
        movie_ids: Sequence[int],
        ratings: Sequence[tuple[int, float]] = (),
    ) -> dict[int, float]:
        """Predicted stars of the known movies of ``movie_ids`` not among ``ratings``, with the
        ratings the model was not trained on folded into the user's vector (see
        :mod:`movierec.ai.rating_fold_in`): a rating made a second ago moves them. Movies the user
        rated when the model was trained are left out too, as :meth:`recommend` leaves them."""
        rated = {movie_id for movie_id, _ in ratings}
        rated.update(self.rated_movie_ids(user_id).tolist())
        wanted = np.fromiter((m for m in dict.fromkeys(movie_ids) if m not in rated), np.int64)
        columns, found = dense_lookup(self.movie_ids, wanted)
        if not found.any():
            return {}
        columns, known = columns[found], wanted[found]
        p, b = self._user_vector(user_id, ratings)
        est = np.asarray(self._qi[columns], dtype=np.float64) @ p
        if self.biased:
            est += self.global_mean + b + np.asarray(self._bi[columns], dtype=np.float64)
        return {int(m): clip_rating(e) for m, e in zip(known.tolist(), est.tolist(), strict=True)}

    def _user_vector(
        self, user_id: int, ratings: Sequence[tuple[int, float]]
    ) -> tuple[np.ndarray, float]:
        """The user's factors and bias, refitted to the ratings the model has not seen."""
        u = self._user_pos(user_id)
        dim = self._qi.shape[1]
        if u is None:
            prior_p, prior_b = np.zeros(dim), 0.0
            trained: set[int] = set()
        else:
            prior_p, prior_b = np.asarray(self._pu[u], dtype=np.float64), float(self._bu[u])
            trained = set(self.rated_movie_ids(user_id).tolist())
        new = [(m, r) for m, r in ratings if m not in trained]
        ids = np.fromiter((m for m, _ in new), np.int64, len(new))
        rows, found = dense_lookup(self.movie_ids, ids)
        if not found.any():  # nothing the model has not seen: its own prediction
            return prior_p, prior_b if self.biased else 0.0
        rows = rows[found]
        targets = np.fromiter((r for _, r in new), np.float64, len(new))[found]
        if self.biased:
            targets -= self.global_mean + np.asarray(self._bi[rows], dtype=np.float64)
            x = fold_in_ratings(self._qi[rows], targets, np.r_[prior_p, prior_b], self.fold_in_reg)
            return x[:dim], float(x[dim])
        return fold_in_ratings(
            self._qi[rows], targets, prior_p, self.fold_in_reg, biased=False
        ), 0.0
