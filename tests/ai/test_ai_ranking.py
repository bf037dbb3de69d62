"""Every algorithm behind one interface; ranking models with fold-in, explanations, filters;
the live pointer, refresh and rollback; atomic swaps under concurrent load."""

import threading

import numpy as np
import pytest
import requests
from support.algorithms import FAST
from support.keys import AI_KEY, KEYED
from surprise import KNNBaseline, SVDpp
from werkzeug.serving import make_server

from movierec.ai.algorithms import ALGORITHMS, get_algorithm
from movierec.ai.base import Signals
from movierec.ai.dataset import ratings_from_arrays, to_trainset
from movierec.ai.loader import load_model
from movierec.ai.refresh import refresh
from movierec.ai.registry import live_version, promote, rollback, serving_version
from movierec.ai.server import create_app
from movierec.ai.train import train_on_data
from movierec.config import load_settings
from movierec.errors import BadInput, NotFound

COMEDY = list(range(100, 120))  # liked by the first half of the users
HORROR = list(range(200, 220))  # liked by the second half
GENRES = np.array(["Comedy", "Horror"])


def make_groups(seed=0, n_users=60):
    """Two taste groups: each user rates ~60% of their group's movies and 5% of the other's."""
    rng = np.random.default_rng(seed)
    users, movies, stars, stamps = [], [], [], []
    for u in range(n_users):
        own, other = (COMEDY, HORROR) if u < n_users // 2 else (HORROR, COMEDY)
        for m in own + other:
            if rng.random() < (0.6 if m in own else 0.05):
                users.append(1000 + u)
                movies.append(m)
                stars.append(5.0 if m in own else 2.0)
                stamps.append(int(rng.integers(0, 10**6)))
    data = ratings_from_arrays(users, movies, stars, stamps)
    genres = np.array([[m in COMEDY, m in HORROR] for m in data.movie_ids.tolist()])
    return data, genres


def mostly(ids, group):
    """At least 4 of 5 recommended movies come from ``group`` (the other group is 50%)."""
    return len(ids) == 5 and sum(m in group for m in ids) >= 4


@pytest.fixture(scope="module")
def groups():
    return make_groups()


@pytest.fixture(scope="module")
def ranking_dir(groups, tmp_path_factory):
    """One EASE, one ALS, one EASE + ALS and one popularity artifact."""
    data, genres = groups
    model_dir = tmp_path_factory.mktemp("ranking")
    versions = {
        algo: train_on_data(
            data, model_dir, algo, FAST.get(algo), test_size=0.2,
            genre_names=GENRES, movie_genres=genres,
        ).artifact.version
        for algo in ("popularity", "als", "ease", "easeals", "sansaals")
    }  # fmt: skip
    return model_dir, versions


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_every_algorithm_trains_serves_and_survives_unknown_ids(name, groups, tmp_path):
    data, genres = groups
    report = train_on_data(
        data, tmp_path, name, FAST.get(name), test_size=0.2,
        genre_names=GENRES, movie_genres=genres,
    )  # fmt: skip
    meta = report.artifact.meta
    assert (meta["algorithm"], meta["kind"]) == (name, ALGORITHMS[name].kind)
    model = load_model(tmp_path)
    assert model.kind == meta["kind"] and model.version == report.artifact.version
    stranger = model.recommend(424242, k=3)
    assert stranger.fallback is (name != "popularity") and len(stranger.items) == 3
    known = model.recommend(1000, k=5)
    assert len(known.items) == 5 and not set(known.movie_ids) & set(
        data.movie_ids[data.item_index[data.user_index == 0]].tolist()
    )
    if meta["kind"] == "rating":
        assert report.metrics.n_test > 0 and report.metrics.rmse > 0
        assert 0.5 <= model.predict(424242, 31337) <= 5
    else:
        assert report.top_n.n_users > 0 and 0 <= report.top_n.ndcg <= 1
        with pytest.raises(BadInput, match="rating model"):
            model.predict(1000, COMEDY[0])


@pytest.mark.parametrize(
    "name, surprise_algo",
    [
        ("svdpp", SVDpp(n_factors=4, n_epochs=3, random_state=0)),
        ("knnbaseline", KNNBaseline(verbose=False)),
    ],
)
def test_numpy_estimates_equal_surprise_predictions(name, surprise_algo, groups):
    data, _ = groups
    algorithm = get_algorithm(name)
    fitted = algorithm.fit(data, None, algorithm.resolve(FAST.get(name)), 0)
    surprise_algo.fit(to_trainset(data))
    users, items = data.user_index[:50], data.item_index[::-1][:50]
    ours = fitted.estimate_pairs(users, items)
    theirs = [
        surprise_algo.predict(int(data.user_ids[u]), int(data.movie_ids[i])).est
        for u, i in zip(users.tolist(), items.tolist(), strict=True)
    ]
    assert ours == pytest.approx(theirs, abs=1e-5)


