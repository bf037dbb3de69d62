"""Serving at scale: shared memory-mapped models, ANN search, item shards, caches, /metrics."""

import mmap
from pathlib import Path

import numpy as np
import pytest

from movierec.ai.base import Signals
from movierec.ai.dataset import ratings_from_arrays
from movierec.ai.hot_rows import HotRows
from movierec.ai.loader import load_model
from movierec.ai.server import create_app
from movierec.ai.shard import Shard
from movierec.ai.stats import COUNTERS
from movierec.ai.train import train_model, train_on_data
from movierec.config import load_settings
from movierec.errors import BadInput, ConfigError

SHARDS = 3
GENRES = np.array(["Drama", "Horror"])


@pytest.fixture(scope="module")
def catalogue():
    """3,000 movies with a taste structure and skewed popularity; 300 users."""
    rng = np.random.default_rng(3)
    n_users, n_movies = 300, 3000
    taste, profile = rng.normal(0, 1, (n_users, 4)), rng.normal(0, 1, (n_movies, 4))
    seen_prob = np.linspace(0.08, 0.005, n_movies)
    users, movies, stars = [], [], []
    for u in range(n_users):
        seen = np.flatnonzero(rng.random(n_movies) < seen_prob)
        value = 3.3 + 0.6 * profile[seen] @ taste[u] + rng.normal(0, 0.3, seen.size)
        users += [10 + u] * seen.size
        movies += (100 + 7 * seen).tolist()
        stars += np.clip(np.round(value * 2) / 2, 0.5, 5).tolist()
    data = ratings_from_arrays(users, movies, stars)
    genres = rng.random((data.n_items, 2)) < 0.3
    return data, genres


@pytest.fixture(scope="module")
def models(catalogue, tmp_path_factory):
    """SVD, ALS and the SANSA + ALS blend with an ANN index (threshold lowered to 1,000
    movies); EASE and the EASE + ALS blend (no index) on the 600 most rated movies, to keep
    the dense n² fit fast."""
    data, genres = catalogue
    model_dir = tmp_path_factory.mktemp("serving")
    # reg 0.5 for ALS and its blends: the default 50, tuned at MovieLens sizes, shrinks this
    # small catalogue's factors onto one direction (every score tied, nothing to recall).
    params = {
        "svd": {"factors": 8, "epochs": 20}, "als": {"factors": 8, "iterations": 5, "reg": 0.5},
        "sansaals": {"lam": 50, "factors": 8, "iterations": 5, "reg": 0.5},
    }  # fmt: skip
    versions = {
        algo: train_on_data(
            data, model_dir, algo, params[algo], test_size=0,
            genre_names=GENRES, movie_genres=genres, ann_min_items=1000,
        ).artifact.version
        for algo in ("svd", "als", "sansaals")
    }  # fmt: skip
    head = data.item_index < 600
    small = ratings_from_arrays(
        data.user_ids[data.user_index[head]], data.movie_ids[data.item_index[head]],
        data.ratings[head],
    )  # fmt: skip
    versions["ease"] = train_on_data(
        small, model_dir, "ease", {"lam": 50}, test_size=0, genre_names=GENRES,
        movie_genres=genres[:600], ann_min_items=1000,
    ).artifact.version  # fmt: skip
    versions["easeals"] = train_on_data(
        small, model_dir, "easeals", {"lam": 50, "factors": 8, "iterations": 5, "reg": 0.5},
        test_size=0, genre_names=GENRES, movie_genres=genres[:600], ann_min_items=1000,
    ).artifact.version  # fmt: skip
    return model_dir, versions


def rated(data, user):
    return data.movie_ids[data.item_index[data.user_index == user - 10]]


def signals(data, user):
    rows = data.user_index == user - 10
    movies, stars = data.movie_ids[data.item_index[rows]].tolist(), data.ratings[rows].tolist()
    pairs = zip(movies, stars, strict=True)
    return Signals(ratings=tuple(pairs), complete=True)


def ask(model, data, user, k=10, **kw):
    extra = {"signals": signals(data, user)} if model.kind == "ranking" else {}
    return model.recommend(user, k, **extra, **kw)


def is_mapped(array) -> bool:
    while array is not None:
        if isinstance(array, np.memmap | mmap.mmap):
            return True
        array = getattr(array, "base", None)
    return False


