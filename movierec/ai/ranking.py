"""Serving a ranking model (EASE, ALS, popularity): top-k from a user's signals, folded in.

A user is a weighted set of movies, assembled per request: their ratings (from the database,
so a rating made a second ago counts; the training ratings when the database is down), movies
they picked as favourites, and the most rated movies of genres they prefer or searched for
(weaker). EASE scores are ``q · B``; ALS solves the user's vector against fixed item factors.
Each recommended movie carries the signal that contributed most to its score (``because``).
Nobody is refused: a user with no signal at all gets popular movies marked as a fallback.

>>> model = load_model(".state/models", kind="ranking")        # doctest: +SKIP
>>> model.recommend(42, k=5, signals=Signals(liked=(318,))).because   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from movierec.ai.algorithms.als import fold_in
from movierec.ai.algorithms.ease import signal_weights
from movierec.ai.base import Recommendations, Recommender, Signals, Similar
from movierec.ai.dataset import dense_index
from movierec.errors import BadInput, ModelNotReady, NotFound

COMMON_ARRAYS = (
    "user_ids", "movie_ids", "popularity", "popular_order", "genre_names", "movie_genres",
    "rated_indptr", "rated_items", "rated_values",
)  # fmt: skip
FORM_ARRAYS = {
    "ease": ("ease_weights",),
    "als": ("item_factors", "item_gram"),
    "popularity": (),
}
LIKED_STARS = 4.5  # a favourite counts like a 4.5-star rating
EXPLAIN_STARS = 3.5  # "because you liked X" only names movies rated at least this
GENRE_SEEDS = 20  # a preferred genre stands for its most rated movies ...
GENRE_WEIGHT = 0.3  # ... each weighing this much (a rating weighs about 1)
SEARCH_WEIGHT = 0.1  # a searched genre is a weaker hint than a stated preference


class RankingModel(Recommender):
    """One ranking artifact, memory-mapped; thread-safe (requests share it read-only)."""

    kind = "ranking"

    def __init__(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]):
        """Raises :class:`ModelNotReady` when the form is unknown or arrays do not fit."""
        self.meta = dict(meta)
        self.version = str(meta.get("version", "unsaved"))
        self.form = str(meta.get("form", ""))
        if self.form not in FORM_ARRAYS:
            raise ModelNotReady(f"model {self.version} has an unknown form {self.form!r}")
        self.user_ids, self.movie_ids = arrays["user_ids"], arrays["movie_ids"]
        self.popularity = arrays["popularity"]
        self._popular_order = arrays["popular_order"]
        self.genre_names = [str(g) for g in arrays["genre_names"]]
        self._movie_genres = arrays["movie_genres"]
        self._indptr, self._items = arrays["rated_indptr"], arrays["rated_items"]
        self._values = arrays["rated_values"]
        self._genre_column = {g.casefold(): j for j, g in enumerate(self.genre_names)}
        self._rating_weight = float(self.meta.get("rating_weight", 0.2))
        self._weights = arrays.get("ease_weights")
        self._factors = arrays.get("item_factors")
        self._gram = None if arrays.get("item_gram") is None else np.asarray(arrays["item_gram"])
        self._reg = float(self.meta.get("reg", 0.05))
        self._alpha = float(self.meta.get("alpha", 1.0))
        n_users, n_items = self.user_ids.shape[0], self.movie_ids.shape[0]
        ok = {
            "popularity": self.popularity.shape == self._popular_order.shape == (n_items,),
            "rated": self._indptr.shape == (n_users + 1,)
            and self._items.shape == self._values.shape,
            "movie_genres": self._movie_genres.shape == (n_items, len(self.genre_names)),
            "ease_weights": self._weights is None or self._weights.shape == (n_items, n_items),
            "item_factors": self._factors is None or self._factors.shape[0] == n_items,
        }
        bad = [name for name, good in ok.items() if not good]
        if bad:
            raise ModelNotReady(f"model {self.version} is damaged: {', '.join(bad)} mismatch")

    @property
    def n_items(self) -> int:
        return int(self.movie_ids.shape[0])

    def _user_pos(self, user_id: int) -> int | None:
        found = dense_index(self.user_ids, (user_id,))
        return int(found[0]) if found.size else None

    def knows_user(self, user_id: int) -> bool:
        return self._user_pos(user_id) is not None

    def knows_movie(self, movie_id: int) -> bool:
        return dense_index(self.movie_ids, (movie_id,)).size > 0

    def _genre_columns(self, genres: Iterable[str]) -> list[int]:
        return [
            self._genre_column[g.casefold()] for g in genres if g.casefold() in self._genre_column
        ]

    def _signal_vector(self, user_id: int, signals: Signals):
        """Dense movie indices, weights and whether each is explainable; plus the seen set."""
        weights: dict[int, float] = {}
        explainable: set[int] = set()
        stars: dict[int, float] = {}
        u = self._user_pos(user_id)
        if not signals.complete and u is not None:
            start, end = int(self._indptr[u]), int(self._indptr[u + 1])
            items = np.asarray(self._items[start:end]).tolist()
            stars.update(zip(items, np.asarray(self._values[start:end]).tolist(), strict=True))
        if signals.ratings:
            movie_ids, values = zip(*signals.ratings, strict=True)
            for movie_id, value in zip(movie_ids, values, strict=True):
                found = dense_index(self.movie_ids, (movie_id,))
                if found.size:
                    stars[int(found[0])] = float(value)
        for idx in dense_index(self.movie_ids, signals.liked).tolist():
            stars[idx] = max(stars.get(idx, 0.0), LIKED_STARS)
        seen = set(stars)
        if stars:
            idx = np.fromiter(stars, dtype=np.int64, count=len(stars))
            values = np.fromiter(stars.values(), dtype=np.float32, count=len(stars))
            weighted = signal_weights(values, self._rating_weight).tolist()
            weights.update(zip(idx.tolist(), weighted, strict=True))
            explainable = {i for i, s in stars.items() if s >= EXPLAIN_STARS}
        for genres, weight in (
            (signals.genres, GENRE_WEIGHT),
            (signals.searched_genres, SEARCH_WEIGHT),
        ):
            for column in self._genre_columns(genres):
                for idx in self._most_rated(GENRE_SEEDS, set(), [column]):
                    weights.setdefault(idx, weight)
        idx = np.fromiter(weights, dtype=np.int64, count=len(weights))
        w = np.fromiter(weights.values(), dtype=np.float64, count=len(weights))
        return idx, w, np.array([i in explainable for i in idx.tolist()], dtype=bool), seen

    def _scores(self, idx: np.ndarray, w: np.ndarray):
        """Scores over every movie, and a function explaining chosen movies by signal row."""
        if self.form == "ease":
            rows = np.asarray(self._weights[np.sort(idx)], dtype=np.float64)
            order = np.argsort(idx)
            rows_w = rows * w[order][:, None]
            scores = rows_w.sum(axis=0)

            def contributions(top: np.ndarray) -> np.ndarray:
                out = np.empty((idx.size, top.size))
                out[order] = rows_w[:, top]
                return out

            return scores, contributions
        confidence = self._alpha * w
        factors = self._factors
        vector, solved = fold_in(factors, self._gram, self._reg, idx, confidence)
        scores = np.asarray(factors @ vector.astype(np.float32), dtype=np.float64)

        def contributions(top: np.ndarray) -> np.ndarray:
            return confidence[:, None] * (solved.T @ np.asarray(factors[top], dtype=np.float64).T)

        return scores, contributions

    def recommend(
        self,
        user_id: int,
        k: int = 10,
        exclude: Iterable[int] = (),
        genres: Sequence[str] | None = None,
        signals: Signals | None = None,
        demote_genres: Sequence[str] = (),
    ) -> Recommendations:
        """The ``k`` best movies for ``user_id`` given ``signals`` (the training ratings when
        None), never one rated, liked or in ``exclude``; movies in ``demote_genres`` come after
        all others. ``genres`` adds preferred genres to the signals.

        Raises :class:`BadInput` when ``k`` is not a positive integer.
        """
        k = _check_k(k)
        signals = signals or Signals()
        if genres:
            signals = Signals(
                signals.ratings, signals.liked, (*signals.genres, *genres),
                signals.searched_genres, signals.complete,
            )  # fmt: skip
        excluded = set(dense_index(self.movie_ids, exclude).tolist())
        if self.form == "popularity":
            _, _, _, seen = self._signal_vector(user_id, signals)
            picked = self._most_rated(k, excluded | seen, [], self._genre_columns(demote_genres))
            items = tuple((int(self.movie_ids[i]), float(self.popularity[i])) for i in picked)
            return Recommendations(items, self.version, reason="popularity model")
        idx, w, explainable, seen = self._signal_vector(user_id, signals)
        if idx.size == 0:
            return self._fallback(k, excluded, signals.genres, demote_genres)
        scores, contributions = self._scores(idx, w)
        blocked = np.fromiter(excluded | seen, dtype=np.int64)
        scores[blocked] = -np.inf
        self._demote(scores, demote_genres)
        top = _top_k(scores, k)
        because: list[int | None] = [None] * top.size
        if explainable.any() and top.size:
            parts = contributions(top)[explainable]
            best = np.argmax(parts, axis=0)
            sources = idx[explainable][best]
            because = [
                int(self.movie_ids[s]) if parts[b, j] > 0 else None
                for j, (s, b) in enumerate(zip(sources.tolist(), best.tolist(), strict=True))
            ]
        items = tuple((int(self.movie_ids[i]), float(scores[i])) for i in top.tolist())
        return Recommendations(items, self.version, because=tuple(because))

    def _demote(self, scores: np.ndarray, demote_genres: Sequence[str]) -> None:
        columns = self._genre_columns(demote_genres)
        if not columns:
            return
        finite = np.isfinite(scores)
        if not finite.any():
            return
        shift = float(scores[finite].max() - scores[finite].min()) + 1.0
        mask = np.asarray(self._movie_genres[:, columns]).any(axis=1) & finite
        scores[mask] -= shift

    def _fallback(self, k, excluded, genres, demote_genres) -> Recommendations:
        demoted = self._genre_columns(demote_genres)
        picked = self._most_rated(k, excluded, [], demoted)
        reason = "no ratings or preferences yet: the most rated movies"
        items = tuple((int(self.movie_ids[i]), float(self.popularity[i])) for i in picked)
        return Recommendations(items, self.version, fallback=True, reason=reason)

    def _most_rated(
        self, k: int, excluded: set[int], columns: list[int], demoted: Sequence[int] = ()
    ) -> list[int]:
        """The ``k`` most rated movies (in ``columns`` genres when given), demoted ones last."""
        picked: list[int] = []
        later: list[int] = []
        start, block = 0, max(256, 4 * k)
        while start < self.n_items and len(picked) < k:
            chunk = np.asarray(self._popular_order[start : start + block])
            start, block = start + block, block * 2
            if columns:
                chunk = chunk[np.asarray(self._movie_genres[chunk][:, columns]).any(axis=1)]
            low = (
                np.asarray(self._movie_genres[chunk][:, list(demoted)]).any(axis=1)
                if demoted
                else np.zeros(chunk.size, dtype=bool)
            )
            for idx, is_low in zip(chunk.tolist(), low.tolist(), strict=True):
                if idx in excluded:
                    continue
                (later if is_low else picked).append(idx)
                if len(picked) == k:
                    break
        return (picked + later)[:k]

    def similar(self, movie_id: int, k: int = 10) -> Similar:
        """Movies most like ``movie_id``: EASE weights ``B[i]`` (how strongly liking it
        predicts each other movie) or the cosine of ALS item factors.

        Raises :class:`NotFound` for an unknown movie or a popularity model.
        """
        k = _check_k(k)
        found = dense_index(self.movie_ids, (movie_id,))
        if found.size == 0 or self.form == "popularity":
            raise NotFound(f"movie {movie_id} has no similar movies in model {self.version}")
        i = int(found[0])
        if self.form == "ease":
            sims = np.array(self._weights[i], dtype=np.float64)
        else:
            factors = np.asarray(self._factors, dtype=np.float64)
            norms = np.maximum(np.linalg.norm(factors, axis=1), 1e-12)
            sims = factors @ factors[i] / (norms * norms[i])
        sims[i] = -np.inf
        top = _top_k(sims, k)
        items = tuple((int(self.movie_ids[j]), float(sims[j])) for j in top.tolist())
        return Similar(movie_id=int(movie_id), items=items, model_version=self.version)

    def predict(self, user_id: int, movie_id: int) -> float:
        """Refused: raises :class:`BadInput` (stars come from a rating model, ``/predict``)."""
        raise BadInput(f"model {self.version} ranks movies; stars come from a rating model")


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise BadInput(f"k must be a positive integer, not {k!r}")
    return int(k)


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest finite scores, best first (ties: lower index)."""
    k = min(k, int(np.count_nonzero(np.isfinite(scores))))
    if k == 0:
        return np.empty(0, dtype=np.int64)
    top = np.argpartition(-scores, k - 1)[:k] if k < scores.shape[0] else np.arange(scores.size)
    top = top[np.isfinite(scores[top])][:k] if k == scores.shape[0] else top
    return top[np.lexsort((top, -scores[top]))]
