"""Predicted stars with the user's newest ratings folded in (movierec.ai.rating_fold_in)."""

import numpy as np
import pytest

from movierec.ai import FactorModel, TrainParams, fit_svd, model_arrays, ratings_from_arrays
from movierec.ai.rating_fold_in import fold_in_ratings


@pytest.fixture(scope="module")
def model(synthetic):
    users, movies, ratings = zip(*synthetic.ratings, strict=True)
    data = ratings_from_arrays(users, movies, ratings)
    factors = fit_svd(data, TrainParams(factors=8, epochs=20, test_size=0))
    return FactorModel(model_arrays(factors, data), {"version": "fold"})


def _ratings(synthetic, user):
    return [(m, float(r)) for u, m, r in synthetic.ratings if u == user]


def test_without_new_ratings_the_stars_are_the_models_own(model, synthetic):
    user = synthetic.user_ids[0]
    unrated = [m for m in synthetic.movie_ids if m not in synthetic.rated_by(user)][:20]
    found = model.predict_many(user, unrated, _ratings(synthetic, user))
    assert found == {m: pytest.approx(model.predict(user, m), abs=1e-5) for m in unrated}


def test_rated_and_unknown_movies_are_left_out(model, synthetic):
    user = synthetic.user_ids[0]
    rated = sorted(synthetic.rated_by(user))[:3]
    found = model.predict_many(user, [*rated, 10**12], _ratings(synthetic, user))
    assert found == {}


def test_a_new_user_is_personalised_by_their_first_ratings(model, synthetic):
    stranger = max(synthetic.user_ids) + 1
    movies = synthetic.movie_ids[:40]
    plain = model.predict_many(stranger, movies)
    assert plain == {m: pytest.approx(model.predict(stranger, m), abs=1e-5) for m in movies}
    liked = [(m, 5.0) for m in movies[:5]]
    hated = [(m, 0.5) for m in movies[:5]]
    up = model.predict_many(stranger, movies, liked)
    down = model.predict_many(stranger, movies, hated)
    assert set(up) == set(down) == set(movies[5:])
    # Loving the same five movies predicts more stars for the rest than hating them does.
    assert np.mean(list(up.values())) > np.mean(list(down.values())) + 0.3
    assert all(0.5 <= v <= 5 for v in (*up.values(), *down.values()))


def test_the_solve_pulls_towards_the_prior_as_regularisation_grows():
    rng = np.random.default_rng(0)
    items = rng.normal(size=(3, 4))
    prior = rng.normal(size=5)
    targets = rng.normal(size=3)
    assert np.allclose(fold_in_ratings(items[:0], targets[:0], prior), prior)
    assert np.allclose(fold_in_ratings(items, targets, prior, reg=1e9), prior, atol=1e-6)
    loose = fold_in_ratings(items, targets, prior, reg=1e-9)
    fitted = np.hstack([items, np.ones((3, 1))]) @ loose
    assert np.allclose(fitted, targets, atol=1e-4)  # 3 equations, 5 unknowns: met exactly