@pytest.mark.parametrize("algo", ["svd", "als", "sansaals"])
def test_ann_recall_at_10_against_exact_and_rated_movies_stay_out(algo, models, catalogue):
    data, _ = catalogue
    model_dir, versions = models
    meta = load_model(model_dir, versions[algo]).meta
    assert meta["ann"]["n"] == data.n_items and meta["ann"]["nlist"] > 16
    ann = load_model(model_dir, versions[algo], nprobe=16)
    exact = load_model(model_dir, versions[algo], nprobe=0)
    assert ann.ann is not None and exact.ann is None
    before = COUNTERS.get("movierec_recommender_scored_total", method="ann")
    recalls = []
    for user in range(10, 50):
        found = ask(ann, data, user).movie_ids
        truth = ask(exact, data, user).movie_ids
        recalls.append(len(set(found) & set(truth)) / 10)
        assert len(found) == 10 and not set(found) & set(rated(data, user).tolist())
    assert np.mean(recalls) >= 0.9
    assert COUNTERS.get("movierec_recommender_scored_total", method="ann") == before + 40
    # Excluded movies are filtered inside the index search too.
    first = ask(ann, data, 10).movie_ids
    assert not set(first[:3]) & set(ask(ann, data, 10, exclude=first[:3]).movie_ids)
    similar = ann.similar(int(data.movie_ids[0]), 10).movie_ids
    assert len(set(similar) & set(exact.similar(int(data.movie_ids[0]), 10).movie_ids)) >= 8


def merge(answers, k):
    """What the web side does with the shards' answers: best scores first, then lower ids."""
    pairs = [pair for answer in answers for pair in answer.items]
    return [m for m, _ in sorted(pairs, key=lambda p: (-p[1], p[0]))[:k]]


@pytest.mark.parametrize("algo", ["svd", "als", "ease", "easeals", "sansaals"])
def test_merged_shards_equal_the_unsharded_top_k_per_request_and_fixed(algo, models, catalogue):
    data, _ = catalogue
    model_dir, versions = models
    full = load_model(model_dir, versions[algo])
    fixed = [load_model(model_dir, versions[algo], shard=Shard(i, SHARDS)) for i in range(SHARDS)]
    for user in (10, 11, 99, 424242):  # 424242: unknown, the popularity fallback
        whole = ask(full, data, user, k=12)
        parts = [ask(full, data, user, k=12, shard=Shard(i, SHARDS)) for i in range(SHARDS)]
        for i, part in enumerate(parts):
            assert all(m % SHARDS == i for m in part.movie_ids)
            assert part.items == ask(fixed[i], data, user, k=12).items
        assert merge(parts, 12) == whole.movie_ids
    movie = int(data.movie_ids[5])
    by_shard = [full.similar(movie, 8, shard=Shard(i, SHARDS)) for i in range(SHARDS)]
    assert merge(by_shard, 8) == full.similar(movie, 8).movie_ids
    assert fixed[1].similar(movie, 8).items == by_shard[1].items
    with pytest.raises(BadInput, match="shard 1/3 only"):
        fixed[1].recommend(10, 5, shard=Shard(0, SHARDS))


def test_every_model_array_is_a_shared_mapping_and_a_shard_slice_too(models, catalogue):
    model_dir, versions = models
    loaded = []  # kept alive until the maps are read
    for algo, version in versions.items():
        for shard in (None, Shard(2, SHARDS)):
            model = load_model(model_dir, version, shard=shard)
            loaded.append(model)
            cand = model._cand
            arrays = {
                **{f"{algo}.{k}": v for k, v in vars(model).items() if isinstance(v, np.ndarray)},
                **{f"{algo}.cand.{k}": v for k, v in vars(cand).items() if k != "arrays"},
                **{f"{algo}.cand.{k}": v for k, v in cand.arrays.items()},
            }
            private = [
                name
                for name, array in arrays.items()
                if isinstance(array, np.ndarray) and array.size > 1 and not is_mapped(array)
            ]
            assert not private, f"private copies: {private}"
            if shard is not None:
                assert cand.rows.size < model.movie_ids.size / 2
    maps = Path("/proc/self/maps").read_text().splitlines()
    index_maps = [line.split()[1] for line in maps if line.endswith("ann.faiss")]
    assert index_maps and all(perms.endswith("s") for perms in index_maps)
    slice_dir = model_dir / versions["ease"] / "shards" / "2-of-3"
    assert (slice_dir / "ease_weights.npy").exists()
    assert (model_dir / versions["als"] / "shards" / "2-of-3" / "ann.faiss").exists()
    stamp = (slice_dir / "rows.npy").stat().st_mtime_ns
    load_model(model_dir, versions["ease"], shard=Shard(2, SHARDS))
    assert (slice_dir / "rows.npy").stat().st_mtime_ns == stamp  # written once, then reused


def test_hot_rows_serve_the_most_popular_rows_from_memory():
    matrix = np.arange(40, dtype=np.float32).reshape(10, 4)
    hot = HotRows(matrix, np.array([7, 2, 9, 0]), budget=2 * 16)
    assert hot.ids.tolist() == [2, 7] and hot.nbytes == 32
    before = COUNTERS.get("movierec_recommender_cache_hits_total", cache="hot_rows")
    assert np.array_equal(hot[np.array([7, 3, 2])], matrix[[7, 3, 2]])
    assert COUNTERS.get("movierec_recommender_cache_hits_total", cache="hot_rows") == before + 2