@pytest.mark.parametrize("algo", ["ease", "als", "easeals", "sansaals"])
def test_a_new_user_is_folded_in_from_favourites_and_fresh_ratings(algo, ranking_dir):
    model_dir, versions = ranking_dir
    model = load_model(model_dir, versions[algo])
    liked = model.recommend(777, k=5, signals=Signals(liked=(COMEDY[0], COMEDY[1])))
    assert liked.fallback is False and mostly(liked.movie_ids, COMEDY)
    assert set(liked.because) <= {COMEDY[0], COMEDY[1]} and None not in liked.because
    # Ratings made after training count at once, through the same fold-in.
    rated = Signals(ratings=((HORROR[0], 5.0), (HORROR[1], 4.5)), complete=True)
    fresh = model.recommend(777, k=5, signals=rated)
    assert mostly(fresh.movie_ids, HORROR) and not {HORROR[0], HORROR[1]} & set(fresh.movie_ids)
    # A known comedy fan whose database now says horror: the database wins.
    switched = model.recommend(1000, k=5, signals=rated)
    assert mostly(switched.movie_ids, HORROR)


def test_genres_searches_exclusions_and_demotions(ranking_dir):
    model_dir, versions = ranking_dir
    model = load_model(model_dir, versions["ease"])
    by_genre = model.recommend(777, k=5, signals=Signals(genres=("Horror",)))
    assert by_genre.fallback is False and set(by_genre.movie_ids) <= set(HORROR)
    searched = model.recommend(777, k=5, signals=Signals(searched_genres=("comedy",)))
    assert set(searched.movie_ids) <= set(COMEDY)
    nothing = model.recommend(777, k=3, signals=Signals())
    assert nothing.fallback is True and "most rated" in nothing.reason
    base = model.recommend(1000, k=5)
    skipped = model.recommend(1000, k=5, exclude=base.movie_ids[:2])
    assert not set(base.movie_ids[:2]) & set(skipped.movie_ids)
    demoted = model.recommend(1000, k=40, demote_genres=("Comedy",))
    kinds = ["c" if m in COMEDY else "h" for m in demoted.movie_ids]
    assert "h" in kinds and kinds == sorted(kinds, key=lambda c: c == "c")
    assert model.similar(COMEDY[0], k=3).movie_ids[0] in COMEDY
    with pytest.raises(NotFound):
        model.similar(31337)


def test_promote_rollback_and_the_newest_when_nothing_is_promoted(ranking_dir):
    model_dir, versions = ranking_dir
    assert serving_version(model_dir, "ranking") == max(versions.values())
    promote(model_dir, versions["popularity"])
    promote(model_dir, versions["als"])
    assert live_version(model_dir, "ranking") == versions["als"]
    assert rollback(model_dir, "ranking") == versions["popularity"]
    assert serving_version(model_dir, "ranking") == versions["popularity"]
    with pytest.raises(NotFound, match="roll back"):
        rollback(model_dir, "ranking")
    with pytest.raises(NotFound):
        promote(model_dir, "20200101T000000Z-ease")


def test_refresh_promotes_only_a_model_no_worse_than_live(groups, tmp_path):
    data, genres = groups
    first = refresh(data, tmp_path, "ease", FAST["ease"])
    assert first.promoted and first.live_before is None
    worse = refresh(data, tmp_path, "popularity")
    assert not worse.promoted and worse.candidate_score < worse.live_score
    assert live_version(tmp_path, "ranking") == first.candidate.version
    forced = refresh(data, tmp_path, "popularity", force=True)
    assert forced.promoted and live_version(tmp_path, "ranking") == forced.candidate.version
    assert rollback(tmp_path, "ranking") == first.candidate.version
    same = refresh(data, tmp_path, "ease", FAST["ease"])
    assert same.promoted and same.candidate_score == pytest.approx(same.live_score)


def test_servers_swap_atomically_under_concurrent_load(ranking_dir, tmp_path):
    model_dir, versions = ranking_dir
    expected = {
        v: [m for m, _ in load_model(model_dir, v).recommend(1000, k=10).items]
        for v in (versions["ease"], versions["als"])
    }
    promote(model_dir, versions["ease"])
    settings = load_settings(
        environ={}, toml_path=None, overrides={"model_dir": model_dir, "ai_key": AI_KEY}
    )
    server = make_server("127.0.0.1", 0, create_app(settings, reload_interval=0), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/recommend"
    seen, problems, stop = [], [], threading.Event()

    def hammer():
        with requests.Session() as http:
            while not stop.is_set():
                params = {"user": 1000, "k": 10}
                body = http.get(url, params=params, headers=KEYED, timeout=10).json()
                ids = [item["movie_id"] for item in body["items"]]
                seen.append(body["model_version"])
                if ids != expected.get(body["model_version"]):
                    problems.append(body)

    workers = [threading.Thread(target=hammer) for _ in range(4)]
    try:
        for worker in workers:
            worker.start()
        for _ in range(15):
            promote(model_dir, versions["als"])
            rollback(model_dir, "ranking")
        promote(model_dir, versions["als"])
        while seen.count(versions["als"]) < 3 or seen.count(versions["ease"]) < 3:
            stop.wait(0.01)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=10)
        server.shutdown()
        thread.join(timeout=5)
    assert not problems and set(seen) == set(expected)
    assert requests is not None and seen[-1] in expected
