"""Collective EASE's side rows, movie metadata for them, and the EASE + ALS blend end to end."""

import numpy as np
import pytest
import scipy.sparse as sp

from movierec.ai.algorithms import choose_ranking_algo, get_algorithm
from movierec.ai.algorithms.blend import FittedEaseAls
from movierec.ai.algorithms.ease import PLAIN_EASE, collective_gram, side_rows
from movierec.ai.base import Signals
from movierec.ai.dataset import ratings_from_arrays, read_movie_info, read_movielens
from movierec.ai.loader import load_model
from movierec.ai.shard import Shard
from movierec.ai.train import train_on_data
from movierec.errors import BadInput

MOVIES = [10, 20, 30, 40, 50]
ALL_ON = {
    "session_weight": 1.0, "session_gap": 60, "liked_weight": 0.7, "liked_stars": 4.0,
    "genre_weight": 4.0, "decade_weight": 4.0, "window_weight": 0.3, "window": 2,
}  # fmt: skip


def tiny():
    """User 1: 10 (5★, t 0), 20 (4★, t 30), 30 (2★, t 100: 70 s later, a new session),
    40 (5★, t 130); user 2: 20 (3★, t 1000), 50 (4★, t 5000). Genre A: 10, 30; genre B: 20.
    Years: 1995, 1915 (before the first decade), unknown, 2005 (after the last), 1991."""
    data = ratings_from_arrays(
        [1, 1, 1, 1, 2, 2], [30, 10, 40, 20, 50, 20], [2.0, 5.0, 5.0, 4.0, 4.0, 3.0],
        [100, 0, 130, 30, 5000, 1000],
    )  # fmt: skip
    genres = np.array([[1, 0], [0, 1], [1, 0], [0, 0], [0, 0]], dtype=bool)
    return data.with_movie_info(np.array(["A", "B"]), genres, np.array([1995, 1915, 0, 2005, 1991]))


def row_sets(matrix: sp.csr_matrix) -> list[list[int]]:
    """Each row's movie ids (the tiny data's dense index i is movie MOVIES[i])."""
    return [[MOVIES[j] for j in sorted(matrix[r].indices.tolist())] for r in range(matrix.shape[0])]


def test_side_rows_are_sessions_liked_genres_decades_and_windows():
    data = tiny()
    rows = side_rows(data, None, ALL_ON)
    assert row_sets(rows["sessions"]) == [[10, 20], [30, 40]]  # user 2's runs are single
    assert row_sets(rows["liked"]) == [[10, 20, 40], [50]]
    assert row_sets(rows["genres"]) == [[10, 30], [20]]
    decades = row_sets(rows["decades"])  # clip((year - 1920) // 10, 0, 8); no year, no row
    assert decades[0] == [20] and decades[7] == [10, 50] and decades[8] == [40]
    assert sum(map(len, decades)) == 4
    assert row_sets(rows["windows"]) == [[10, 20], [20, 30], [30, 40], [40], [20, 50], [50]]
    assert all(set(m.data.tolist()) == {1.0} for m in rows.values())
    # A 200 s gap joins user 1's ratings into one session; a 3-movie window spans three.
    wider = side_rows(data, None, {**ALL_ON, "session_gap": 200, "window": 3})
    assert row_sets(wider["sessions"]) == [[10, 20, 30, 40]]
    assert row_sets(wider["windows"])[:2] == [[10, 20, 30], [20, 30, 40]]


def test_side_rows_follow_the_training_rows_and_switch_off():
    data = tiny()
    train = np.flatnonzero(data.timestamps != 30)  # user 1 without movie 20
    rows = side_rows(data, train, ALL_ON)
    assert row_sets(rows["sessions"]) == [[30, 40]]
    assert row_sets(rows["liked"]) == [[10, 40], [50]]
    off = dict.fromkeys(("session_weight", "liked_weight", "genre_weight"), 0.0)
    assert set(side_rows(data, None, {**ALL_ON, **off})) == {"decades", "windows"}
    bare = ratings_from_arrays([1, 1], [10, 20], [5.0, 4.0])  # no timestamps, no metadata
    assert set(side_rows(bare, None, ALL_ON)) == {"liked"}


