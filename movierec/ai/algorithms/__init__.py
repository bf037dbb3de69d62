"""Every trainable algorithm, by name: surprise's rating models, (collective) EASE, its sparse
approximation SANSA, ALS, the EASE + ALS and SANSA + ALS blends (``easeals``, ``sansaals``) and
popularity; which one ``auto`` trains (:func:`choose_ranking_algo`).

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
# weights to serve. Above it the SANSA + ALS blend (sparse weights) takes over up to
# SANSA_MAX_ITEMS, then ALS (choose_ranking_algo); `ease_max_items` and `sansa_max_items` move
# them.
EASE_MAX_ITEMS = 20_000
SANSA_MAX_ITEMS = 20_000


def get_algorithm(name: str) -> Algorithm:
    """The algorithm called ``name``. Raises :class:`BadInput` listing the known names."""
    try:
        return ALGORITHMS[name.strip().lower()]
    except KeyError:
        raise BadInput(f"unknown algorithm {name!r}; known: {', '.join(ALGORITHMS)}") from None


def choose_ranking_algo(
    n_items: int, max_items: int = EASE_MAX_ITEMS, sansa_max_items: int = SANSA_MAX_ITEMS
) -> str:
    """``easeals`` (collective EASE + iALS) for catalogues up to ``max_items`` movies,
    ``sansaals`` (the same blend over SANSA's sparse weights) up to ``sansa_max_items``, plain
    ALS (``als``) above: the one ranking model that trains at any catalogue size.

    Quality: ``easeals`` measured NDCG@10 0.503 on ml-100k (issue protocol, 3 seeds) against
    0.499 for collective EASE alone; ``sansaals``, forced on the same data, 0.496 (and 0.131
    against 0.132 on ml-latest-small's time-ordered hold-out) (BENCHMARKS.md, "Large
    catalogues").

    Size, on bench_scale's synthetic catalogues (as many users as movies, 20 ratings per
    movie, each user's latest 20 % held out; ``bench/bench_handover.py``, 2 shared cores,
    fits stopped at 600 s): ``sansaals`` with its exact CHOLMOD factorisation (the default)
    fitted 10,000 movies in 91 s (1.3 GB, NDCG@10 0.078) but did not finish at 20,000 (3.6 GB
    when stopped) nor at 50,000 (8.5 GB), and at 100,000 CHOLMOD refused it ("problem too
    large") after ~45 s; with the incomplete factorisation (``factorizer = icf``) it fitted
    20,000 movies in 138 s (1.3 GB) at NDCG@10 0.078, below ALS, and did not finish at
    50,000 or 100,000. ALS fitted the same in 2.4 s
    (0.2 GB, NDCG@10 0.083), 7.2 s (0.3 GB, 0.066) and 8.3 s (0.4 GB, 0.065), above
    popularity each time (0.018, 0.027, 0.017). So ``sansa_max_items`` defaults to
    ``ease_max_items``, and above 20,000 movies ``auto`` trains ALS: it trains at any size, at
    the price measured on real data (0.487 against 0.496 on ml-100k, 0.119 against 0.131 on
    ml-latest-small, with ALS's defaults tuned for it; 0.388 and 0.108 before). Raise
    ``sansa_max_items`` for a catalogue whose Gram matrix stays sparse enough for CHOLMOD
    (ml-latest-small's 9,724 movies fit in 61 s); BENCHMARKS.md, "Where `auto` hands over".
    """
    if n_items <= max_items:
        return "easeals"
    return "sansaals" if n_items <= sansa_max_items else "als"


__all__ = [
    "ALGORITHMS",
    "EASE_MAX_ITEMS",
    "SANSA_MAX_ITEMS",
    "KINDS",
    "RANKING",
    "RATING",
    "Algorithm",
    "Fitted",
    "Param",
    "choose_ranking_algo",
    "get_algorithm",
]
