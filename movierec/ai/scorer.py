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

import copy
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from movierec.ai.ann import ANN_FILE, NPROBE, AnnIndex
from movierec.ai.artifact import ArtifactInfo, load_arrays, read_artifact
from movierec.ai.base import Recommendations, Recommender, Signals, Similar, clip_rating
from movierec.ai.candidates import Candidates, ServesCandidates, Shard, check_k, top_k
from movierec.ai.dataset import RatingsData, dense_index, dense_lookup
from movierec.ai.factors import Factors
from movierec.ai.fold_in import FOLD_IN_REG, fold_in
from movierec.ai.stats import COUNTERS
from movierec.errors import ModelNotReady, NotFound

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


def model_from_artifact(
    info: ArtifactInfo, shard: Shard | None = None, nprobe: int = NPROBE, hot_bytes: int = 0
) -> Recommender:
    """The serving class for an artifact's ``form`` (``factors`` when the meta has none),
    restricted to ``shard`` when given; its ANN index searched with ``nprobe`` (0: exact
    scoring); up to ``hot_bytes`` of the most rated movies' vectors copied into memory.

    Raises :class:`ModelNotReady` when arrays are missing or damaged or the form is unknown.
    """
    from movierec.ai.knn import KNN_ARRAYS, KnnModel
    from movierec.ai.ranking import COMMON_ARRAYS, FORM_ARRAYS, OPTIONAL_ARRAYS, RankingModel

    form = info.meta.get("form", "factors")
    index = info.path / ANN_FILE
    ann = AnnIndex.open(index, nprobe) if nprobe > 0 and index.exists() else None
    model: Recommender
    if form == "factors":
        model = FactorModel(load_arrays(info, ARRAY_NAMES), info.meta, ann=ann)
    elif form == "knn":
        names = (*COMMON_ARRAYS, *KNN_ARRAYS, "user_bias", "item_bias", "global_mean")
        model = KnnModel(load_arrays(info, names), info.meta)
    elif form in FORM_ARRAYS:
        names = COMMON_ARRAYS + FORM_ARRAYS[form]
        optional = tuple(n for n in OPTIONAL_ARRAYS if (info.path / f"{n}.npy").exists())
        arrays = load_arrays(info, names + optional)
        model = RankingModel(arrays, info.meta, ann=ann, hot_bytes=hot_bytes)
    else:
        raise ModelNotReady(f"model {info.version} has an unknown form {form!r}")
    return model.restrict(shard, info.path) if shard is not None else model


def load_model(
    model_dir: Path | str,
    version: str | None = None,
    kind: str | None = None,
    *,
    shard: Shard | None = None,
    nprobe: int = NPROBE,
    hot_bytes: int = 0,
) -> Recommender:
    """Load an artifact memory-mapped: ``version``; else the live (or newest) one of ``kind``;
    else the newest of all. ``shard``, ``nprobe`` and ``hot_bytes``: see
    :func:`model_from_artifact`.

    Raises :class:`ModelNotReady` when there is no model or it is damaged, and
    :class:`NotFound` when ``version`` does not exist.
    """
    if version is None and kind is not None:
        from movierec.ai.registry import serving_version

        version = serving_version(Path(model_dir), kind)
        if version is None:
            raise ModelNotReady(f"no {kind} model in {model_dir}; run `movierec model train`")
    info = read_artifact(Path(model_dir), version)
    return model_from_artifact(info, shard, nprobe, hot_bytes)


