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

Each form is a class (:data:`FORMS` maps an artifact's ``form`` to it); what every form does
alike (signals, exclusions, shards, demotion, top-k, fallback) is
:meth:`movierec.ai.base.Recommender.recommend`'s.

>>> model = load_model(".state/models", kind="ranking")        # doctest: +SKIP
>>> model.recommend(42, k=5, signals=Signals(liked=(318,))).because   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from movierec.ai.ann import AnnIndex
from movierec.ai.base import COMMON_ARRAYS, Explain, Query, Recommender, Signals, Similar
from movierec.ai.candidates import Candidates
from movierec.ai.folding import fold_in, signal_weights
from movierec.ai.hot_rows import HotRows
from movierec.ai.ids import dense_index, dense_lookup
from movierec.ai.shard import Shard
from movierec.ai.sparse_weights import SparseWeights, csr_from_arrays, csr_names
from movierec.ai.stats import COUNTERS
from movierec.ai.topk import check_k, top_k
from movierec.errors import BadInput, ModelNotReady, NotFound

OPTIONAL_ARRAYS = ("item_norms",)  # ALS artifacts have them since ANN indexes exist
LIKED_STARS = 4.5  # a favourite counts like a 4.5-star rating
EXPLAIN_STARS = 3.5  # "because you liked X" only names movies rated at least this
GENRE_SEEDS = 20  # a preferred genre stands for its most rated movies ...
GENRE_WEIGHT = 0.3  # ... each weighing this much (a rating weighs about 1)
SEARCH_WEIGHT = 0.1  # a searched genre is a weaker hint than a stated preference


class RankingModel(Recommender):
    """One ranking artifact, memory-mapped; thread-safe (requests share it read-only).

    Two movie spaces: signals (a user's rated and liked movies) may be any movie of the model,
    while what is scored, excluded and returned are the candidates (all movies, or one shard's
    slice, see :mod:`movierec.ai.candidates`). A subclass per form says which arrays it
    needs (``array_names``) and scores; this class folds a user's signals into weights.
    """

    kind = "ranking"
    fallback_reason = "no ratings or preferences yet"
    form = ""
    array_names = COMMON_ARRAYS
    optional_arrays = OPTIONAL_ARRAYS
    uses_ann = False  # whether an ANN index may search (its ALS part)
    blend = False  # an item-item part plus ALS, each over its fixed scale
    sparse = False  # SANSA's sparse B

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray],
        meta: Mapping[str, Any],
        *,
        ann: AnnIndex | None = None,
        hot_bytes: int = 0,
    ):
        """Raises :class:`ModelNotReady` when the arrays do not fit."""
        self.meta = dict(meta)
        self.version = str(meta.get("version", "unsaved"))
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
        self._check(arrays, ann)
        item_arrays: dict[str, np.ndarray] = {}
        if self._weights is not None:
            item_arrays["ease_weights"] = self._weights
        if self._factors is not None:
            norms = arrays.get("item_norms")
            if norms is None:  # artifacts from before item_norms was saved
                norms = np.linalg.norm(np.asarray(self._factors), axis=1).astype(np.float32)
            item_arrays |= {"item_factors": self._factors, "item_norms": norms}
        if self.sparse:
            item_arrays |= {name: arrays[name] for name in csr_names("sansa_weights")}
        self._all = Candidates(
            self.movie_ids, self.popularity, self._popular_order, self._movie_genres,
            item_arrays, ann if self.uses_ann else None,
        )  # fmt: skip
        self._cand = self._all
        self._hot_bytes = hot_bytes
        self._restricted()
        # The blend's ALS part: item factors of any movie (not sliced by a shard).
        self._factor_rows = (
            HotRows(self._factors, self._popular_order, hot_bytes // 2) if self.blend else None
        )

    def _check(self, arrays: Mapping[str, np.ndarray], ann: AnnIndex | None) -> None:
        n_users, n_items = self.user_ids.shape[0], self.movie_ids.shape[0]
        ok = {
            "popularity": self.popularity.shape == self._popular_order.shape == (n_items,),
            "rated": self._indptr.shape == (n_users + 1,)
            and self._items.shape == self._values.shape,
            "movie_genres": self._movie_genres.shape == (n_items, len(self.genre_names)),
            "ease_weights": self._weights is None or self._weights.shape == (n_items, n_items),
            "item_factors": self._factors is None or self._factors.shape[0] == n_items,
            "sansa": not self.sparse or arrays["sansa_weights_indptr"].shape == (n_items + 1,),
            "ann": ann is None
            or self._factors is not None
            and (ann.n, ann.dim) == self._factors.shape,
        }
        if self.blend:
            ok["blend"] = (
                (self._weights is not None or self.sparse)
                and self._factors is not None
                and self._ease_scale > 0 and self._als_scale > 0
            )  # fmt: skip
        bad = [name for name, good in ok.items() if not good]
        if bad:
            raise ModelNotReady(f"model {self.version} is damaged: {', '.join(bad)} mismatch")

    def _restricted(self) -> None:
        self._signal_rows = self._hot_signal_rows()
        self._sparse = self._sparse_weights()

    def _sparse_weights(self) -> SparseWeights | None:
        """SANSA's weights: every movie's row, the candidates' columns."""
        if not self.sparse:
            return None
        return SparseWeights(csr_from_arrays(self._cand.arrays, "sansa_weights", self._cand.n))

    def _hot_signal_rows(self) -> HotRows | None:
        """What a fold-in reads per signal movie (None: this form reads none through it)."""
        return None

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

    def _query(self, user_id: int, genres: Sequence[str], signals: Signals) -> Query | None:
        """The user's signals (the training ratings unless ``signals`` are complete), with
        ``genres`` added to the preferred ones; None when there is no signal at all."""
        if genres:
            signals = Signals(
                signals.ratings, signals.liked, (*signals.genres, *genres),
                signals.searched_genres, signals.complete,
            )  # fmt: skip
        idx, w, explainable, seen = self._signal_vector(user_id, signals)
        if idx.size == 0:
            return None
        seen_idx = np.fromiter(seen, dtype=np.int64, count=len(seen))
        return Query(seen=seen_idx, state=(idx, w), signals=idx, explainable=explainable)

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

    def _item_item_scores(self, idx: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, Explain]:
        """EASE's scores ``q · B`` over every candidate, and a function explaining chosen
        candidates by signal row."""
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

    def _blended(self, item_item: Explain, als: Explain) -> Explain:
        def contributions(top: np.ndarray) -> np.ndarray:
            """Each signal's share of the blended score: both parts are sums over signals."""
            return item_item(top) / self._ease_scale + als(top) / self._als_scale

        return contributions

    def similar(self, movie_id: int, k: int = 10, shard: Shard | None = None) -> Similar:
        """Movies most like ``movie_id`` (only ``shard``'s when given): EASE or SANSA weights
        ``B[i]`` (how strongly liking it predicts each other movie; a blend's item-item part
        too) or the cosine of ALS item factors.

        Raises :class:`NotFound` for an unknown movie or a popularity model.
        """
        k = check_k(k)
        found = dense_index(self.movie_ids, (movie_id,))
        answer = None if found.size == 0 else self._similar_top(int(found[0]), k, shard)
        if answer is None:
            raise NotFound(f"movie {movie_id} has no similar movies in model {self.version}")
        top, values = answer
        items = tuple(
            (int(self._cand.movie_ids[j]), float(v))
            for j, v in zip(top.tolist(), np.asarray(values).tolist(), strict=True)
        )
        return Similar(movie_id=int(movie_id), items=items, model_version=self.version)

    def _similar_top(
        self, i: int, k: int, shard: Shard | None
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The top ``k`` candidates like dense movie ``i`` by :meth:`_similar_scores`, and
        their similarities; None when this form answers no similar-movie queries."""
        sims = self._similar_scores(i)
        if sims is None:
            return None
        cand = self._cand
        COUNTERS.add("movierec_recommender_scored_total", method="exact")
        sims[cand.from_full(np.array([i]))] = -np.inf
        mask = cand.shard_mask(shard)
        if mask is not None:
            sims[~mask] = -np.inf
        top = top_k(sims, k)
        return top, sims[top]

    def _similar_scores(self, i: int) -> np.ndarray | None:
        """A new array of similarities of every candidate to dense movie ``i`` (None: none)."""
        return None

    def predict(self, user_id: int, movie_id: int) -> float:
        """Refused: raises :class:`BadInput` (stars come from a rating model, ``/predict``)."""
        raise BadInput(f"model {self.version} ranks movies; stars come from a rating model")


class PopularityModel(RankingModel):
    """The most rated movies the user has not seen: a baseline, and what a new site serves."""

    form = "popularity"
    answer_reason = "popularity model"

    def _query(self, user_id: int, genres: Sequence[str], signals: Signals) -> Query:
        """Only what the user has seen (never a fallback: this is the model's answer)."""
        _, _, _, seen = self._signal_vector(user_id, signals)
        return Query(seen=np.fromiter(seen, dtype=np.int64, count=len(seen)))

    def _scores(self, query: Query) -> tuple[np.ndarray, None]:
        # Equal counts keep the popularity order's ties: lower index, older (smaller) id.
        return np.asarray(self._cand.popularity, dtype=np.float64).copy(), None

    def _own_top(self, query, k, blocked, shard, demoted):
        """The cached popularity order (walked, not sorted, per request); the same answer
        as :meth:`_scores` would give."""
        cand = self._cand
        top = np.array(cand.most_rated(k, set(blocked.tolist()), [], demoted, shard), np.int64)
        return top, np.asarray(cand.popularity[top], dtype=np.float64), None


class EaseModel(RankingModel):
    """EASE: scores ``q · B`` with a dense ``B``."""

    form = "ease"
    array_names = (*COMMON_ARRAYS, "ease_weights")

    def _hot_signal_rows(self) -> HotRows | None:
        """EASE's rows of the candidates' columns; the most rated movies' rows kept in memory
        (a blend splits the budget between its two parts)."""
        budget = self._hot_bytes // 2 if self.blend else self._hot_bytes
        return HotRows(self._cand.arrays["ease_weights"], self._popular_order, budget)

    def _scores(self, query: Query) -> tuple[np.ndarray, Explain]:
        return self._item_item_scores(*query.state)

    def _similar_scores(self, i: int) -> np.ndarray:
        return np.array(self._cand.arrays["ease_weights"][i], dtype=np.float64)


class EaseAlsModel(EaseModel):
    """EASE plus ALS, each part over its scale fixed at training time."""

    form = "easeals"
    array_names = (*COMMON_ARRAYS, "ease_weights", "item_factors", "item_gram")
    blend = True

    def _scores(self, query: Query) -> tuple[np.ndarray, Explain]:
        idx, w = query.state
        scores, ease_parts = self._item_item_scores(idx, w)
        scores /= self._ease_scale
        vector, factors, als_parts = self._folded_in(self._factor_rows, idx, w)
        scores += np.asarray(factors @ vector.astype(np.float32), np.float64) / self._als_scale
        return scores, self._blended(ease_parts, als_parts)


class AlsModel(RankingModel):
    """ALS: the user's vector solved from their signals against fixed item factors."""

    form = "als"
    array_names = (*COMMON_ARRAYS, "item_factors", "item_gram")
    uses_ann = True

    def _hot_signal_rows(self) -> HotRows | None:
        """ALS's item factors of any movie, the most rated ones kept in memory."""
        return HotRows(self._factors, self._popular_order, self._hot_bytes)

    def _scores(self, query: Query) -> tuple[np.ndarray, Explain]:
        vector, factors, contributions = self._folded_in(self._signal_rows, *query.state)
        return np.asarray(factors @ vector.astype(np.float32), dtype=np.float64), contributions

    def _own_top(self, query, k, blocked, shard, demoted):
        """With an ANN index: it searches the folded-in vector."""
        if self._cand.ann is None:
            return None
        vector, factors, contributions = self._folded_in(self._signal_rows, *query.state)
        vector = vector.astype(np.float32)
        top, values, _ = self._cand.ann_top(
            vector, k, blocked, shard, lambda pos: factors[pos] @ vector, demoted
        )
        return top, values, contributions

    def _similar_top(self, i: int, k: int, shard: Shard | None):
        """The cosine of item factors (over the ANN's probed cells when there is an index)."""
        cand = self._cand
        return cand.cosine_top(
            np.asarray(self._factors[i]), k, cand.from_full(np.array([i])), shard
        )


class SansaModel(RankingModel):
    """SANSA: scores ``q · B`` with a sparse ``B`` (only the movies reached score)."""

    form = "sansa"
    array_names = (*COMMON_ARRAYS, *csr_names("sansa_weights"))
    sparse = True

    def _scores(self, query: Query) -> tuple[np.ndarray, Explain]:
        idx, w = query.state
        reached, values = self._sparse.scores(idx, w)
        scores = np.zeros(self._cand.n)
        scores[reached] = values
        return scores, lambda top: self._sparse.contributions(idx, w, top)

    def _similar_scores(self, i: int) -> np.ndarray:
        """SANSA's sparse ``B[i]``, 0 where it reaches not."""
        sims = np.zeros(self._cand.n)
        reached, values = self._sparse.scores(np.array([i]), np.array([1.0]))
        sims[reached] = values
        return sims


class SansaAlsModel(SansaModel):
    """SANSA plus ALS, each part over its scale fixed at training time. With an ANN index it
    scores exactly the movies SANSA reaches and asks the index for the best of the others."""

    form = "sansaals"
    array_names = (*COMMON_ARRAYS, *csr_names("sansa_weights"), "item_factors", "item_gram")
    blend = True
    uses_ann = True

    def _sansa_parts(self, idx: np.ndarray, w: np.ndarray) -> Explain:
        return lambda top: self._sparse.contributions(idx, w, top)

    def _scores(self, query: Query) -> tuple[np.ndarray, Explain]:
        idx, w = query.state
        reached, values = self._sparse.scores(idx, w)
        vector, factors, als_parts = self._folded_in(self._factor_rows, idx, w)
        scores = np.asarray(factors @ vector.astype(np.float32), np.float64) / self._als_scale
        scores[reached] += values / self._ease_scale
        return scores, self._blended(self._sansa_parts(idx, w), als_parts)

    def _own_top(self, query, k, blocked, shard, demoted):
        """With an ANN index: the movies SANSA reaches scored exactly, the others (whose
        SANSA part is 0, so their order is their ALS part's) from the index's best ``k`` by
        the ALS part; exact whenever the index's answer is."""
        cand = self._cand
        if cand.ann is None:
            return None
        idx, w = query.state
        mask = cand.shard_mask(shard)
        reached, values = self._sparse.scores(idx, w)
        vector, factors, als_parts = self._folded_in(self._factor_rows, idx, w)
        vector = vector.astype(np.float32)
        others, other_als, _ = cand.ann_top(
            vector, k, np.union1d(blocked, reached), shard, lambda pos: factors[pos] @ vector,
            demoted,
        )  # fmt: skip
        keep = ~np.isin(reached, blocked)
        if mask is not None:
            keep &= mask[reached]
        near = reached[keep]
        near_scores = values[keep] / self._ease_scale
        near_scores += np.asarray(factors[near] @ vector, np.float64) / self._als_scale
        pos = np.concatenate([near, others])
        scores = np.concatenate([near_scores, np.asarray(other_als, np.float64) / self._als_scale])
        low = cand.genre_mask(demoted)[pos] if demoted else np.zeros(pos.size, dtype=bool)
        order = np.lexsort((pos, -scores, low))[:k]
        return pos[order], scores[order], self._blended(self._sansa_parts(idx, w), als_parts)


# An artifact's ``form`` -> the class serving it.
FORMS: dict[str, type[RankingModel]] = {
    cls.form: cls
    for cls in (PopularityModel, EaseModel, EaseAlsModel, AlsModel, SansaModel, SansaAlsModel)
}
