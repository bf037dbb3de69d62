"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data"), closed form.

``B = I - P / diag(P)`` with ``P = (XᵀX + λI)⁻¹`` over the binary user-item matrix ``X``, and
``B`` zero on the diagonal; a user's scores are ``q · B`` where ``q`` holds the user's signals.
Here ``q_j = 1 + rating_weight · (r_j - 3)``: a 5-star rating counts a little more than a
1-star one (measured +0.002..0.004 NDCG@10 on ml-100k). A new user is folded in for free: any
signal vector ``q`` (ratings made after training, liked movies, genres) gives scores at once.

``B`` is dense ``n_items²`` float32 and its inversion is cubic, so EASE refuses catalogues
above ``max_items`` (default 20 000: 1.6 GB of float32 for B, ~12 GB peak while fitting,
extrapolated from the bench); above it, use ALS (see ``choose_ranking_algo``).

**Collective EASE.** ``B`` is fitted on the user-item matrix stacked with weighted pseudo-user
rows built from the training data (:func:`side_rows`), each switched off by a weight of 0:

* sessions (``session_weight``, gap ``session_gap`` s): a user's ratings in time order, split
  where two consecutive ones are more than the gap apart; one row per run of >= 2 movies
  (people rate a page of movies at once: what is rated together is related);
