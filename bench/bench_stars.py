"""The predicted stars users see: their RMSE on the hold-out ``movierec model evaluate`` ranks
on (each user's latest 20 %, ``time_split`` with seed 0), through the served path
(``FactorModel.predict_many``, what ``/predictions`` answers), and what folding in new
ratings is worth.

Run: ``.venv/bin/python bench/bench_stars.py [--movielens DIR] [--hidden 0.2]``

1. *Trained users*: SVD (surprise's defaults, what ``model train --algo svd`` fits) on every
   user's earlier 80 %; each user's context is those ratings, so nothing is folded in and the
   served stars are the model's own: their RMSE is the model's.
2. *Ratings since training*: the model fitted on each user's oldest 60 %, the next 20 % made
   since (in the context, folded in) or not, the same latest 20 % predicted.
3. *New users, folded in*: the same, with ``--hidden`` of the users left out of training
   altogether; at request time their earlier 80 % is folded in from a zero prior (what a
   user who signed up after the last training gets), for several λ. Beside it: the same users'
   RMSE when they were trained on (the ceiling), and with nothing folded in (μ + b_i, what a
   model without fold-in shows them).
Prints a markdown table. No database needed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from movierec.ai import FactorModel, TrainParams, fit_svd, model_arrays, ratings_from_arrays
from movierec.ai.dataset import RatingsData, read_movielens
from movierec.ai.evaluation import per_user_split, rmse
from movierec.ai.rating_fold_in import FOLD_IN_REG
from movierec.ai.train import time_split

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared/data/movielens/ml-100k"
REGS = (0.5, 2.0, 5.0, 10.0, 20.0)


def served_model(data: RatingsData, rows: np.ndarray) -> FactorModel:
    """A FactorModel as ``model train`` writes it, fitted on ``rows`` of ``data`` only."""
    part = ratings_from_arrays(
        data.user_ids[data.user_index[rows]],
        data.movie_ids[data.item_index[rows]],
        data.ratings[rows],
    )
    factors = fit_svd(part, TrainParams(test_size=0))
    return FactorModel(model_arrays(factors, part), {"version": "bench"})


def served_rmse(
    model: FactorModel, data: RatingsData, context_rows: np.ndarray, test_rows: np.ndarray,
    users: set[int] | None = None, fold: bool = True,
) -> tuple[float, int, int]:  # fmt: skip
    """RMSE of the stars ``/predictions`` would answer for ``test_rows`` (of ``users``), each
    user's context being their ``context_rows``; with the number predicted and asked."""
    context: dict[int, list[tuple[int, float]]] = {}
    for r in context_rows.tolist():
        user = int(data.user_ids[data.user_index[r]])
        context.setdefault(user, []).append(
            (int(data.movie_ids[data.item_index[r]]), float(data.ratings[r]))
        )
    wanted: dict[int, dict[int, float]] = {}
    for r in test_rows.tolist():
        user = int(data.user_ids[data.user_index[r]])
        if users is None or user in users:
            wanted.setdefault(user, {})[int(data.movie_ids[data.item_index[r]])] = float(
                data.ratings[r]
            )
    predicted, actual = [], []
    for user, truth in wanted.items():
        found = model.predict_many(user, list(truth), context.get(user, []) if fold else [])
        for movie, stars in found.items():
            predicted.append(stars)
            actual.append(truth[movie])
    asked = sum(len(t) for t in wanted.values())
    return rmse(np.array(predicted), np.array(actual)), len(predicted), asked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--movielens", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--hidden", type=float, default=0.2, help="share of users left out")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = read_movielens(args.movielens)
    train_rows, test_rows = time_split(data, 0.2, args.seed)
    rows = []

    clock = time.perf_counter()
    model = served_model(data, train_rows)
    fit = time.perf_counter() - clock
    value, n, asked = served_rmse(model, data, train_rows, test_rows)
    rows.append(("trained users, served path", "-", value, n, asked))

    # Ratings made since training: the model knows each user's oldest 75 % of the 80 %.
    older, newer = per_user_split(
        data.user_index[train_rows], 0.25, args.seed, data.timestamps[train_rows]
    )
    stale = served_model(data, train_rows[older])
    value, n, asked = served_rmse(stale, data, train_rows[older], test_rows)
    rows.append(("trained on 60 %, 20 % rated since not folded in", "-", value, n, asked))
    value, n, asked = served_rmse(stale, data, train_rows, test_rows)
    rows.append(("trained on 60 %, 20 % rated since folded in (served)", FOLD_IN_REG, value, n,
                 asked))  # fmt: skip

    rng = np.random.default_rng(args.seed)
    all_users = np.unique(data.user_ids)
    hidden = set(rng.choice(all_users, int(len(all_users) * args.hidden), replace=False).tolist())
    is_hidden = np.isin(data.user_ids[data.user_index], list(hidden))
    seen_rows = train_rows[~is_hidden[train_rows]]
    partial = served_model(data, seen_rows)
    value, n, asked = served_rmse(model, data, train_rows, test_rows, hidden)
    rows.append(("hidden users, had they been trained on", "-", value, n, asked))
    value, n, asked = served_rmse(partial, data, train_rows, test_rows, hidden, fold=False)
    rows.append(("hidden users, nothing folded in (μ + b_i)", "-", value, n, asked))
    for reg in REGS:
        partial.fold_in_reg = reg
        value, n, asked = served_rmse(partial, data, train_rows, test_rows, hidden)
        mark = " (served)" if reg == FOLD_IN_REG else ""
        rows.append((f"hidden users, folded in{mark}", reg, value, n, asked))

    print(
        f"{args.movielens.name}: {data.n_ratings:,} ratings; hold-out: each user's latest 20 % "
        f"(seed {args.seed}); SVD (surprise defaults) fit in {fit:.1f} s; hidden users: "
        f"{len(hidden)} of {len(all_users)}\n"
    )
    print("| users | λ | RMSE | predicted / asked |")
    print("|---|---:|---:|---:|")
    for label, reg, value, n, asked in rows:
        print(f"| {label} | {reg} | {value:.4f} | {n:,} / {asked:,} |")


if __name__ == "__main__":
    main()
