"""Every trainable algorithm, by name: surprise's rating models, (collective) EASE, its sparse
approximation SANSA, ALS, the EASE + ALS and SANSA + ALS blends (``easeals``, ``sansaals``) and
popularity.

>>> from movierec.ai.algorithms import get_algorithm
>>> algo = get_algorithm("ease")
>>> params = algo.resolve({"lam": "300"})     # defaults + overrides, checked
>>> fitted = algo.fit(data, None, params, seed=0)   # doctest: +SKIP
"""

from movierec.ai.algorithms.als import Als
from movierec.ai.algorithms.base import KINDS, RANKING, RATING, Algorithm, Fitted, Param
from movierec.ai.algorithms.blend import EaseAls, SansaAls
from movierec.ai.algorithms.ease import Ease
from movierec.ai.algorithms.popularity import Popularity
from movierec.ai.algorithms.rating import BaselineOnly, KnnBaseline, Nmf, Svd, SvdPP
from movierec.ai.algorithms.sansa import Sansa
from movierec.errors import BadInput

ALGORITHMS: dict[str, Algorithm] = {
    algo.name: algo
    for algo in (
        Svd(),
        SvdPP(),
        Nmf(),
        KnnBaseline(),
        BaselineOnly(),
        Ease(),
        EaseAls(),
        Sansa(),
        SansaAls(),
        Als(),
        Popularity(),
    )
}

# Where EASE's dense item-item matrix (and so the EASE + ALS blend) stops paying. Measured
# (bench_algorithms.py, 2 cores): 4k movies 12 s / 0.5 GB peak, 8k movies 47 s / 2.0 GB; n²
# memory and n³ time put 20k movies at ~12 GB peak and ~12 min to fit, 1.6 GB of float32
# weights to serve. Above it the SANSA + ALS blend (sparse weights, linear in the catalogue)
# takes over; `ease_max_items` moves it.
EASE_MAX_ITEMS = 20_000


def get_algorithm(name: str) -> Algorithm:
    """The algorithm called ``name``. Raises :class:`BadInput` listing the known names."""
    try:
        return ALGORITHMS[name.strip().lower()]
    except KeyError:
        raise BadInput(f"unknown algorithm {name!r}; known: {', '.join(ALGORITHMS)}") from None


def choose_ranking_algo(n_items: int, max_items: int = EASE_MAX_ITEMS) -> str:
    """``easeals`` (collective EASE + iALS) for catalogues up to ``max_items`` movies,
    ``sansaals`` (the same blend over SANSA's sparse weights) above. The first measured
    NDCG@10 0.503 on ml-100k (issue protocol, 3 seeds) against 0.499 for collective EASE
    alone; the second, forced on the same data, 0.496 (and 0.131 against 0.132 on
    ml-latest-small's time-ordered hold-out), where plain ALS, served above before, measured
    0.388 and 0.108 (BENCHMARKS.md, "Large catalogues")."""
    return "easeals" if n_items <= max_items else "sansaals"


__all__ = [
    "ALGORITHMS",
    "EASE_MAX_ITEMS",
    "KINDS",
    "RANKING",
    "RATING",
    "Algorithm",
    "Fitted",
    "Param",
    "choose_ranking_algo",
    "get_algorithm",
]
