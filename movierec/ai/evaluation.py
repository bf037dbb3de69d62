"""Seeded splits and error and top-N metrics, kept outside the algorithms so every model is
measured alike."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp

from movierec.ai.dataset import RatingsData
from movierec.ai.factors import Factors
from movierec.errors import BadInput

# Every user against every movie is 10^12 scores at a million of each, longer than the
# training it measures: past this many users with held-out ratings, a seeded sample of them
# (a per-user NDCG@10 lies in [0, 1], so the mean of 10,000 has a standard error <= 0.005).
MAX_USERS = 10_000
# Past this many user x movie scores, fewer users still: at a million movies scoring and
# ranking one user's row took 33-38 ms (this function on random factors, 64 per movie, 2
# shared cores), so 10,000 users were 6 minutes per evaluation, and a training evaluates twice
# (its model and the popularity baseline): bench_scale's full-size ALS was killed after 900 s,
# still evaluating. 2e9 scores keep 10,000 users up to 200,000 movies and 2,000 at a million
# (a standard error <= 0.011 by the bound above; two models are measured on the same sample).
MAX_SCORES = 2_000_000_000
MIN_USERS = 500  # however large the catalogue
SCORE_BYTES = 256 * 2**20  # a batch's dense scores: 512 users x 1M movies were 4 GB


@dataclass(frozen=True)
class Metrics:
    """Hold-out errors of a model and of the global-mean baseline on the same ratings."""

    rmse: float
    mae: float
    baseline_rmse: float
    baseline_mae: float
    n_train: int
    n_test: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def holdout_split(n: int, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices ``(train, test)``: a random ``test_size`` share of ``n`` rows is held out.

    Raises :class:`BadInput` when ``test_size`` is not in (0, 1) or leaves a side empty.
    """
    if not 0 < test_size < 1:
        raise BadInput(f"test size must be between 0 and 1 (exclusive), not {test_size}")
    n_test = int(round(n * test_size))
    if n_test == 0 or n_test == n:
        raise BadInput(f"{n} rating(s) are too few to hold out {test_size:.0%} for evaluation")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def kfold(n: int, folds: int, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``folds`` pairs of row indices ``(train, test)``; every row is tested exactly once.

    Raises :class:`BadInput` when there are fewer rows than folds or fewer than two folds.
    """
    if folds < 2 or n < folds:
        raise BadInput(f"cannot cut {n} rating(s) into {folds} folds")
    order = np.random.default_rng(seed).permutation(n)
    for test in np.array_split(order, folds):
        mask = np.ones(n, dtype=bool)
        mask[test] = False
        yield np.flatnonzero(mask), np.sort(test)


def rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(predicted) - np.asarray(actual)) ** 2)))


def mae(predicted: np.ndarray, actual: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(predicted) - np.asarray(actual))))


def evaluate(
    factors: Factors, data: RatingsData, train_rows: np.ndarray, test_rows: np.ndarray
) -> Metrics:
    """Errors of ``factors`` (fitted on ``train_rows``) on ``test_rows``, clipped like surprise.

    The baseline predicts the training rows' mean rating for everything.
    """
    actual = data.ratings[test_rows].astype(np.float64)
    predicted = factors.estimate_pairs(data.user_index[test_rows], data.item_index[test_rows])
    baseline = np.full_like(actual, factors.global_mean)
    return Metrics(
        rmse=rmse(predicted, actual),
        mae=mae(predicted, actual),
        baseline_rmse=rmse(baseline, actual),
        baseline_mae=mae(baseline, actual),
        n_train=int(train_rows.shape[0]),
        n_test=int(test_rows.shape[0]),
    )


@dataclass(frozen=True)
class TopN:
    """Top-``k`` quality over the users with at least one held-out rating.

    precision = hits / k; recall = hits / held-out; NDCG with binary gains and the ideal DCG
    of min(held-out, k) hits; MAP@k = Σ precision@j at each hit / min(held-out, k); coverage =
    share of the catalogue in anyone's list; novelty = mean ``-log2(p)`` of recommended movies,
    ``p = (training raters + 1) / (users + 1)``.
    """

    k: int
    precision: float
    recall: float
    ndcg: float
    map: float
    coverage: float
    novelty: float
    n_users: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def per_user_split(
    users: np.ndarray,
    test_size: float,
    seed: int,
    timestamps: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices ``(train, test)`` holding out ``round(n_u · test_size)`` of each user's rows:
    the latest ones when ``timestamps`` are given (ties broken at random), else random ones.

    Raises :class:`BadInput` when ``test_size`` is not in (0, 1) or nothing is held out.
    """
    if not 0 < test_size < 1:
        raise BadInput(f"test size must be between 0 and 1 (exclusive), not {test_size}")
    users = np.asarray(users)
    noise = np.random.default_rng(seed).random(users.shape[0])
    keys = (noise,) if timestamps is None else (noise, -np.asarray(timestamps))
    order = np.lexsort((*keys, users))  # per user: latest (or random) first
    counts = np.bincount(users)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    position = np.empty(users.shape[0], dtype=np.int64)
    position[order] = np.arange(users.shape[0]) - np.repeat(starts, counts)
    held = np.floor(counts * test_size + 0.5).astype(np.int64)
    test = position < held[users]
    if not test.any():
        raise BadInput(f"{users.shape[0]} rating(s) are too few to hold out {test_size:.0%}")
    return np.flatnonzero(~test), np.flatnonzero(test)


def top_n_metrics(
    scores_for: Callable[[np.ndarray], np.ndarray],
    seen: sp.csr_matrix,
    held_out: sp.csr_matrix,
    k: int = 10,
    batch: int = 512,
    max_users: int = MAX_USERS,
    seed: int = 0,
    max_scores: int = MAX_SCORES,
) -> TopN:
    """Rank every movie a user has not rated in ``seen`` by ``scores_for(users)`` (a dense
    ``(len(users), n_items)`` array) and measure against ``held_out`` (both user-item CSR),
    over the users with a held-out rating, or a seeded sample of ``max_users`` of them
    (fewer when that many would be more than ``max_scores`` scores, :data:`MAX_SCORES`).

    Raises :class:`BadInput` when no user has a held-out rating.
    """
    n_users, n_items = seen.shape
    held_out = sp.csr_matrix(held_out, copy=True)
    held_out.eliminate_zeros()
    users = np.flatnonzero(np.diff(held_out.indptr) > 0)
    if users.size == 0:
        raise BadInput("no user has a held-out rating to evaluate on")
    max_users = min(max_users, max(MIN_USERS, max_scores // n_items))
    if users.size > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    batch = max(1, min(batch, SCORE_BYTES // (8 * n_items)))  # scores are made float64
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    popularity = np.diff(seen.tocsc().indptr)
    information = -np.log2((popularity + 1) / (n_users + 1))
    totals = np.zeros(4)
    novelty_sum, novelty_count = 0.0, 0
    shown = np.zeros(n_items, dtype=bool)
    for start in range(0, users.size, batch):
        chunk = users[start : start + batch]
        scores = np.array(scores_for(chunk), dtype=np.float64)
        seen_rows = seen[chunk].tocoo()
        scores[seen_rows.row, seen_rows.col] = -np.inf
        top = _top_rows(scores, k)
        relevant = held_out[chunk].toarray() > 0
        hits = np.take_along_axis(relevant, top, axis=1) & np.isfinite(
            np.take_along_axis(scores, top, axis=1)
        )
        n_rel = relevant.sum(axis=1)
        ideal = np.minimum(n_rel, k)
        idcg = np.cumsum(discount)[ideal - 1]
        cumulative = np.cumsum(hits, axis=1)
        precision_at = cumulative / np.arange(1, k + 1)
        totals[0] += (hits.sum(axis=1) / k).sum()
        totals[1] += (hits.sum(axis=1) / n_rel).sum()
        totals[2] += ((hits * discount).sum(axis=1) / idcg).sum()
        totals[3] += ((precision_at * hits).sum(axis=1) / ideal).sum()
        listed = top[np.isfinite(np.take_along_axis(scores, top, axis=1))]
        shown[listed] = True
        novelty_sum += float(information[listed].sum())
        novelty_count += int(listed.size)
    mean = totals / users.size
    return TopN(
        k=k,
        precision=float(mean[0]),
        recall=float(mean[1]),
        ndcg=float(mean[2]),
        map=float(mean[3]),
        coverage=float(shown.sum() / n_items),
        novelty=novelty_sum / max(1, novelty_count),
        n_users=int(users.size),
    )


def _top_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Per row, the indices of the ``k`` largest scores, best first (ties: lower index)."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.lexsort((part, -np.take_along_axis(scores, part, axis=1)), axis=1)
    return np.take_along_axis(part, order, axis=1)