class FactorModel(ServesCandidates, Recommender):
    """A matrix-factorisation rating model (SVD, SVD++, NMF, BaselineOnly) over its arrays."""

    kind = "rating"

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray],
        meta: Mapping[str, Any],
        *,
        ann: AnnIndex | None = None,
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

    def restrict(self, shard: Shard, directory: Path | None = None) -> FactorModel:
        """This model keeping and scoring only ``shard``'s movies (see
        :meth:`Candidates.slice`); users, ``/predict`` and query movies stay whole."""
        restricted = copy.copy(self)
        restricted._cand = self._cand.slice(shard, directory)
        return restricted

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

    def recommend(
        self,
        user_id: int,
        k: int = 10,
        exclude: Iterable[int] = (),
        genres: Sequence[str] | None = None,
        signals: Signals | None = None,
        demote_genres: Sequence[str] = (),
        shard: Shard | None = None,
    ) -> Recommendations:
        """The ``k`` best movies for ``user_id`` that it has not rated and ``exclude`` lacks.

        A user the model does not know gets the most rated movies (in ``genres`` when given
        and any match), with ``fallback=True`` and a ``reason``; ``genres`` is ignored for
        known users, whose factors already say what they like. ``signals`` are ignored (a
        rating model knows its training ratings only; ranking models fold signals in); movies
        in ``demote_genres`` come after all others; only ``shard``'s movies when given.
        Raises :class:`BadInput` when ``k`` is not a positive integer or this object keeps
        another shard.
        """
        k = check_k(k)
        cand = self._cand
        mask = cand.shard_mask(shard)
        excluded = cand.positions(exclude)
        u = self._user_pos(user_id)
        if u is None:
            return self._popular(k, excluded, genres or (), shard)
        rated = np.asarray(self._rated_items[self._rated_indptr[u] : self._rated_indptr[u + 1]])
        blocked = np.union1d(cand.from_full(rated), excluded)
        columns = self._genre_columns(demote_genres)
        if cand.ann is not None:
            user = np.asarray(self._pu[u], dtype=np.float32)
            query = np.r_[user, np.float32(1.0)] if self.biased else user
            qi, bi = cand.arrays["item_factors"], cand.arrays["item_bias"]
            top, estimates, _ = cand.ann_top(
                query, k, blocked, shard, lambda pos: self._estimates(u, qi[pos], bi[pos]), columns
            )
            items = tuple(
                (int(cand.movie_ids[i]), clip_rating(e))
                for i, e in zip(top.tolist(), estimates.tolist(), strict=True)
            )
            return Recommendations(items=items, model_version=self.version)
        COUNTERS.add("movierec_recommender_scored_total", method="exact")
        scores = self._estimates(u, cand.arrays["item_factors"], cand.arrays["item_bias"])
        scores[blocked] = -np.inf
        if mask is not None:
            scores[~mask] = -np.inf
        estimates = scores.copy()
        finite = np.isfinite(scores)
        if columns and finite.any():
            shift = float(scores[finite].max() - scores[finite].min()) + 1.0
            scores[cand.genre_mask(columns) & finite] -= shift
        top = top_k(scores, k)
        items = tuple(
            (int(cand.movie_ids[i]), clip_rating(float(estimates[i]))) for i in top.tolist()
        )
        return Recommendations(items=items, model_version=self.version)

    def _popular(
        self, k: int, excluded: np.ndarray, genres: Sequence[str], shard: Shard | None = None
    ) -> Recommendations:
        cand = self._cand
        columns = self._genre_columns(genres)
        skip = set(excluded.tolist())
        picked = cand.most_rated(k, skip, columns, shard=shard)
        if columns and picked:
            names = ", ".join(self.genre_names[c] for c in columns)
            reason = f"unknown user: the most rated movies in {names}"
        elif genres:
            picked = cand.most_rated(k, skip, shard=shard)
            reason = f"unknown user: no rated movie in {', '.join(genres)}; the most rated movies"
        else:
            reason = "unknown user: the most rated movies"
        items = tuple((int(cand.movie_ids[i]), float(cand.popularity[i])) for i in picked)
        return Recommendations(items, self.version, fallback=True, reason=reason)

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
        :mod:`movierec.ai.fold_in`): a rating made a second ago moves them. Movies the user
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
            x = fold_in(self._qi[rows], targets, np.r_[prior_p, prior_b], self.fold_in_reg)
            return x[:dim], float(x[dim])
        return fold_in(self._qi[rows], targets, prior_p, self.fold_in_reg, biased=False), 0.0