* liked (``liked_weight``, ``liked_stars``): one row per user with their movies rated >= 4;
* genres (``genre_weight``) and release decades (``decade_weight``): one row per genre and per
  decade (clip((year - 1920) // 10, 0, 8); a movie without a year is in no decade row);
* windows (``window_weight``, ``window``): per rating, that movie and the same user's next
  ``window - 1`` movies in time order.

Sessions and windows need timestamps, genre/decade rows the movies' metadata; absent data
means absent rows. The served form is unchanged (``B`` items × items, ``q · B``); defaults
(λ 1000, binary query) are the ones tuned on ml-100k (issue protocol: NDCG@10 0.499 against
0.485 for plain EASE, λ 400, rating weight 0.2; see BENCHMARKS.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp

from movierec.ai.algorithms.base import RANKING, Algorithm, Fitted, Param, non_negative, positive
from movierec.ai.dataset import RatingsData, user_item_matrix
from movierec.ai.folding import signal_weights
from movierec.errors import BadInput

DENSE_BLOCK_ROWS, GRAM_CHUNK = 256, 2048
FIRST_DECADE, N_DECADES = 1920, 9  # decade rows: <1930, 1930s, ..., 1990s and later
# Each block of side rows (as side_rows names it) and the parameter weighing it.
BLOCK_WEIGHTS = {
    "sessions": "session_weight", "liked": "liked_weight", "genres": "genre_weight",
    "decades": "decade_weight", "windows": "window_weight",
}  # fmt: skip
SIDE_PARAMS = tuple(BLOCK_WEIGHTS.values())


def _binary_rows(row_ids: np.ndarray, items: np.ndarray, n_rows: int, n_items: int):
    matrix = sp.csr_matrix(
        (np.ones(row_ids.shape[0], dtype=np.float32), (row_ids, items)), shape=(n_rows, n_items)
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def side_rows(
    data: RatingsData, rows: np.ndarray | None, params: Mapping[str, Any]
) -> dict[str, sp.csr_matrix]:
    """The pseudo-user rows of collective EASE for ``rows`` of ``data`` (all when None), binary
    and unweighted, by name (``sessions``, ``liked``, ``genres``, ``decades``, ``windows``);
    a block is left out when its weight is 0 or the data lacks what it needs."""
    rows = np.arange(data.n_ratings) if rows is None else np.asarray(rows)
    n_items = data.n_items
    users, items = data.user_index[rows], data.item_index[rows]
    out: dict[str, sp.csr_matrix] = {}
    stamps = None if data.timestamps is None else data.timestamps[rows]
    if stamps is not None and rows.size and params.get("session_weight", 0) > 0:
        order = np.lexsort((stamps, users))
        u, i, t = users[order], items[order], stamps[order]
        new = np.r_[True, (u[1:] != u[:-1]) | (np.diff(t) > params["session_gap"])]
        run = np.cumsum(new) - 1
        sessions = _binary_rows(run, i, int(run[-1]) + 1, n_items)
        out["sessions"] = sessions[np.diff(sessions.indptr) >= 2]
    if rows.size and params.get("liked_weight", 0) > 0:
        good = data.ratings[rows] >= params["liked_stars"]
        out["liked"] = _binary_rows(users[good], items[good], data.n_users, n_items)
    if data.item_genres is not None and params.get("genre_weight", 0) > 0:
        out["genres"] = sp.csr_matrix(np.asarray(data.item_genres, dtype=np.float32).T)
    if data.item_years is not None and params.get("decade_weight", 0) > 0:
        years = np.asarray(data.item_years)
        known = np.flatnonzero(years > 0)
        decade = np.clip((years[known] - FIRST_DECADE) // 10, 0, N_DECADES - 1)
        out["decades"] = _binary_rows(decade, known, N_DECADES, n_items)
    if stamps is not None and rows.size and params.get("window_weight", 0) > 0:
        order = np.lexsort((items, stamps, users))
        u, i = users[order], items[order]
        n = i.shape[0]
        starts, columns = [], []
        for offset in range(min(params["window"], n)):
            first = np.flatnonzero(u[: n - offset] == u[offset:])
            starts.append(first)
            columns.append(i[first + offset])
        out["windows"] = _binary_rows(np.concatenate(starts), np.concatenate(columns), n, n_items)
    return out


def collective_gram(
    data: RatingsData, rows: np.ndarray | None, params: Mapping[str, Any]
) -> np.ndarray:
    """``X_augᵀ X_aug`` (dense float64) for the user-item matrix stacked with the weighted
    :func:`side_rows`: ``XᵀX + Σ w² SᵀS``."""
    x = user_item_matrix(data, rows, "binary")
    gram = np.asarray((x.T @ x).todense(), dtype=np.float64)
    for name, block in side_rows(data, rows, params).items():
        if not block.nnz:
            continue
        w2 = float(params[BLOCK_WEIGHTS[name]]) ** 2
        if block.shape[0] <= DENSE_BLOCK_ROWS:  # genres, decades: few, long rows
            dense = block.toarray().astype(np.float64)
            for start in range(0, gram.shape[1], GRAM_CHUNK):
                part = slice(start, start + GRAM_CHUNK)
                gram[:, part] += w2 * (dense.T @ dense[:, part])
        else:  # added entry by entry: no second dense n² temporary
            product = (block.T @ block).tocoo()
            gram[product.row, product.col] += w2 * product.data.astype(np.float64)
    return gram


def ease_solve(gram: np.ndarray, lam: float) -> np.ndarray:
    """``B = I - P / diag(P)``, ``P = (G + λI)⁻¹``, zero diagonal, as float32 (``gram`` is
    overwritten)."""
    gram[np.diag_indices_from(gram)] += lam
    inverse = np.linalg.inv(gram)
    del gram  # the caller passes a temporary: peak is two n² float64 matrices, not three
    inverse /= -np.diag(inverse)
    inverse[np.diag_indices_from(inverse)] = 0.0
    return inverse.astype(np.float32)


def check_size(name: str, n_items: int, max_items: int) -> None:
    """Raises :class:`BadInput` when a dense ``n_items²`` matrix is above ``max_items``."""
    if n_items > max_items:
        raise BadInput(
            f"{name} needs a dense {n_items}² item matrix "
            f"({4 * n_items**2 / 1e9:.1f} GB); above max_items={max_items} "
            "train als instead"
        )


EASE_PARAMS = (
    Param("lam", float, 1000.0, "L2 regularisation λ", positive, "positive"),
    Param("rating_weight", float, 0.0, "extra weight per star above 3", non_negative, ">= 0"),
    Param("max_items", int, 20_000, "refuse larger catalogues", positive, "positive"),
    Param("session_weight", float, 1.0, "weight of session rows (0: none)", non_negative, ">= 0"),
    Param("session_gap", int, 60, "seconds between ratings of one session", non_negative, ">= 0"),
    Param("liked_weight", float, 0.7, "weight of liked rows (0: none)", non_negative, ">= 0"),
    Param("liked_stars", float, 4.0, "stars for a liked row", positive, "positive"),
    Param("genre_weight", float, 4.0, "weight of genre rows (0: none)", non_negative, ">= 0"),
    Param("decade_weight", float, 4.0, "weight of decade rows (0: none)", non_negative, ">= 0"),
    Param("window_weight", float, 0.3, "weight of window rows (0: none)", non_negative, ">= 0"),
    Param("window", int, 8, "movies per window row", positive, "positive"),
)
# The side rows off and the pre-collective defaults: plain EASE as served before (bench rows).
PLAIN_EASE = {"lam": 400.0, "rating_weight": 0.2} | {name: 0.0 for name in SIDE_PARAMS}


def fit_ease(data: RatingsData, rows, params: Mapping[str, Any], name: str = "ease") -> np.ndarray:
    """Collective EASE's ``B`` (float32) for ``rows`` of ``data`` with resolved ``params``."""
    check_size(name, data.n_items, params["max_items"])
    return ease_solve(collective_gram(data, rows, params), params["lam"])


class FittedEase(Fitted):
    kind = RANKING
    form = "ease"

    def __init__(self, weights: np.ndarray, rating_weight: float):
        self.weights = weights
        self.rating_weight = rating_weight

    def score_users(self, users: np.ndarray, seen: sp.csr_matrix) -> np.ndarray:
        query = seen[users].astype(np.float32)
        query.data = signal_weights(query.data, self.rating_weight)
        return np.asarray(query @ self.weights)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"ease_weights": self.weights}

    def meta(self) -> dict[str, Any]:
        return {"rating_weight": self.rating_weight}


class Ease(Algorithm):
    name = "ease"
    kind = RANKING
    summary = "collective item-item linear autoencoder, closed form (top-N up to ~20k movies)"
    params = EASE_PARAMS

    def fit(self, data: RatingsData, rows, params: Mapping[str, Any], seed: int) -> Fitted:
        return FittedEase(fit_ease(data, rows, params), params["rating_weight"])
