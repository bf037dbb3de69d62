"""What every recommender answers with, and the interface the server and the web side rely on.

"Cannot personalise" is a result, not an error: :meth:`Recommender.recommend` for a user the
model has never seen returns popular movies with ``fallback=True`` and a ``reason``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from movierec.errors import BadInput

if TYPE_CHECKING:
    from movierec.ai.candidates import Shard

RATING_MIN = 0.5
RATING_MAX = 5.0


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


class Recommender(ABC):
    """A loaded model. Implementations must never raise for an unknown user.

    ``kind`` is ``"rating"`` (predicts stars; ranks by them) or ``"ranking"`` (orders movies;
    :meth:`predict` is refused). Ranking models take ``signals`` and ``demote_genres`` too.
    ``shard`` (see :mod:`movierec.ai.candidates`) limits what :meth:`recommend` and
    :meth:`similar` return to one shard's movies, with the same scores as without it.
    """

    version: str
    kind: str = "rating"
    meta: dict

    @property
    def shard(self) -> Shard | None:
        """The shard this object keeps (None: the whole catalogue)."""
        return None

    def restrict(self, shard: Shard, directory: Path | None = None) -> Recommender:
        """This model keeping and answering only ``shard``'s movies; derived files may be
        cached in ``directory`` (the artifact's). Raises :class:`BadInput` when it cannot."""
        raise BadInput(f"a {type(self).__name__} cannot be restricted to shard {shard}")

    @abstractmethod
    def knows_user(self, user_id: int) -> bool:
        """Whether the model has factors for ``user_id`` (rated something before training)."""

    @abstractmethod
    def knows_movie(self, movie_id: int) -> bool:
        """Whether the model has ``movie_id`` (it was rated before training)."""

    @abstractmethod
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
        movies of ``demote_genres`` after all others; only ``shard``'s movies when given.

        Every model takes every argument (the server passes them to whichever model is
        live): ``genres`` are the user's preferred genres, ``signals`` what the user told the
        service since training; a model that cannot use one ignores it and says so.
        Raises :class:`~movierec.errors.BadInput` when ``k`` is not positive.
        """

    @abstractmethod
    def in_genres(self, movie_ids: Sequence[int], genres: Sequence[str]) -> list[bool]:
        """Per movie of ``movie_ids`` (movies this model answered), whether it is of any of
        ``genres``: which movies of an answer were demoted, for whoever merges answers."""

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
        a factor model folds them in (:mod:`movierec.ai.fold_in`)."""
        rated = {movie_id for movie_id, _ in ratings} | set(self.rated_movie_ids(user_id))
        return {
            m: self.predict(user_id, m)
            for m in dict.fromkeys(movie_ids)
            if m not in rated and self.knows_movie(m)
        }
