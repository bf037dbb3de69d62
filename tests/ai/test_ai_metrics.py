"""Top-N metrics against values computed by hand, per-user splits, parameter parsing."""

import numpy as np
import pytest
import scipy.sparse as sp

from movierec.ai.algorithms import get_algorithm
from movierec.ai.evaluation import MIN_USERS, SCORE_BYTES, per_user_split, top_n_metrics
from movierec.errors import BadInput


def test_top_n_metrics_match_a_hand_computed_example():
    # 2 users, 5 movies. User 0 saw movie 0; held out: movies 1 and 3.
    # User 1 saw movie 4; held out: movie 2. Scores rank (best first):
    #   user 0: 1, 2, 3 (movie 0 is seen and skipped) -> hits at ranks 1 and 3
    #   user 1: 0, 2, 1                               -> hit at rank 2
    seen = sp.csr_matrix(np.array([[1, 0, 0, 0, 0], [0, 0, 0, 0, 1]], dtype=np.float32))
    held = sp.csr_matrix(np.array([[0, 1, 0, 1, 0], [0, 0, 1, 0, 0]], dtype=np.float32))
    scores = np.array([[9, 8, 7, 6, 0], [5, 3, 4, 0, 9]], dtype=np.float64)
    m = top_n_metrics(lambda users: scores[users], seen, held, k=3)
    d2, d3 = 1 / np.log2(3), 1 / np.log2(4)
    ndcg0 = (1 + d3) / (1 + d2)
    ndcg1 = d2 / 1
    assert m.n_users == 2 and m.k == 3
    assert m.precision == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert m.recall == pytest.approx((2 / 2 + 1 / 1) / 2)
    assert m.ndcg == pytest.approx((ndcg0 + ndcg1) / 2)
    assert m.map == pytest.approx(((1 + 2 / 3) / 2 + (1 / 2) / 1) / 2)
    assert m.coverage == pytest.approx(4 / 5)  # movies 0, 1, 2, 3 were listed
    # novelty: -log2((raters + 1) / (users + 1)); movie 0 has 1 rater, the others none.
    info = {0: -np.log2(2 / 3), 1: -np.log2(1 / 3), 2: -np.log2(1 / 3), 3: -np.log2(1 / 3)}
    listed = [1, 2, 3, 0, 2, 1]
    assert m.novelty == pytest.approx(np.mean([info[i] for i in listed]))


def test_users_without_held_out_ratings_are_not_counted_and_none_is_an_error():
    seen = sp.csr_matrix(np.eye(2, dtype=np.float32))
    held = sp.csr_matrix(np.array([[0, 1], [0, 0]], dtype=np.float32))
    m = top_n_metrics(lambda users: np.ones((users.size, 2)), seen, held, k=1)
    assert m.n_users == 1 and m.ndcg == 1.0
    with pytest.raises(BadInput, match="no user"):
        top_n_metrics(lambda users: np.ones((users.size, 2)), seen, held * 0, k=1)


def test_a_large_hold_out_is_scored_on_a_sample_in_batches_of_bounded_memory():
    """At a million users and movies, scoring every user against every movie took longer
    than training (10^12 scores) and 4 GB per batch of 512 users: a seeded sample of users
    is scored, a batch's dense scores held within SCORE_BYTES."""
    n_users, n_items = 3000, 200_000
    seen = sp.csr_matrix((n_users, n_items), dtype=np.float32)
    rows = np.arange(n_users)
    held = sp.csr_matrix((np.ones(n_users), (rows, rows % 7)), shape=(n_users, n_items))
    asked = []

    def scores_for(users):
        asked.append(users.size)
        return np.zeros((users.size, n_items), dtype=np.float32)

    m = top_n_metrics(scores_for, seen, held, k=10, max_users=1000)
    assert m.n_users == sum(asked) == 1000
    assert max(asked) * n_items * 8 <= SCORE_BYTES
    again = top_n_metrics(scores_for, seen, held, k=10, max_users=1000)
    assert again.ndcg == m.ndcg  # the same sample each time


def test_a_large_catalogue_is_scored_on_fewer_users():
    """At a million movies a user's row cost 33-38 ms to score and rank: 10,000 users were 6
    minutes per evaluation. The sample shrinks with the scores it would make, down to
    MIN_USERS."""
    n_users, n_items = 3000, 2_000
    seen = sp.csr_matrix((n_users, n_items), dtype=np.float32)
    rows = np.arange(n_users)
    held = sp.csr_matrix((np.ones(n_users), (rows, rows % 7)), shape=(n_users, n_items))

    def scores_for(users):
        return np.zeros((users.size, n_items), dtype=np.float32)

    bounded = top_n_metrics(scores_for, seen, held, max_scores=800 * n_items)
    assert bounded.n_users == 800
    floor = top_n_metrics(scores_for, seen, held, max_scores=n_items)
    assert floor.n_users == MIN_USERS
    assert top_n_metrics(scores_for, seen, held).n_users == n_users  # 6M scores: all of them


def test_per_user_split_holds_out_each_users_latest_share():
    users = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2])
    stamps = np.array([4, 1, 3, 2, 10, 80, 20, 70, 30, 60, 40, 50, 5])
    train, test = per_user_split(users, 0.25, seed=0, timestamps=stamps)
    assert sorted(stamps[test].tolist()) == [4, 70, 80]  # user 2's single rating stays
    assert np.union1d(train, test).size == users.size and np.intersect1d(train, test).size == 0
    again = per_user_split(users, 0.25, seed=0)

    assert np.bincount(users[again[1]]).tolist() == [1, 2]
    assert np.array_equal(again[1], per_user_split(users, 0.25, seed=0)[1])
    with pytest.raises(BadInput):
        per_user_split(users, 1.5, seed=0)


@pytest.mark.parametrize(
    "algo, given, word",
    [
        ("ease", {"lam": "-1"}, "positive"),
        ("ease", {"lam": "x"}, "malformed"),
        ("svd", {"nope": "1"}, "no parameter nope"),
        ("knnbaseline", {"sim": "euclid"}, "msd"),
        ("nmf", {"biased": "maybe"}, "true/false"),
    ],
)
def test_bad_hyper_parameters_are_bad_input(algo, given, word):
    with pytest.raises(BadInput, match=word):
        get_algorithm(algo).resolve(given)


def test_parameters_are_coerced_from_strings():
    assert get_algorithm("ease").resolve({"lam": "250"})["lam"] == 250.0
    assert get_algorithm("nmf").resolve({"biased": "true"})["biased"] is True
    with pytest.raises(BadInput, match="unknown algorithm"):
        get_algorithm("deep-learning")
