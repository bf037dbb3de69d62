"""A first visit that learns taste fast (issue 21, item 2): how good is a new user's "for
you" list after the onboarding's N ratings, against N random ratings of theirs?

Run: ``.venv/bin/python bench/bench_onboarding.py [--movielens DIR] [--users 200] [--seed 0]``

The simulated cold-start protocol (after Rashid et al., IUI 2002), on ml-100k:

1. ``--users`` users with at least 40 ratings are made new: all their ratings are taken out
   and the ranking model the site serves at this size (``auto``: the collective EASE + iALS
   blend) is trained on everybody else's.
2. Each new user picks favourite genres: the 3 genres most frequent among the movies they
   rated 4 or more (what a person who likes those movies would tick).
3. Each new user's ratings are split at random, half and half, into what they can answer
   (the pool) and what they are measured on (the test half): every strategy draws from the
   same pool and is scored on the same test half, so that no strategy is judged on a test
   set another strategy emptied of its easy (popular) movies.
   They are shown movies and rate those in their pool (they skip the others), until they
   have given N ratings:
   * ``onboarding``: the site's order (:func:`movierec.db.onboarding.informative_order`:
     log popularity × spread of ratings, the picked genres taking turns);
   * ``top sellers``: the most-rated movies of the picked genres, in that order;
   * ``random``: N ratings drawn at random from their pool (no skipping: every movie shown
     is one they know, which a random page of the catalogue would not be).
4. Their "for you" list is the served model's fold-in of those N ratings and the genres
   (``Recommender.recommend(signals=...)``, as the site asks it), and it is scored against
   all their other ratings: NDCG@10 with binary relevance (any held-out rating), as
   ``model evaluate`` does. "genres only" is the list with no rating at all.

Prints a markdown table: NDCG@10 and hit rate@10 per strategy and N, and how many movies
the onboarding showed to collect N ratings. No database needed.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from movierec.ai import load_model
from movierec.ai.base import Signals
from movierec.ai.dataset import read_movielens
from movierec.ai.train import train_on_data
from movierec.db.onboarding import MIN_RATINGS, Candidate, informative_order

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "movielens"
NS = (5, 12, 20)
K = 10
PICKED_GENRES = 3
MAX_SHOWN = 300  # a patient user: stop asking after this many movies


def ndcg(ranked: list[int], relevant: set[int], k: int = K) -> float:
    gains = [1.0 / np.log2(i + 2) for i, m in enumerate(ranked[:k]) if m in relevant]
    ideal = sum(1.0 / np.log2(i + 2) for i in range(min(k, len(relevant))))
    return float(sum(gains) / ideal) if ideal else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--movielens", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = read_movielens(args.movielens / "ml-100k")
    rng = np.random.default_rng(args.seed)
    counts = np.bincount(data.user_index, minlength=data.n_users)
    eligible = np.flatnonzero(counts >= 40)
    cold = np.sort(rng.choice(eligible, size=min(args.users, eligible.size), replace=False))
    is_cold = np.isin(data.user_index, cold)
    rows = np.flatnonzero(~is_cold)
    train = _subset(data, rows)
    genre_names = [str(g) for g in data.genre_names]
    movie_genres = {
        int(data.movie_ids[i]): tuple(genre_names[j] for j in np.flatnonzero(data.item_genres[i]))
        for i in range(data.n_items)
    }
    candidates = _candidates(train, movie_genres)
    clock = time.perf_counter()
    with tempfile.TemporaryDirectory() as model_dir:
        report = train_on_data(
            train, model_dir, "easeals", test_size=0, seed=args.seed,
            genre_names=train.genre_names, movie_genres=train.item_genres,
        )  # fmt: skip
        model = load_model(model_dir)
        fit_seconds = time.perf_counter() - clock
        results = _simulate(data, cold, model, candidates, movie_genres, rng)
    print(
        f"ml-100k, {cold.size} new users (of {eligible.size} with 40+ ratings), model "
        f"{report.algo} trained on the other {rows.size:,} ratings in {fit_seconds:.0f} s; "
        f"seed {args.seed}\n"
    )
    print("| strategy | N | NDCG@10 (liked) | hit rate@10 (liked) | NDCG@10 (any) "
          "| movies shown (median) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|")
    for (strategy, n), values in results.items():
        liked, hits, any_rated, shown = zip(*values, strict=True)
        print(
            f"| {strategy} | {n} | {statistics.mean(liked):.4f} | {statistics.mean(hits):.3f} "
            f"| {statistics.mean(any_rated):.4f} | {statistics.median(shown):.0f} |"
        )
    sys.stdout.flush()


def _subset(data, rows):
    """``data`` restricted to ``rows``, keeping every movie (and its metadata) and user id."""
    return dataclasses.replace(
        data,
        user_index=data.user_index[rows],
        item_index=data.item_index[rows],
        ratings=data.ratings[rows],
        timestamps=None if data.timestamps is None else data.timestamps[rows],
    )


def _candidates(train, movie_genres) -> list[Candidate]:
    """What :func:`movierec.db.onboarding.candidate_stats` reads from the database, from the
    training ratings."""
    n = np.bincount(train.item_index, minlength=train.n_items)
    total = np.bincount(train.item_index, train.ratings, minlength=train.n_items)
    squares = np.bincount(train.item_index, train.ratings.astype(np.float64) ** 2, train.n_items)
    mean = total / np.maximum(n, 1)
    spread = np.sqrt(np.maximum(squares / np.maximum(n, 1) - mean**2, 0))
    return [
        Candidate(int(train.movie_ids[i]), movie_genres[int(train.movie_ids[i])], int(n[i]),
                  float(spread[i]))
        for i in np.argsort(-n, kind="stable")[:1000] if n[i] >= MIN_RATINGS
    ]  # fmt: skip


def _simulate(data, cold, model, candidates, movie_genres, rng) -> dict:
    results: dict[tuple[str, int], list[tuple[float, float, int]]] = {}
    by_pop = sorted(candidates, key=lambda c: (-c.ratings, c.movie_id))
    for u in cold:
        mine = np.flatnonzero(data.user_index == u)
        user_id = int(data.user_ids[u])
        rated = {int(data.movie_ids[data.item_index[r]]): float(data.ratings[r]) for r in mine}
        ids = sorted(rated)
        in_pool = rng.permutation(len(ids)) < len(ids) // 2
        theirs = {m: rated[m] for m, p in zip(ids, in_pool, strict=True) if p}  # the pool
        test = {m: rated[m] for m, p in zip(ids, in_pool, strict=True) if not p}
        liked = [m for m, r in theirs.items() if r >= 4] or list(theirs)
        tally: dict[str, int] = {}
        for m in liked:
            for g in movie_genres[m]:
                tally[g] = tally.get(g, 0) + 1
        genres = sorted(tally, key=lambda g: (-tally[g], g))[:PICKED_GENRES]
        orders = {
            "onboarding": informative_order(candidates, genres),
            "top sellers": [c.movie_id for c in by_pop if set(c.genres) & set(genres)],
        }

        def record(name, n, given, shown, user_id=user_id, genres=genres, test=test):
            results.setdefault((name, n), []).append(
                _score(model, user_id, given, genres, test, shown)
            )

        record("genres only", 0, {}, 0)
        for n in NS:
            for name, order in orders.items():
                given, shown = {}, 0
                for m in order[:MAX_SHOWN]:
                    shown += 1
                    if m in theirs:
                        given[m] = theirs[m]
                        if len(given) == n:
                            break
                record(name, n, given, shown)
            drawn = rng.choice(list(theirs), size=min(n, len(theirs)), replace=False)
            record("random", n, {int(m): theirs[int(m)] for m in drawn}, n)
    return dict(sorted(results.items(), key=lambda item: (item[0][1], item[0][0])))


def _score(model, user_id, given, genres, test, shown) -> tuple[float, float, float, int]:
    signals = Signals(ratings=tuple(given.items()), genres=tuple(genres), complete=True)
    found = model.recommend(user_id, K, exclude=list(given), genres=genres, signals=signals)
    ranked = found.movie_ids
    liked = {m for m, r in test.items() if r >= 4}
    hit = float(bool(set(ranked[:K]) & liked))
    return ndcg(ranked, liked), hit, ndcg(ranked, set(test)), shown


if __name__ == "__main__":
    main()
