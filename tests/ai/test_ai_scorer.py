"""NumPy scoring against surprise's own per-item predictions on the same fitted SVD."""

import numpy as np
import pytest
from surprise import SVD

from movierec.ai import FactorModel, Recommender, load_model, model_arrays
from movierec.ai.artifact import write_artifact
from movierec.ai.dataset import ratings_from_arrays, to_trainset
from movierec.ai.factors import Factors
from movierec.errors import BadInput, NotFound

UNKNOWN_USER = 424242
UNKNOWN_MOVIE = 31337


class Fitted:
    """One surprise SVD and the FactorModel built from its parameters."""

    def __init__(self, synthetic):
        users, movies, ratings = zip(*synthetic.ratings, strict=True)
        self.data = ratings_from_arrays(users, movies, ratings)
        trainset = to_trainset(self.data)
        self.algo = SVD(n_factors=8, n_epochs=40, lr_all=0.01, reg_all=0.05, random_state=0)
        self.algo.fit(trainset)
        names = sorted({g for genres in synthetic.genres.values() for g in genres})
        matrix = np.array(
            [[g in synthetic.genres[m] for g in names] for m in self.data.movie_ids.tolist()]
        )
        self.arrays = model_arrays(
            Factors.from_svd(self.algo, trainset), self.data, np.array(names), matrix
        )
        self.model = FactorModel(self.arrays, {"version": "in-memory"})

    def brute_force(self, user, exclude=()):
        """surprise's predict over every movie, best first, as (movie_id, estimate)."""
        estimates = [
            (m, self.algo.predict(user, m, clip=False).est)
            for m in self.data.movie_ids.tolist()
            if m not in exclude
        ]
        return sorted(estimates, key=lambda pair: -pair[1])


@pytest.fixture(scope="module")
def fitted(synthetic):
    return Fitted(synthetic)


def assert_same_ranking(items, expected):
    assert [m for m, _ in items] == [m for m, _ in expected]
    assert [s for _, s in items] == pytest.approx(
        [min(5.0, max(0.5, e)) for _, e in expected], abs=1e-4
    )


def test_estimates_equal_surprise_predictions(fitted, synthetic):
    for user in synthetic.user_ids[:5]:
        ours = fitted.model.estimate_all(user)
        theirs = [fitted.algo.predict(user, m, clip=False).est for m in fitted.data.movie_ids]
        assert ours == pytest.approx(theirs, abs=1e-4)
    assert fitted.model.estimate_all(UNKNOWN_USER) is None


@pytest.mark.parametrize("position", [0, 1, 77, 149])
def test_recommend_ranks_unrated_movies_like_brute_force(fitted, synthetic, position):
    user = synthetic.user_ids[position]
    rated = synthetic.rated_by(user)
    recs = fitted.model.recommend(user, k=10)
    assert not recs.fallback and recs.reason is None and recs.model_version == "in-memory"
    assert not set(recs.movie_ids) & rated
    assert_same_ranking(recs.items, fitted.brute_force(user, exclude=rated)[:10])


def test_recommend_leaves_out_excluded_movies(fitted, synthetic):
    user = synthetic.user_ids[5]
    rated = synthetic.rated_by(user)
    best = fitted.model.recommend(user, k=5).movie_ids
    recs = fitted.model.recommend(user, k=10, exclude={best[0], best[2], UNKNOWN_MOVIE})
    assert best[0] not in recs.movie_ids and best[2] not in recs.movie_ids
    expected = fitted.brute_force(user, exclude=rated | {best[0], best[2]})[:10]
    assert_same_ranking(recs.items, expected)


def test_k_beyond_the_catalogue_returns_every_unrated_movie(fitted, synthetic):
    user = synthetic.user_ids[0]
    recs = fitted.model.recommend(user, k=10_000)
    assert len(recs.items) == len(synthetic.movie_ids) - len(synthetic.rated_by(user))
    everything = set(synthetic.movie_ids) - synthetic.rated_by(user)
    assert fitted.model.recommend(user, k=3, exclude=everything).items == ()


@pytest.mark.parametrize("k", [0, -1, True, 2.5, "3"])
def test_k_must_be_a_positive_integer(fitted, k):
    with pytest.raises(BadInput):
        fitted.model.recommend(1000, k=k)
    with pytest.raises(BadInput):
        fitted.model.similar(500, k=k)


