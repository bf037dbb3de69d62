"""What every recommender answers with, and the one ``recommend`` the server relies on.

As in surprise (``AlgoBase.predict`` around each algorithm's ``estimate``) and implicit
(``recommend`` around ``_score``), :meth:`Recommender.recommend` is written once: it checks
``k``, keeps rated, dismissed and ``exclude``-d movies out, keeps to a shard, demotes genres,
takes the top ``k`` and falls back to the most rated movies with a ``reason``. A model supplies
only what it makes of a user (:meth:`Recommender._query`), their scores
(:meth:`Recommender._scores`, with explanations) and, when it has an ANN index, its own
own top-k when it has a faster way than scoring every movie, such as an ANN index
(:meth:`Recommender._own_top`). "Cannot personalise" is a result, not an
error: a user the model cannot score gets popular movies with ``fallback=True``.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from movierec.ai.stats import COUNTERS
from movierec.ai.topk import check_k, top_k

if TYPE_CHECKING:
    from movierec.ai.ann import AnnIndex
    from movierec.ai.candidates import Candidates
    from movierec.ai.shard import Shard

# Given chosen candidate positions, each signal's share of their scores (signals x positions).
Explain = Callable[[np.ndarray], np.ndarray]

RATING_MIN = 0.5
RATING_MAX = 5.0
# What every ranking and KNN artifact holds: id maps, popularity, genres, who rated what (CSR).
COMMON_ARRAYS = (
    "user_ids", "movie_ids", "popularity", "popular_order", "genre_names", "movie_genres",
    "rated_indptr", "rated_items", "rated_values",
)  # fmt: skip


@dataclass(frozen=True)
class Recommendations:
    """An ordered answer: best first.

    ``items`` holds ``(movie_id, score)`` pairs. For a personal answer the score is the predicted
    rating (clipped to 0.5..5; the order uses the unclipped estimate, so equal scores keep the
    model's order). For a fallback answer the score is the movie's number of ratings.
    """

    items: tuple[tuple[int, float], ...]
    model_version: str
    fallback: bool = False
    reason: str | None = None
    # Per item (same order), the movie among the user's signals that contributed most to its
    # score ("because you liked X"), or None; empty when the model gives no explanations.
    because: tuple[int | None, ...] = ()

    @property
    def movie_ids(self) -> list[int]:
        return [movie_id for movie_id, _ in self.items]


@dataclass(frozen=True)
class Similar:
    """Movies like ``movie_id``, best first; scores are cosine similarities in -1..1."""

    movie_id: int
    items: tuple[tuple[int, float], ...]
    model_version: str

    @property
    def movie_ids(self) -> list[int]:
        return [movie_id for movie_id, _ in self.items]


@dataclass(frozen=True)
class Signals:
    """What a user has told the service, for folding them into a ranking model at request time.

    ``ratings`` are ``(movie_id, stars)`` pairs; when ``complete`` they are all of the user's
    ratings (read from the database, including those made after training), otherwise the model
    adds the ratings it was trained on. ``liked`` are movies picked as favourites, ``genres``
    preferred genres, ``searched_genres`` genres the user searched for (a weak signal).
    """

    ratings: tuple[tuple[int, float], ...] = ()
    liked: tuple[int, ...] = ()
    genres: tuple[str, ...] = ()
    searched_genres: tuple[str, ...] = ()
    complete: bool = False


def clip_rating(value: float) -> float:
    return float(min(RATING_MAX, max(RATING_MIN, value)))


@dataclass
class Query:
    """What a model made of one user for one request.

    ``seen`` are the model's dense indices of movies the user has rated or liked (never
    recommended); ``state`` is the model's own (factors, a folded-in vector, signal weights);
    ``signals`` and ``explainable`` (dense indices, and which may be named in ``because``)
    are set by models that explain their answers.
    """

    seen: np.ndarray
    state: Any = None
    signals: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    explainable: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=bool))


class Recommender(ABC):
    """A loaded model. Never raises for an unknown user.

    ``kind`` is ``"rating"`` (predicts stars; ranks by them) or ``"ranking"`` (orders movies;
    :meth:`predict` is refused). Every model scores its :class:`Candidates` (``self._cand``:
    the whole catalogue or one shard's slice) and knows its genre columns
    (``self._genre_column``: lower-cased genre name -> column).
    """

    version: str
    kind: str = "rating"
    meta: dict
    _cand: Candidates
    _genre_column: Mapping[str, int]
    genre_names: list[str]
    movie_ids: np.ndarray  # every movie of the model, sorted (signals are indices into it)
    # What the loader (:mod:`movierec.ai.loader`) maps, and passes to ``__init__``.
    array_names: tuple[str, ...] = ()
    optional_arrays: tuple[str, ...] = ()  # loaded when the artifact has them
    # The start of a fallback's reason: why this model cannot personalise.
    fallback_reason = "unknown user"
    # The reason of a personal answer (None: a model's answer needs none).
    answer_reason: str | None = None

    @property
    def shard(self) -> Shard | None:
        """The shard this object keeps (None: the whole catalogue)."""
        return self._cand.shard

    @property
    def ann(self) -> AnnIndex | None:
        return self._cand.ann

    def restrict(self, shard: Shard, directory: Path | None = None) -> Recommender:
        """This model keeping and answering only ``shard``'s movies (see
        :meth:`Candidates.slice`; derived files are cached in ``directory``, the artifact's);
        users, signals, ``/predict`` and query movies stay whole. Raises :class:`BadInput`
        when this object is already a slice."""
        restricted = copy.copy(self)
        restricted._cand = self._cand.slice(shard, directory)
        restricted._restricted()
        return restricted

    def _restricted(self) -> None:  # noqa: B027 - most models derive nothing from them
        """Rebuild what this copy derived from its candidates (after :meth:`restrict`)."""

    @abstractmethod
    def knows_user(self, user_id: int) -> bool:
        """Whether the model has factors for ``user_id`` (rated something before training)."""

    @abstractmethod
    def knows_movie(self, movie_id: int) -> bool:
        """Whether the model has ``movie_id`` (it was rated before training)."""

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
        """The ``k`` best movies for ``user_id``, never one in ``exclude`` or already rated;
        movies of ``demote_genres`` after all others (each keeps its own score: shards'
        answers are merged by it); only ``shard``'s movies when given.

        Every model takes every argument (the server passes them to whichever model is
        live): ``genres`` are the user's preferred genres, ``signals`` what the user told the
        service since training; a model that cannot use one ignores it. A user the model
        cannot score gets the most rated movies (of ``genres`` when any match), with
        ``fallback=True`` and a ``reason``.

        Raises :class:`BadInput` when ``k`` is not a positive integer or this object keeps
        another shard.
        """
        k = check_k(k)
        cand = self._cand
        mask = cand.shard_mask(shard)
        excluded = cand.positions(exclude)
        demoted = self._genre_columns(demote_genres)
        query = self._query(user_id, genres or (), signals or Signals())
        if query is None:
            return self._fallback(k, excluded, genres or (), demoted, shard)
        # Positions never answered (some twice: cheaper than a sorted union per request).
        blocked = np.concatenate([excluded, cand.from_full(query.seen)])
        found = self._own_top(query, k, blocked, shard, demoted)
        if found is None:
            COUNTERS.add("movierec_recommender_scored_total", method="exact")
            scores, explain = self._scores(query)
            scores[blocked] = -np.inf
            if mask is not None:
                scores[~mask] = -np.inf
            top = top_k(self._ranked(scores, demoted), k)
            values = scores[top]
        else:
            top, values, explain = found
        return self._answer(query, top, values, explain)

    @abstractmethod
    def _query(self, user_id: int, genres: Sequence[str], signals: Signals) -> Query | None:
        """What this model makes of the user, or None when it cannot personalise."""

    @abstractmethod
    def _scores(self, query: Query) -> tuple[np.ndarray, Explain | None]:
        """A new array of scores over every candidate (higher is better), and how to explain
        chosen candidates (None: this model gives no explanations)."""

    def _own_top(
        self, query: Query, k: int, blocked: np.ndarray, shard: Shard | None, demoted: list[int]
    ) -> tuple[np.ndarray, np.ndarray, Explain | None] | None:
        """This model's own top ``k`` candidate positions (not ``blocked``, of ``shard``,
        ``demoted`` genre columns last), their scores and explanations, when it has a faster
        way than scoring every candidate (an ANN index, a cached order); None: score them."""
        return None

    def _shown(self, values: np.ndarray) -> list[float]:
        """The scores an answer shows for a model's scores."""
        return np.asarray(values, dtype=np.float64).tolist()

    def _ranked(self, scores: np.ndarray, columns: Sequence[int]) -> np.ndarray:
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

    def _answer(
        self, query: Query, top: np.ndarray, values: np.ndarray, explain: Explain | None
    ) -> Recommendations:
        """Items ``top`` (candidate positions) with ``values``, each explained by the
        explainable signal that contributed most to it."""
        movie_ids = self._cand.movie_ids[top].tolist()
        items = tuple(zip(movie_ids, self._shown(values), strict=True))
        if explain is None:
            return Recommendations(items, self.version, reason=self.answer_reason)
        because: list[int | None] = [None] * top.size
        explainable = query.explainable
        if explainable.any() and top.size:
            parts = explain(top)[explainable]
            best = np.argmax(parts, axis=0)
            # Whole-array lookups: one index into a memory-mapped array costs microseconds.
            sources = self.movie_ids[query.signals[explainable][best]].tolist()
            weighs = parts[best, np.arange(top.size)].tolist()
            because = [s if weight > 0 else None for s, weight in zip(sources, weighs, strict=True)]
        return Recommendations(
            items, self.version, reason=self.answer_reason, because=tuple(because)
        )

    def _fallback(
        self,
        k: int,
        excluded: np.ndarray,
        genres: Sequence[str],
        demoted: Sequence[int],
        shard: Shard | None,
    ) -> Recommendations:
        """The most rated candidates (of ``genres`` when any match), as a fallback."""
        cand = self._cand
        columns = self._genre_columns(genres)
        skip = set(excluded.tolist())
        picked = cand.most_rated(k, skip, columns, demoted, shard) if columns else []
        if columns and picked:
            names = ", ".join(self.genre_names[c] for c in columns)
            reason = f"{self.fallback_reason}: the most rated movies in {names}"
        else:
            picked = cand.most_rated(k, skip, [], demoted, shard)
            reason = f"{self.fallback_reason}: the most rated movies"
            if genres:
                reason = (
                    f"{self.fallback_reason}: no rated movie in {', '.join(genres)};"
                    " the most rated movies"
                )
        items = tuple((int(cand.movie_ids[i]), float(cand.popularity[i])) for i in picked)
        return Recommendations(items, self.version, fallback=True, reason=reason)

    def _genre_columns(self, genres: Iterable[str]) -> list[int]:
        return [
            self._genre_column[g.casefold()] for g in genres if g.casefold() in self._genre_column
        ]

    def in_genres(self, movie_ids: Sequence[int], genres: Sequence[str]) -> list[bool]:
        """Per movie of ``movie_ids`` (movies this model answered), whether it is of any of
        ``genres``: which movies of an answer were demoted, for whoever merges answers."""
        columns = self._genre_columns(genres)
        if not columns:
            return [False] * len(movie_ids)
        return self._cand.genre_mask(columns)[self._cand.positions(movie_ids)].tolist()

    @abstractmethod
    def similar(self, movie_id: int, k: int = 10, shard: Shard | None = None) -> Similar:
        """The ``k`` movies most like ``movie_id`` (of ``shard`` when given).

        Raises :class:`~movierec.errors.NotFound` when the model does not know the movie.
        """

    @abstractmethod
    def predict(self, user_id: int, movie_id: int) -> float:
        """The predicted rating in 0.5..5; unknown ids fall back to biases and the mean."""

    def rated_movie_ids(self, user_id: int) -> Sequence[int]:
        """Movies the user had rated when the model was trained (empty when it keeps none)."""
        return ()

    def predict_many(
        self,
        user_id: int,
        movie_ids: Sequence[int],
        ratings: Sequence[tuple[int, float]] = (),
    ) -> dict[int, float]:
        """Predicted stars (0.5..5) of the movies of ``movie_ids`` the model knows, for a user
        whose ratings are ``ratings`` (``(movie_id, stars)``, all of them, as the database has
        them). Movies among ``ratings`` are left out: the user said what they think.

        This default asks :meth:`predict` per movie and ignores ratings made since training;
        a factor model folds them in (:mod:`movierec.ai.rating_fold_in`)."""
        rated = {movie_id for movie_id, _ in ratings} | set(self.rated_movie_ids(user_id))
        return {
            m: self.predict(user_id, m)
            for m in dict.fromkeys(movie_ids)
            if m not in rated and self.knows_movie(m)
        }


class RatingModel(Recommender):
    """A model that predicts stars: its answers show them, clipped to 0.5..5 (the order
    uses the unclipped estimate)."""

    kind = "rating"

    def _shown(self, values: np.ndarray) -> list[float]:
        return [clip_rating(v) for v in np.asarray(values, dtype=np.float64).tolist()]
