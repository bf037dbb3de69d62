"""Cross-check against a peer library: Cornac's top-N models on our splits, scored by our metric.

Run: ``.venv/bin/python bench/bench_peer.py [--movielens DIR]`` (Cornac is in the ``bench``
extra: ``.venv/bin/pip install -e '.[bench]'``).

The same protocols as ``bench_large_catalogue.py``: ml-100k with the issue's random 75/25 per
user (mean of seeds 0, 1, 2) and ml-latest-small with each user's latest 20 % held out. Each
Cornac model is fitted on exactly our training rows (every rating as an implicit 1), scores
every movie it knows for every test user through its own ``score``, and those scores go
through our ``top_n_metrics`` (movies rated in training removed, relevance = any held-out
rating): only the model differs. ``--only check`` prints our NDCG@10 and Cornac's own
(``ranking_eval``) for its best model on ml-100k, to check that the two metric codes agree. Ours
(``easeals`` and the forced large path ``sansaals``) are in the first rows.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cornac
import numpy as np
from cornac.eval_methods import ranking_eval
from cornac.metrics import NDCG

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_algorithms import DEFAULT_DIR  # noqa: E402

from movierec.ai.algorithms import get_algorithm  # noqa: E402
from movierec.ai.dataset import RatingsData, read_movielens, user_item_matrix  # noqa: E402
from movierec.ai.evaluation import TopN, per_user_split, top_n_metrics  # noqa: E402
from movierec.ai.train import resolve_algo, score_top_n, time_split  # noqa: E402

PEERS = {
    "Cornac MostPop": lambda: cornac.models.MostPop(),
    "Cornac BPR (64 factors, 200 epochs)": lambda: cornac.models.BPR(
        k=64, max_iter=200, learning_rate=0.01, lambda_reg=0.01, seed=0, verbose=False
    ),
    "Cornac EASE (λ 300)": lambda: cornac.models.EASE(lamb=300, posB=False, verbose=False),
    "Cornac EASE (λ 500)": lambda: cornac.models.EASE(lamb=500, posB=False, verbose=False),
    "Cornac SANSA (λ 300, density 5 %)": lambda: cornac.models.SANSA(
        l2=300, weight_matrix_density=0.05, factorizer_class="CHOLMOD", verbose=False, seed=0
    ),
}  # fmt: skip
CHECKED = "Cornac EASE (λ 500)"  # the best peer on ml-100k: both metric codes over its scores


def triples(data: RatingsData, rows: np.ndarray) -> list[tuple[str, str, float]]:
    """``rows`` as Cornac's (user, item, 1.0) triples, our dense indices as raw ids."""
    users, items = data.user_index[rows].tolist(), data.item_index[rows].tolist()
    return [(str(u), str(i), 1.0) for u, i in zip(users, items, strict=True)]


def cornac_train_set(data: RatingsData, train: np.ndarray) -> cornac.data.Dataset:
    return cornac.data.Dataset.from_uir(triples(data, train), seed=0)


def peer_top_n(model, data: RatingsData, train: np.ndarray, test: np.ndarray) -> TopN:
    """Our metric over the peer's scores (movies it never saw in training score -inf)."""
    train_set = cornac_train_set(data, train)
    model.fit(train_set)
    item_pos = np.full(data.n_items, -1)
    for raw, idx in train_set.iid_map.items():
        item_pos[int(raw)] = idx
    known = item_pos >= 0

    def scores_for(users: np.ndarray) -> np.ndarray:
        out = np.full((users.size, data.n_items), -np.inf)
        for row, user in enumerate(users.tolist()):
            idx = train_set.uid_map.get(str(user))
            if idx is not None:
                scores = np.asarray(model.score(idx), dtype=np.float64).ravel()
                out[row, known] = scores[item_pos[known]]
        return out

    seen = user_item_matrix(data, train, "rating")
    return top_n_metrics(scores_for, seen, user_item_matrix(data, test, "binary"), 10)


def cornac_own_ndcg(model, data: RatingsData, train: np.ndarray, test: np.ndarray) -> float:
    """Cornac's ``ranking_eval`` NDCG@10 on the same split (its own metric code)."""
    train_set = cornac_train_set(data, train)
    test_set = cornac.data.Dataset.build(
        triples(data, test), global_uid_map=dict(train_set.uid_map),
        global_iid_map=dict(train_set.iid_map), exclude_unknowns=True,
    )  # fmt: skip
    model.fit(train_set)
    found = ranking_eval(model, [NDCG(k=10)], train_set, test_set, rating_threshold=0.5)
    return float(found[0][0])


def ours(data: RatingsData, large: int, train, test, seed) -> TopN:
    algorithm = get_algorithm(resolve_algo("auto", data.n_items, 1 if large else None))
    fitted = algorithm.fit(data, train, algorithm.resolve({}), seed)
    return score_top_n(fitted, data, train, test, 10)


def run(label: str, data: RatingsData, splits) -> dict[str, list[float]]:
    print(f"\n### {label}\n\n| model | NDCG@10 | per split | P@10 | fit + score s |")
    print("|---|---:|---|---:|---:|")
    found: dict[str, list[float]] = {}
    rows = [
        ("movierec `easeals` (`auto` up to 20k)", lambda s, tr, te: ours(data, 0, tr, te, s)),
        ("movierec `sansaals` (`auto` above 20k)", lambda s, tr, te: ours(data, 1, tr, te, s)),
    ]
    for name, make in PEERS.items():
        rows.append((name, lambda s, tr, te, make=make: peer_top_n(make(), data, tr, te)))
    for name, measure in rows:
        results, clock = [], time.perf_counter()
        for seed, (train, test) in splits:
            results.append(measure(seed, train, test))
        seconds = (time.perf_counter() - clock) / len(splits)
        ndcgs = [r.ndcg for r in results]
        found[name] = ndcgs
        print(
            f"| {name} | {statistics.mean(ndcgs):.4f} | {' / '.join(f'{x:.4f}' for x in ndcgs)} "
            f"| {statistics.mean(r.precision for r in results):.4f} | {seconds:.1f} |",
            flush=True,
        )
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--movielens", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--only", choices=("tables", "check"))
    args = parser.parse_args()
    print(f"cornac {cornac.__version__}")
    ml100k = read_movielens(args.movielens / "ml-100k")
    random_splits = [(s, per_user_split(ml100k.user_index, 0.25, s)) for s in range(3)]
    if args.only in (None, "tables"):
        small = read_movielens(args.movielens / "ml-latest-small")
        run("ml-100k, random 75/25 per user, seeds 0-2", ml100k, random_splits)
        run("ml-latest-small, latest 20 % per user", small, [(0, time_split(small, 0.2, 0))])
    if args.only in (None, "check"):
        train, test = random_splits[0][1]
        ours_metric = peer_top_n(PEERS[CHECKED](), ml100k, train, test).ndcg
        theirs = cornac_own_ndcg(PEERS[CHECKED](), ml100k, train, test)
        print(f"\nMetric check, ml-100k seed 0, {CHECKED}: our NDCG@10 {ours_metric:.4f}, "
              f"Cornac's ranking_eval {theirs:.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
