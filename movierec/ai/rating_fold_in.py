"""Folding a user's newest ratings into a rating model's factors, at request time (a ranking
model's fold-in of signals is :mod:`movierec.ai.folding`'s).

A factor model knows each user as the vector ``p_u`` (and bias ``b_u``) it learnt from the
ratings it was trained on. A rating made since then is in the database, not in the model: the
predicted stars a user sees must move with it at once, not at the next retrain. So the user's
vector is re-solved for the ratings the model has not seen, by ridge regression *towards the
trained vector* (the prior; zero for a user the model never saw)::

    x = argmin  Σ_j (r_j - μ - b_j - x·a_j)²  +  λ |x - x0|²      a_j = [q_j, 1], x = [p, b]
      = (AᵀA + λI)⁻¹ (Aᵀy + λ x0)

With no new rating, ``x`` is the trained vector: the answer is exactly the model's own
prediction, so the served stars keep the model's offline RMSE. One solve of an
(f+1)x(f+1) system per request (f, the number of factors, is 50 to 200): well under a
millisecond, against the milliseconds of the HTTP call around it.

A re-rating of a movie the model was trained on does not move the vector until the next
retrain (the artifact keeps which movies a user rated, not the stars they gave).
"""

from __future__ import annotations

import numpy as np

# λ in stars²: how firmly the trained vector holds against new ratings. The best of 0.5 to 20
# for users folded in from nothing on ml-100k's hold-out of each user's latest ratings
# (bench/bench_stars.py, BENCHMARKS.md).
FOLD_IN_REG = 10.0


def fold_in_ratings(
    item_factors: np.ndarray,
    targets: np.ndarray,
    prior: np.ndarray,
    reg: float = FOLD_IN_REG,
    biased: bool = True,
) -> np.ndarray:
    """The user's vector (``[p, b]`` when ``biased``, else ``p``) refitted to ``targets``.

    ``item_factors`` are the rows ``q_j`` of the newly rated movies; ``targets`` their
    ratings minus what the model explains without the user (``μ + b_j`` when ``biased``, 0
    otherwise); ``prior`` the user's trained vector in the same layout (zeros for a new user).
    """
    a = np.asarray(item_factors, dtype=np.float64)
    if biased:
        a = np.hstack([a, np.ones((a.shape[0], 1))])
    x0 = np.asarray(prior, dtype=np.float64)
    if a.shape[0] == 0:
        return x0
    gram = a.T @ a
    gram[np.diag_indices_from(gram)] += reg
    return np.linalg.solve(gram, a.T @ np.asarray(targets, dtype=np.float64) + reg * x0)
