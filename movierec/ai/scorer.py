"""Scoring a factor model with NumPy: recommendations, similar movies, single predictions.

>>> from movierec.ai import load_model
>>> model = load_model(".state/models")                     # doctest: +SKIP
>>> recs = model.recommend(42, k=10, exclude={1, 2})         # doctest: +SKIP
>>> recs.items[0], recs.fallback                             # doctest: +SKIP
((318, 4.71), False)

One user's scores are one matrix-vector product over all item factors; the best ``k`` come
from ``argpartition``, so a recommendation costs O(items x factors) in BLAS, not a Python loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from movierec.ai.artifact import ArtifactInfo, load_arrays, read_artifact
from movierec.ai.base import Recommendations, Recommender, Signals, Similar, clip_rating
from movierec.ai.dataset import RatingsData, dense_index
from movierec.ai.factors import Factors
from movierec.errors import BadInput, ModelNotReady, NotFound

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


def model_from_artifact(info: ArtifactInfo) -> Recommender:
    """The serving class for an artifact's ``form`` (``factors`` when the meta has none).

    Raises :class:`ModelNotReady` when arrays are missing or damaged or the form is unknown.
    """
    from movierec.ai.knn import KNN_ARRAYS, KnnModel
    from movierec.ai.ranking import COMMON_ARRAYS, FORM_ARRAYS, RankingModel

    form = info.meta.get("form", "factors")
    if form == "factors":
        return FactorModel(load_arrays(info, ARRAY_NAMES), info.meta)
    if form == "knn":
        names = (*COMMON_ARRAYS, *KNN_ARRAYS, "user_bias", "item_bias", "global_mean")
        return KnnModel(load_arrays(info, names), info.meta)
    if form in FORM_ARRAYS:
        return RankingModel(load_arrays(info, COMMON_ARRAYS + FORM_ARRAYS[form]), info.meta)
    raise ModelNotReady(f"model {info.version} has an unknown form {form!r}")


def load_model(
    model_dir: Path | str, version: str | None = None, kind: str | None = None
) -> Recommender:
    """Load an artifact memory-mapped: ``version``; else the live (or newest) one of ``kind``;
    else the newest of all.

    Raises :class:`ModelNotReady` when there is no model or it is damaged, and
    :class:`NotFound` when ``version`` does not exist.
    """
    if version is None and kind is not None:
        from movierec.ai.registry import serving_version

        version = serving_version(Path(model_dir), kind)
        if version is None:
            raise ModelNotReady(f"no {kind} model in {model_dir}; run `movierec model train`")
    info = read_artifact(Path(model_dir), version)
    return model_from_artifact(info)


class FactorModel(Recommender):
    """A matrix-factorisation rating model (SVD, SVD++, NMF, BaselineOnly) over its arrays."""

    kind = "rating"

    def __init__(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]):
        """Raises :class:`ModelNotReady` when the arrays do not fit together."""
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
        self._check_shapes()

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
        return None if u is None else self._estimates(u)

    def _estimates(self, u: int) -> np.ndarray:
        scores = np.asarray(self._qi @ self._pu[u])
        if not self.biased:
            return scores
        scores += self._bi
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
    ) -> Recommendations:
        """The ``k`` best movies for ``user_id`` that it has not rated and ``exclude`` lacks.

        A user the model does not know gets the most rated movies (in ``genres`` when given
        and any match), with ``fallback=True`` and a ``reason``; ``genres`` is ignored for
        known users, whose factors already say what they like. ``signals`` are ignored (a
        rating model knows its training ratings only; ranking models fold signals in); movies
        in ``demote_genres`` come after all others.
        Raises :class:`BadInput` when ``k`` is not a positive integer.
        """
        k = _check_k(k)
        excluded = dense_index(self.movie_ids, exclude)
        u = self._user_pos(user_id)
        if u is None:
            return self._popular(k, excluded, genres or ())
        scores = self._estimates(u)
        scores[self._rated_items[self._rated_indptr[u] : self._rated_indptr[u + 1]]] = -np.inf
        scores[excluded] = -np.inf
        estimates = scores.copy()
        columns = [
            self._genre_column[g.casefold()]
            for g in demote_genres
            if g.casefold() in self._genre_column
        ]
        finite = np.isfinite(scores)
        if columns and finite.any():
            shift = float(scores[finite].max() - scores[finite].min()) + 1.0
            scores[np.asarray(self._movie_genres[:, columns]).any(axis=1) & finite] -= shift
        top = _top_k(scores, k)
        items = tuple(
            (int(self.movie_ids[i]), clip_rating(float(estimates[i]))) for i in top.tolist()
        )
        return Recommendations(items=items, model_version=self.version)

    def _popular(self, k: int, excluded: np.ndarray, genres: Sequence[str]) -> Recommendations:
        columns = [
            self._genre_column[g.casefold()] for g in genres if g.casefold() in self._genre_column
        ]
        picked = self._most_rated(k, set(excluded.tolist()), columns)
        if columns and picked:
            names = ", ".join(self.genre_names[c] for c in columns)
            reason = f"unknown user: the most rated movies in {names}"
        elif genres:
            picked = self._most_rated(k, set(excluded.tolist()), [])
            reason = f"unknown user: no rated movie in {', '.join(genres)}; the most rated movies"
        else:
            reason = "unknown user: the most rated movies"
        items = tuple((int(self.movie_ids[i]), float(self.popularity[i])) for i in picked)
        return Recommendations(items, self.version, fallback=True, reason=reason)

    def _most_rated(self, k: int, excluded: set[int], columns: list[int]) -> list[int]:
        picked: list[int] = []
        start, block = 0, max(256, 4 * k)
        # Walk the popularity order in growing blocks: a common genre fills k from the first
        # block, a rare one reads further, and nobody pays for sorting the whole catalogue.
        while start < self.n_items and len(picked) < k:
            chunk = np.asarray(self._popular_order[start : start + block])
            start, block = start + block, block * 2
            if columns:
                chunk = chunk[self._movie_genres[chunk][:, columns].any(axis=1)]
            for idx in chunk.tolist():
                if idx not in excluded:
                    picked.append(idx)
                    if len(picked) == k:
                        break
        return picked

    def similar(self, movie_id: int, k: int = 10) -> Similar:
        """The ``k`` movies nearest to ``movie_id`` by cosine similarity of item factors.

        Raises :class:`NotFound` for a movie the model does not know, :class:`BadInput` for a
        ``k`` that is not a positive integer.
        """
        k = _check_k(k)
        i = self._item_pos(movie_id)
        if i is None:
            raise NotFound(f"movie {movie_id} is not in model {self.version}")
        tiny = np.float32(1e-12)
        sims = np.asarray(self._qi @ self._qi[i])
        sims /= np.maximum(self._norms, tiny) * max(self._norms[i], tiny)
        sims[i] = -np.inf
        top = _top_k(sims, k)
        items = tuple((int(self.movie_ids[j]), float(sims[j])) for j in top.tolist())
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


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise BadInput(f"k must be a positive integer, not {k!r}")
    return int(k)


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest finite scores, best first (-inf marks excluded items)."""
    k = min(k, int(np.count_nonzero(np.isfinite(scores))))
    if k == 0:
        return np.empty(0, dtype=np.int64)
    top = np.argpartition(-scores, k - 1)[:k] if k < scores.shape[0] else np.arange(k)
    return top[np.argsort(-scores[top], kind="stable")]