@pytest.mark.parametrize("rows", [[2, 7], [0, 2, 7]], ids=["all hot", "some not hot"])
def test_hot_rows_sum_and_block_read_rows_in_place(rows):
    """What scoring reads without gathering rows equals what gathering gives, to the bit
    (a sharded server must score as the whole model does)."""
    rng = np.random.default_rng(3)
    matrix = rng.random((10, 6), dtype=np.float32)
    hot = HotRows(matrix, np.array([7, 2, 9, 0]), budget=2 * 24)
    idx, weights = np.array(rows), rng.random(len(rows), dtype=np.float32)
    gathered = matrix[idx]
    expected = np.zeros(6, dtype=np.float32)
    for row, weight in zip(gathered, weights, strict=True):
        expected += weight * row  # row after row, as the one-row sparse product adds them
    assert np.array_equal(hot.weighted_sum(idx, weights), expected)
    assert np.array_equal(hot.block(idx, np.array([5, 1])), gathered[:, [5, 1]])


def metric(client, name: str, label: str) -> float:
    """The value of the series of ``name`` carrying ``label`` (e.g. 'cache="recommend"')."""
    for line in client.get("/metrics").get_data(as_text=True).splitlines():
        if line.startswith(name + "{") and label in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_result_cache_hits_until_a_new_rating_or_a_new_model(
    trained, loaded, settings, database, fast_params, execute
):
    app = create_app(settings, reload_interval=0)
    try:
        client = app.test_client()
        user = loaded.user_ids[3]
        hits = ("movierec_recommender_cache_hits_total", 'cache="recommend"')
        misses = ("movierec_recommender_cache_misses_total", 'cache="recommend"')
        first = client.get(f"/recommend?user={user}&k=5").get_json()
        h0, m0 = metric(client, *hits), metric(client, *misses)
        assert client.get(f"/recommend?user={user}&k=5").get_json() == first
        assert (metric(client, *hits), metric(client, *misses)) == (h0 + 1, m0)
        top = first["items"][0]["movie_id"]
        execute("INSERT INTO ratings (user_id, movie_id, rating) VALUES (%s, %s, 4)", (user, top))
        after = client.get(f"/recommend?user={user}&k=5").get_json()
        assert top not in [i["movie_id"] for i in after["items"]]
        assert metric(client, *misses) == m0 + 1
        newer = train_model(database, settings.model_dir, fast_params).artifact.version
        assert client.get(f"/recommend?user={user}&k=5").get_json()["model_version"] == newer
        text = client.get("/metrics").get_data(as_text=True)
        info = [
            line for line in text.splitlines() if line.startswith("movierec_recommender_model_")
        ]
        assert info and 'instance="",pid=' in info[0] and f'version="{newer}"' in info[0]
        assert 'movierec_recommender_requests_total{instance="",pid=' in text
        assert 'endpoint="/recommend",status="200"} ' in text
    finally:
        app.extensions["movierec.ai"]["database"].dispose()


def test_shard_parameters_and_a_server_started_for_one_shard(trained, loaded, settings, model):
    apps = [create_app(settings), create_app(settings.replace(ai_shard="1/3"))]
    try:
        whole, one = (app.test_client() for app in apps)
        user = loaded.user_ids[0]
        part = whole.get(f"/recommend?user={user}&k=5&shard=1&shards=3").get_json()
        ids = [i["movie_id"] for i in part["items"]]
        assert len(ids) == 5 and all(m % 3 == 1 for m in ids)
        assert one.get(f"/recommend?user={user}&k=5").get_json()["items"] == part["items"]
        assert one.get("/health").get_json()["shard"] == "1/3"
        for client, query in (
            (one, "shard=0&shards=3"), (whole, "shard=1"), (whole, "shard=3&shards=3"),
        ):  # fmt: skip
            answer = client.get(f"/recommend?user={user}&{query}")
            assert answer.status_code == 400 and "shard" in answer.get_json()["error"]
        movie = loaded.movie_ids[1]
        similar = one.get(f"/similar?movie={movie}&k=4").get_json()["items"]
        assert similar and all(i["movie_id"] % 3 == 1 for i in similar)
    finally:
        for app in apps:
            app.extensions["movierec.ai"]["database"].dispose()


def test_serving_settings_are_checked_together():
    assert load_settings(environ={"MOVIEREC_AI_SHARD": "1/3"}, toml_path=None).ai_shard == "1/3"
    with pytest.raises(ConfigError) as bad:
        load_settings(environ={}, toml_path=None, overrides={"ai_shard": "3/3", "ann_nprobe": -1})
    assert "ai_shard" in str(bad.value) and "ann_nprobe" in str(bad.value)