def test_gram_is_the_weighted_stack_and_zero_weights_give_plain_ease():
    data = tiny()
    rows = side_rows(data, None, ALL_ON)
    weights = {"sessions": 1.0, "liked": 0.7, "genres": 4.0, "decades": 4.0, "windows": 0.3}
    x = sp.csr_matrix((np.ones(data.n_ratings), (data.user_index, data.item_index)))
    stacked = sp.vstack([x, *(weights[name] * block for name, block in rows.items())])
    expected = (stacked.T @ stacked).toarray()
    assert collective_gram(data, None, ALL_ON) == pytest.approx(expected)
    ease = get_algorithm("ease")
    plain = ease.fit(data, None, ease.resolve({**PLAIN_EASE, "lam": 2.0}), 0).weights
    gram = (x.T @ x).toarray() + 2.0 * np.eye(data.n_items)
    inverse = np.linalg.inv(gram)
    reference = inverse / -np.diag(inverse)
    np.fill_diagonal(reference, 0.0)
    assert plain == pytest.approx(reference.astype(np.float32), abs=1e-6)


def test_ease_params_default_to_the_recipe_and_are_checked():
    params = get_algorithm("ease").resolve({})
    assert (params["lam"], params["rating_weight"], params["window"]) == (1000.0, 0.0, 8)
    assert get_algorithm("easeals").resolve({})["factors"] == 64
    with pytest.raises(BadInput, match="window_weight"):
        get_algorithm("ease").resolve({"window_weight": "-1"})
    assert choose_ranking_algo(1000) == "easeals" and choose_ranking_algo(10**6) == "als"