def test_unknown_user_gets_popular_movies_of_preferred_genres(fitted, synthetic):
    recs = fitted.model.recommend(UNKNOWN_USER, k=5, genres=["horror", "Western"])
    assert recs.fallback and "Horror" in recs.reason
    assert all("Horror" in synthetic.genres[m] for m in recs.movie_ids)
    horror = [m for m in synthetic.movie_ids if "Horror" in synthetic.genres[m]]
    by_count = sorted(horror, key=lambda m: (-synthetic.count(m), m))
    assert recs.movie_ids == by_count[:5]
    assert [s for _, s in recs.items] == [synthetic.count(m) for m in by_count[:5]]
    again = fitted.model.recommend(UNKNOWN_USER, k=5, exclude={by_count[0]}, genres=["Horror"])
    assert again.movie_ids == by_count[1:6]


def test_unknown_user_without_matching_genres_gets_overall_popular(fitted, synthetic):
    by_count = sorted(synthetic.movie_ids, key=lambda m: (-synthetic.count(m), m))
    plain = fitted.model.recommend(UNKNOWN_USER, k=4)
    assert plain.fallback and plain.movie_ids == by_count[:4]
    odd = fitted.model.recommend(UNKNOWN_USER, k=4, genres=["Film-Noir"])
    assert odd.movie_ids == by_count[:4] and "no rated movie in Film-Noir" in odd.reason


def test_genres_do_not_override_a_known_users_taste(fitted, synthetic):
    user = synthetic.user_ids[9]
    assert fitted.model.recommend(user, genres=["Horror"]) == fitted.model.recommend(user)


def test_similar_is_cosine_in_item_factor_space(fitted, synthetic):
    movie = synthetic.movie_ids[3]
    qi = fitted.algo.qi
    i = synthetic.movie_ids.index(movie)
    cosine = qi @ qi[i] / (np.linalg.norm(qi, axis=1) * np.linalg.norm(qi[i]))
    order = [j for j in np.argsort(-cosine).tolist() if j != i][:6]
    found = fitted.model.similar(movie, k=6)
    assert found.movie_ids == [synthetic.movie_ids[j] for j in order]
    assert [s for _, s in found.items] == pytest.approx(cosine[order].tolist(), abs=1e-5)
    assert movie not in found.movie_ids


def test_predict_matches_surprise_including_unknown_ids(fitted, synthetic):
    for user in (synthetic.user_ids[0], synthetic.user_ids[50], UNKNOWN_USER):
        for movie in (synthetic.movie_ids[0], synthetic.movie_ids[60], UNKNOWN_MOVIE):
            expected = fitted.algo.predict(user, movie).est
            assert fitted.model.predict(user, movie) == pytest.approx(expected, abs=1e-4)


def test_saved_and_loaded_model_answers_like_the_in_memory_one(fitted, synthetic, tmp_path):
    write_artifact(tmp_path, "svd", fitted.arrays, {"algorithm": "svd"})
    loaded = load_model(tmp_path)
    user = synthetic.user_ids[7]
    assert loaded.recommend(user).items == fitted.model.recommend(user).items
    assert loaded.similar(500).items == fitted.model.similar(500).items
    assert loaded.version.endswith("-svd") and loaded.meta["algorithm"] == "svd"


@pytest.fixture(params=["in-memory", "artifact"])
def any_recommender(request, fitted, tmp_path) -> Recommender:
    if request.param == "in-memory":
        return fitted.model
    write_artifact(tmp_path, "svd", fitted.arrays, {})
    return load_model(tmp_path)


def test_contract_unknown_ids_never_raise_except_similar(any_recommender):
    recs = any_recommender.recommend(UNKNOWN_USER, k=3)
    assert recs.fallback and len(recs.items) == 3 and recs.reason
    assert not any_recommender.knows_user(UNKNOWN_USER)
    assert 0.5 <= any_recommender.predict(UNKNOWN_USER, UNKNOWN_MOVIE) <= 5.0
    with pytest.raises(NotFound, match=str(UNKNOWN_MOVIE)):
        any_recommender.similar(UNKNOWN_MOVIE)


def test_mismatched_arrays_are_refused(fitted):
    from movierec.errors import ModelNotReady

    broken = dict(fitted.arrays, item_bias=fitted.arrays["item_bias"][:-1])
    with pytest.raises(ModelNotReady, match="biases"):
        FactorModel(broken, {"version": "x"})
