"""Serving a ranking model (EASE, SANSA, ALS, their blends, popularity): top-k from a user's
signals.

A user is a weighted set of movies, assembled per request: their ratings (from the database,
so a rating made a second ago counts; the training ratings when the database is down), movies
they picked as favourites, and the most rated movies of genres they prefer or searched for
(weaker). EASE scores are ``q · B``, SANSA's too with a sparse ``B``
(:mod:`movierec.ai.sparse_weights`); ALS solves the user's vector against fixed item factors;
a blend (form ``easeals`` or ``sansaals``) adds its two parts, each divided by its scale fixed
at training time, so a shard still scores its movies exactly as the whole model. With an ANN
index, ``sansaals`` scores exactly the movies SANSA reaches and asks the index for the best
of the others by their ALS part alone (all their SANSA part is 0). Each recommended movie
carries the signal that contributed most to its score (``because``; a blend adds each
signal's shares of both parts).
Nobody is refused: a user with no signal at all gets popular movies marked as a fallback.

>>> model = load_model(".state/models", kind="ranking")        # doctest: +SKIP
>>> model.recommend(42, k=5, signals=Signals(liked=(318,))).because   # doctest: +SKIP
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from movierec.ai.algorithms.als import fold_in
from movierec.ai.algorithms.ease import signal_weights
from movierec.ai.ann import AnnIndex
from movierec.ai.base import Recommendations, Recommender, Signals, Similar
from movierec.ai.candidates import Candidates, HotRows, ServesCandidates, Shard, check_k, top_k
from movierec.ai.dataset import dense_index, dense_lookup
from movierec.ai.sparse_weights import SparseWeights, csr_from_arrays, csr_names
from movierec.ai.stats import COUNTERS
from movierec.errors import BadInput, ModelNotReady, NotFound

COMMON_ARRAYS = (
    "user_ids", "movie_ids", "popularity", "popular_order", "genre_names", "movie_genres",
    "rated_indptr", "rated_items", "rated_values",
)  # fmt: skip
FORM_ARRAYS = {
    "ease": ("ease_weights",),
    "als": ("item_factors", "item_gram"),
    "easeals": ("ease_weights", "item_factors", "item_gram"),
    "sansa": csr_names("sansa_weights"),
    "sansaals": (*csr_names("sansa_weights"), "item_factors", "item_gram"),
    "popularity": (),
}  # fmt: skip
SANSA_FORMS = ("sansa", "sansaals")
BLENDS = ("easeals", "sansaals")  # an item-item part plus ALS, each over its fixed scale
ANN_FORMS = ("als", "sansaals")  # forms whose ALS part an ANN index may search
OPTIONAL_ARRAYS = ("item_norms",)  # ALS artifacts have them since ANN indexes exist
LIKED_STARS = 4.5  # a favourite counts like a 4.5-star rating
EXPLAIN_STARS = 3.5  # "because you liked X" only names movies rated at least this
GENRE_SEEDS = 20  # a preferred genre stands for its most rated movies ...
GENRE_WEIGHT = 0.3  # ... each weighing this much (a rating weighs about 1)
SEARCH_WEIGHT = 0.1  # a searched genre is a weaker hint than a stated preference


class RankingModel(ServesCandidates, Recommender):
    """One ranking artifact, memory-mapped; thread-safe (requests share it read-only).

    Two movie spaces: signals (a user's rated and liked movies) may be any movie of the model,
    while what is scored, excluded and returned are the candidates (all movies, or one shard's
    slice, see :mod:`movierec.ai.candidates`).
    """

    kind = "ranking"

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray],
        meta: Mapping[str, Any],
        *,
        ann: AnnIndex | None = None,
        hot_bytes: int = 0,
    ):
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
        self._ease_scale = float(self.meta.get("ease_scale", 1.0))
        self._als_scale = float(self.meta.get("als_scale", 1.0))
        n_users, n_items = self.user_ids.shape[0], self.movie_ids.shape[0]
        ok = {
            "popularity": self.popularity.shape == self._popular_order.shape == (n_items,),
            "rated": self._indptr.shape == (n_users + 1,)
            and self._items.shape == self._values.shape,
            "movie_genres": self._movie_genres.shape == (n_items, len(self.genre_names)),
            "ease_weights": self._weights is None or self._weights.shape == (n_items, n_items),
            "item_factors": self._factors is None or self._factors.shape[0] == n_items,
            "sansa": self.form not in SANSA_FORMS
            or arrays["sansa_weights_indptr"].shape == (n_items + 1,),
            "ann": ann is None
            or self._factors is not None
            and (ann.n, ann.dim) == self._factors.shape,
        }
        if self.form in BLENDS:
            ok["blend"] = (
                (self._weights is not None or self.form == "sansaals")
                and self._factors is not None
                and self._ease_scale > 0 and self._als_scale > 0
            )  # fmt: skip
        bad = [name for name, good in ok.items() if not good]
        if bad:
            raise ModelNotReady(f"model {self.version} is damaged: {', '.join(bad)} mismatch")
        item_arrays: dict[str, np.ndarray] = {}
        if self._weights is not None:
            item_arrays["ease_weights"] = self._weights
        if self._factors is not None:
            norms = arrays.get("item_norms")
            if norms is None:  # artifacts from before item_norms was saved
                norms = np.linalg.norm(np.asarray(self._factors), axis=1).astype(np.float32)
            item_arrays |= {"item_factors": self._factors, "item_norms": norms}
        if self.form in SANSA_FORMS:
            item_arrays |= {name: arrays[name] for name in csr_names("sansa_weights")}
        self._all = Candidates(
            self.movie_ids, self.popularity, self._popular_order, self._movie_genres,
            item_arrays, ann if self.form in ANN_FORMS else None,
        )  # fmt: skip
        self._cand = self._all
        self._hot_bytes = hot_bytes
        self._signal_rows = self._hot_signal_rows()
        self._sparse = self._sparse_weights()
        # The blend's ALS part: item factors of any movie (not sliced by a shard).
        self._factor_rows = (
            HotRows(self._factors, self._popular_order, hot_bytes // 2)
            if self.form in BLENDS
            else None
        )

    def _sparse_weights(self) -> SparseWeights | None:
        """SANSA's weights: every movie's row, the candidates' columns."""
        if self.form not in SANSA_FORMS:
            return None
        return SparseWeights(csr_from_arrays(self._cand.arrays, "sansa_weights", self._cand.n))

    def _hot_signal_rows(self) -> HotRows | None:
        """What a fold-in reads per signal movie: EASE's rows of the candidates' columns, ALS's
        item factors (any movie); the most rated movies' rows kept in memory (the blend
        splits the budget between its two parts)."""
        if self.form in ("ease", "easeals"):
            matrix = self._cand.arrays["ease_weights"]
        elif self.form == "als":
            matrix = self._factors
        else:
            return None
        budget = self._hot_bytes // 2 if self.form == "easeals" else self._hot_bytes
        return HotRows(matrix, self._popular_order, budget)

    @property
    def n_items(self) -> int:
        return int(self.movie_ids.shape[0])

    def restrict(self, shard: Shard, directory: Path | None = None) -> RankingModel:
        """This model keeping and scoring only ``shard``'s movies (see
        :meth:`Candidates.slice`); signals may still be any movie."""
        restricted = copy.copy(self)
        restricted._cand = self._all.slice(shard, directory)
        restricted._signal_rows = restricted._hot_signal_rows()
        restricted._sparse = restricted._sparse_weights()
        return restricted

    def _user_pos(self, user_id: int) -> int | None:
        found = dense_index(self.user_ids, (user_id,))
        return int(found[0]) if found.size else None

    def knows_user(self, user_id: int) -> bool:
        return self._user_pos(user_id) is not None

    def knows_movie(self, movie_id: int) -> bool:
        return dense_index(self.movie_ids, (movie_id,)).size > 0

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
            pos, found = dense_lookup(self.movie_ids, np.array(movie_ids, dtype=np.int64))
            stars.update(zip(pos[found].tolist(), np.array(values)[found].tolist(), strict=True))
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
                for idx in self._all.most_rated(GENRE_SEEDS, set(), [column]):
                    weights.setdefault(idx, weight)
        idx = np.fromiter(weights, dtype=np.int64, count=len(weights))
        w = np.fromiter(weights.values(), dtype=np.float64, count=len(weights))
        return idx, w, np.array([i in explainable for i in idx.tolist()], dtype=bool), seen

    def _scores(self, idx: np.ndarray, w: np.ndarray):
        """Scores over every candidate, and a function explaining chosen candidates by signal
        row (EASE)."""
        signal_rows = np.sort(idx)
        order = np.argsort(idx)
        weights = w[order].astype(self._signal_rows.matrix.dtype)
        scores = self._signal_rows.weighted_sum(signal_rows, weights).astype(np.float64)

        def contributions(top: np.ndarray) -> np.ndarray:
            out = np.empty((idx.size, top.size))
            out[order] = self._signal_rows.block(signal_rows, top) * weights[:, None]
            return out

        return scores, contributions

    def _folded_in(self, rows: HotRows | None, idx: np.ndarray, w: np.ndarray):
        """The ALS user vector solved from the signals (their item factors read through
        ``rows``), the candidates' item factors, and a function explaining chosen candidates
        by signal."""
        folded = fold_in(rows, self._gram, self._reg, idx, self._alpha * w)
        factors = self._cand.arrays["item_factors"]
        return folded.vector, factors, lambda top: folded.shares(factors[top])

    def _sansa_scores(self, idx: np.ndarray, w: np.ndarray):
        """Scores over every candidate (SANSA's; for the blend plus the ALS part) and a
        function explaining chosen candidates by signal."""
        sparse = self._sparse
        reached, values = sparse.scores(idx, w)
        if self.form == "sansa":
            scores = np.zeros(self._cand.n)
            scores[reached] = values
            return scores, lambda top: sparse.contributions(idx, w, top)
        vector, factors, als_parts = self._folded_in(self._factor_rows, idx, w)
        scores = np.asarray(factors @ vector.astype(np.float32), np.float64) / self._als_scale
        scores[reached] += values / self._ease_scale
        return scores, self._sansa_blend_parts(idx, w, als_parts)

    def _sansa_blend_parts(self, idx: np.ndarray, w: np.ndarray, als_parts):
        def contributions(top: np.ndarray) -> np.ndarray:
            """Each signal's share of the blended score: both parts are sums over signals."""
            sansa_parts = self._sparse.contributions(idx, w, top)
            return sansa_parts / self._ease_scale + als_parts(top) / self._als_scale

        return contributions

    def _sansaals_ann(self, idx, w, explainable, k, blocked, mask, shard, demoted):
        """The blend's top-``k`` with an ANN index: the movies SANSA reaches scored exactly,
        the others (whose SANSA part is 0, so their order is their ALS part's) from the
        index's best ``k`` by the ALS part; exact whenever the index's answer is."""
        cand = self._cand
        reached, values = self._sparse.scores(idx, w)
        vector, factors, als_parts = self._folded_in(self._factor_rows, idx, w)
        query = vector.astype(np.float32)
        others, other_als, _ = cand.ann_top(
            query, k, np.union1d(blocked, reached), shard, lambda pos: factors[pos] @ query,
            demoted,
        )  # fmt: skip
        keep = ~np.isin(reached, blocked)
        if mask is not None:
            keep &= mask[reached]
        near = reached[keep]
        near_scores = values[keep] / self._ease_scale
        near_scores += np.asarray(factors[near] @ query, np.float64) / self._als_scale
        pos = np.concatenate([near, others])
        scores = np.concatenate([near_scores, np.asarray(other_als, np.float64) / self._als_scale])
        low = cand.genre_mask(demoted)[pos] if demoted else np.zeros(pos.size, dtype=bool)
        order = np.lexsort((pos, -scores, low))[:k]
        top, values = pos[order], scores[order]
        if low[order].any() and not low[order].all():
            values[low[order]] -= float(values.max() - values.min()) + 1.0
        contributions = self._sansa_blend_parts(idx, w, als_parts)
        return self._answer(top, values, contributions, idx, explainable)

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
        """The ``k`` best movies for ``user_id`` given ``signals`` (the training ratings when
        None), never one rated, liked or in ``exclude``; movies in ``demote_genres`` come after
        all others. ``genres`` adds preferred genres to the signals; ``shard`` keeps only that
        shard's movies.

        Raises :class:`BadInput` when ``k`` is not a positive integer or this object keeps
        another shard.
        """
        k = check_k(k)
        cand = self._cand
        mask = cand.shard_mask(shard)
        signals = signals or Signals()
        if genres:
            signals = Signals(
                signals.ratings, signals.liked, (*signals.genres, *genres),
                signals.searched_genres, signals.complete,
            )  # fmt: skip
        excluded = set(cand.positions(exclude).tolist())
        demoted = self._genre_columns(demote_genres)
        if self.form == "popularity":
            _, _, _, seen = self._signal_vector(user_id, signals)
            blocked = excluded | set(cand.from_full(np.fromiter(seen, np.int64)).tolist())
            picked = cand.most_rated(k, blocked, [], demoted, shard)
            items = tuple((int(cand.movie_ids[i]), float(cand.popularity[i])) for i in picked)
            return Recommendations(items, self.version, reason="popularity model")
        idx, w, explainable, seen = self._signal_vector(user_id, signals)
        if idx.size == 0:
            return self._fallback(k, excluded, demoted, shard)
        blocked = np.fromiter(
            excluded | set(cand.from_full(np.fromiter(seen, np.int64)).tolist()), dtype=np.int64
        )
        if self.form == "als":
            vector, factors, contributions = self._folded_in(self._signal_rows, idx, w)
            if cand.ann is not None:
                query = vector.astype(np.float32)
                top, values, n_low = cand.ann_top(
                    query, k, blocked, shard, lambda pos: factors[pos] @ query, demoted
                )
                if n_low and top.size > n_low:
                    values[-n_low:] -= float(values[:-n_low].max() - values.min()) + 1.0
                return self._answer(top, values, contributions, idx, explainable)
            scores = np.asarray(factors @ vector.astype(np.float32), dtype=np.float64)
        elif self.form == "sansaals" and cand.ann is not None:
            return self._sansaals_ann(idx, w, explainable, k, blocked, mask, shard, demoted)
        elif self.form in SANSA_FORMS:
            scores, contributions = self._sansa_scores(idx, w)
        elif self.form == "easeals":
            scores, ease_parts = self._scores(idx, w)
            scores /= self._ease_scale
            vector, factors, als_parts = self._folded_in(self._factor_rows, idx, w)
            scores += np.asarray(factors @ vector.astype(np.float32), np.float64) / self._als_scale

            def contributions(top: np.ndarray) -> np.ndarray:
                """Each signal's share of the blended score: both parts are sums over signals."""
                return ease_parts(top) / self._ease_scale + als_parts(top) / self._als_scale

        else:
            scores, contributions = self._scores(idx, w)
        COUNTERS.add("movierec_recommender_scored_total", method="exact")
        scores[blocked] = -np.inf
        if mask is not None:
            scores[~mask] = -np.inf
        top = top_k(self._demoted(scores, demoted), k)
        return self._answer(top, scores[top], contributions, idx, explainable)

    def _answer(self, top, values, contributions, idx, explainable) -> Recommendations:
        """Items ``top`` (candidate positions) with ``values``, each explained by the
        explainable signal that contributed most to it."""
        because: list[int | None] = [None] * top.size
        if explainable.any() and top.size:
            parts = contributions(top)[explainable]
            best = np.argmax(parts, axis=0)
            # Whole-array lookups: one index into a memory-mapped array costs microseconds.
            sources = self.movie_ids[idx[explainable][best]].tolist()
            weighs = parts[best, np.arange(top.size)].tolist()
            because = [s if weight > 0 else None for s, weight in zip(sources, weighs, strict=True)]
        movie_ids = self._cand.movie_ids[top].tolist()
        items = tuple(zip(movie_ids, np.asarray(values, dtype=np.float64).tolist(), strict=True))
        return Recommendations(items, self.version, because=tuple(because))

    def _demoted(self, scores: np.ndarray, columns: Sequence[int]) -> np.ndarray:
        """``scores`` to rank by: those of the genre ``columns`` below all others. A copy,
        so that the answer keeps each movie's own score (shards' answers are merged by it,
        and each shard's shift would differ)."""
        finite = np.isfinite(scores)
        if not columns or not finite.any():
            return scores
        shift = float(scores[finite].max() - scores[finite].min()) + 1.0
        ranked = scores.copy()
        ranked[self._cand.genre_mask(columns) & finite] -= shift
        return ranked

    def _fallback(self, k, excluded, demoted, shard) -> Recommendations:
        cand = self._cand
        picked = cand.most_rated(k, excluded, [], demoted, shard)
        reason = "no ratings or preferences yet: the most rated movies"
        items = tuple((int(cand.movie_ids[i]), float(cand.popularity[i])) for i in picked)
        return Recommendations(items, self.version, fallback=True, reason=reason)

    def similar(self, movie_id: int, k: int = 10, shard: Shard | None = None) -> Similar:
        """Movies most like ``movie_id`` (only ``shard``'s when given): EASE or SANSA weights
        ``B[i]`` (how strongly liking it predicts each other movie; a blend's item-item part
        too) or the cosine of ALS item factors.

        Raises :class:`NotFound` for an unknown movie or a popularity model.
        """
        k = check_k(k)
        found = dense_index(self.movie_ids, (movie_id,))
        if found.size == 0 or self.form == "popularity":
            raise NotFound(f"movie {movie_id} has no similar movies in model {self.version}")
        i = int(found[0])
        cand = self._cand
        skip = cand.from_full(np.array([i]))
        if self.form in ("ease", "easeals", *SANSA_FORMS):
            COUNTERS.add("movierec_recommender_scored_total", method="exact")
            if self._sparse is not None:  # SANSA's sparse B[i], 0 where it reaches not
                sims = np.zeros(cand.n)
                reached, values = self._sparse.scores(np.array([i]), np.array([1.0]))
                sims[reached] = values
            else:
                sims = np.array(cand.arrays["ease_weights"][i], dtype=np.float64)
            sims[skip] = -np.inf
            mask = cand.shard_mask(shard)
            if mask is not None:
                sims[~mask] = -np.inf
            top = top_k(sims, k)
            values = sims[top]
        else:
            top, values = cand.cosine_top(np.asarray(self._factors[i]), k, skip, shard)
        items = tuple(
            (int(cand.movie_ids[j]), float(v))
            for j, v in zip(top.tolist(), np.asarray(values).tolist(), strict=True)
        )
        return Similar(movie_id=int(movie_id), items=items, model_version=self.version)

    def predict(self, user_id: int, movie_id: int) -> float:
        """Refused: raises :class:`BadInput` (stars come from a rating model, ``/predict``)."""
        raise BadInput(f"model {self.version} ranks movies; stars come from a rating model")