def test_movielens_files_bring_genres_and_years(tmp_path):
    old = tmp_path / "ml-100k"
    old.mkdir()
    (old / "u.data").write_text("1\t1\t5\t100\n1\t2\t3\t160\n2\t2\t4\t900\n")
    (old / "u.genre").write_text("unknown|0\nAction|1\nComedy|2\n\n")
    (old / "u.item").write_text(
        "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|1\n2|Odd (????)|||http://y|1|1|0\n",
        encoding="latin-1",
    )
    data = read_movielens(old)
    assert data.genre_names.tolist() == ["unknown", "Action", "Comedy"]
    assert data.item_genres.tolist() == [[False, False, True], [True, True, False]]
    assert data.item_years.tolist() == [1995, 0]
    new = tmp_path / "small"
    new.mkdir()
    (new / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,5,4.0,10\n2,7,3.5,20\n")
    (new / "movies.csv").write_text(
        'movieId,title,genres\n5,"Heat, the (1995)",Action|Crime\n7,Nope,(no genres listed)\n'
    )
    data = read_movielens(new)
    assert data.genre_names.tolist() == ["Action", "Crime"]
    assert data.item_genres.tolist() == [[True, True], [False, False]]
    assert data.item_years.tolist() == [1995, 0]
    (new / "movies.csv").unlink()
    assert read_movielens(new).item_genres is None  # no movie file: no metadata, no error


def test_movie_years_come_from_the_movies_table(loaded, database, execute):
    execute("INSERT INTO movies (id, title, year, genres) VALUES (3, 'Heat', 1995, '{Crime}')")
    movie_ids = np.array([3, loaded.movie_ids[0], 999_999], dtype=np.int64)
    names, genres, years = read_movie_info(database, movie_ids)
    assert years[0] == 1995 and years[2] == 0 and names[genres[0]].tolist() == ["Crime"]


# --- the blend ------------------------------------------------------------------------------

COMEDY, HORROR = list(range(100, 130)), list(range(200, 230))
FAST = {"lam": 20.0, "factors": 8, "iterations": 8, "reg": 0.5, "alpha": 8.0}


@pytest.fixture(scope="module")
def groups():
    """Two taste groups of 40 users, rating in sessions; genres and years known."""
    rng = np.random.default_rng(1)
    users, movies, stars, stamps = [], [], [], []
    for u in range(80):
        own, other = (COMEDY, HORROR) if u < 40 else (HORROR, COMEDY)
        clock = int(rng.integers(0, 10**6))
        for m in rng.permutation(own + other).tolist():
            if rng.random() < (0.5 if m in own else 0.05):
                clock += int(rng.choice([5, 5, 5, 3600]))
                users.append(1000 + u)
                movies.append(m)
                stars.append(float(rng.choice([4.0, 5.0])) if m in own else 2.0)
                stamps.append(clock)
    data = ratings_from_arrays(users, movies, stars, stamps)
    genres = np.array([[m in COMEDY, m in HORROR] for m in data.movie_ids.tolist()])
    years = np.where(data.movie_ids % 2 == 0, 1995, 1975)
    return data.with_movie_info(np.array(["Comedy", "Horror"]), genres, years)


@pytest.fixture(scope="module")
def blend(groups, tmp_path_factory):
    data = groups
    model_dir = tmp_path_factory.mktemp("blend")
    report = train_on_data(
        data, model_dir, "easeals", FAST, test_size=0.2,
        genre_names=data.genre_names, movie_genres=data.item_genres,
    )  # fmt: skip
    return data, model_dir, report


def test_the_report_carries_the_popularity_baseline_on_the_same_hold_out(blend):
    """The yardstick the demo prints beside the model's NDCG@10 (issue 21)."""
    _, _, report = blend
    baseline = report.baseline_top_n
    assert baseline is not None and baseline.n_users == report.top_n.n_users
    assert 0 < baseline.ndcg < report.top_n.ndcg
    assert report.artifact.meta["baseline_top_n"]["ndcg"] == pytest.approx(baseline.ndcg)


def test_the_blend_trains_and_its_artifact_round_trips(blend):
    data, model_dir, report = blend
    meta = report.artifact.meta
    assert (meta["algorithm"], meta["form"]) == ("easeals", "easeals")
    assert meta["ease_scale"] > 0 and meta["als_scale"] > 0 and report.top_n.ndcg > 0.3
    model = load_model(model_dir)
    assert model.form == "easeals" and model.version == report.artifact.version
    algorithm = get_algorithm("easeals")
    fitted = algorithm.fit(data, None, algorithm.resolve(FAST), 0)
    assert isinstance(fitted, FittedEaseAls)
    assert fitted.ease_scale == pytest.approx(meta["ease_scale"])
    seen = sp.csr_matrix(
        (data.ratings, (data.user_index, data.item_index)), shape=(data.n_users, data.n_items)
    )
    for user in (0, 7, 55):
        scores = fitted.score_users(np.array([user]), seen)[0]
        scores[seen[user].indices] = -np.inf
        top = np.argsort(-scores, kind="stable")[:8]
        served = model.recommend(int(data.user_ids[user]), k=8)
        assert served.movie_ids == data.movie_ids[top].tolist()
        assert [s for _, s in served.items] == pytest.approx(scores[top].tolist(), rel=1e-4)


def test_the_blend_folds_in_new_users_explains_and_finds_similar_movies(blend):
    _, model_dir, _ = blend
    model = load_model(model_dir)
    liked = model.recommend(777, k=5, signals=Signals(liked=(COMEDY[0], COMEDY[1])))
    assert liked.fallback is False and sum(m in COMEDY for m in liked.movie_ids) >= 4
    assert set(liked.because) <= {COMEDY[0], COMEDY[1]} and None not in liked.because
    rated = Signals(ratings=((HORROR[0], 5.0), (HORROR[1], 4.5)), complete=True)
    fresh = model.recommend(777, k=5, signals=rated)
    assert sum(m in HORROR for m in fresh.movie_ids) >= 4
    assert not {HORROR[0], HORROR[1]} & set(fresh.movie_ids)
    assert model.recommend(424242, k=3).fallback is True
    assert model.similar(COMEDY[0], k=3).movie_ids[0] in COMEDY


def test_blend_shards_merge_into_the_unsharded_top_k(blend):
    data, model_dir, _ = blend
    full = load_model(model_dir)
    fixed = [load_model(model_dir, shard=Shard(i, 3)) for i in range(3)]
    rated = Signals(ratings=((COMEDY[3], 5.0), (HORROR[2], 3.0)), complete=True)
    for user, signals in ((1000, None), (1050, None), (777, rated)):
        whole = full.recommend(user, k=12, signals=signals)
        parts = [fixed[i].recommend(user, k=12, signals=signals) for i in range(3)]
        for i, part in enumerate(parts):
            assert all(m % 3 == i for m in part.movie_ids)
            asked = full.recommend(user, k=12, signals=signals, shard=Shard(i, 3))
            assert [m for m, _ in asked.items] == part.movie_ids
            assert [s for _, s in asked.items] == pytest.approx([s for _, s in part.items])
        pairs = sorted((p for part in parts for p in part.items), key=lambda p: (-p[1], p[0]))
        assert [m for m, _ in pairs[:12]] == whole.movie_ids
