"""Training from the database: metrics against the baseline, the saved artifact, bad input."""

import json

import numpy as np
import pytest

from movierec.ai import TrainParams, load_model, train_model
from movierec.ai.scorer import ARRAY_NAMES
from movierec.errors import BadInput, ModelNotReady


def test_trained_model_beats_the_global_mean_on_the_hold_out(trained):
    metrics = trained.metrics
    assert metrics.n_test == round(0.2 * trained.n_ratings)
    assert metrics.rmse < 0.75 * metrics.baseline_rmse
    assert metrics.mae < metrics.baseline_mae


def test_artifact_holds_every_array_and_the_metadata(trained, loaded, settings):
    path = trained.artifact.path
    assert path.parent == settings.model_dir
    assert sorted(p.name for p in path.iterdir()) == sorted(
        [f"{name}.npy" for name in ARRAY_NAMES] + ["meta.json"]
    )
    meta = json.loads((path / "meta.json").read_text())
    assert meta["version"] == path.name and path.name.endswith("-svd")
    assert meta["params"] == {
        "factors": 8, "epochs": 40, "lr": 0.01, "reg": 0.05, "test_size": 0.2, "seed": 0,
    }  # fmt: skip
    assert (meta["n_users"], meta["n_movies"], meta["n_ratings"]) == (
        len(loaded.user_ids), len(loaded.movie_ids), len(loaded.ratings),
    )  # fmt: skip
    assert meta["metrics"]["rmse"] == pytest.approx(trained.metrics.rmse)
    assert meta["train_seconds"] >= 0 and meta["fitted_on"] == "all ratings"
    assert np.load(path / "user_factors.npy").shape == (len(loaded.user_ids), 8)
    popularity = np.load(path / "popularity.npy")
    assert popularity.tolist() == [loaded.count(m) for m in loaded.movie_ids]
    assert not any(p.name.startswith(".tmp") for p in settings.model_dir.iterdir())


def test_refit_on_all_ratings_knows_users_whose_ratings_were_all_held_out(
    loaded, database, settings, execute, fast_params
):
    # One rating: in the hold-out or not, the saved model (fitted on everything) knows him.
    execute("INSERT INTO ratings (user_id, movie_id, rating) VALUES (9002, 500, 4)")
    train_model(database, settings.model_dir, fast_params)
    assert load_model(settings.model_dir).knows_user(9002)


def test_training_is_reproducible_with_a_seed(loaded, database, tmp_path, fast_params):
    first = train_model(database, tmp_path / "a", fast_params)
    second = train_model(database, tmp_path / "b", fast_params)
    assert first.metrics == second.metrics
    a, b = load_model(tmp_path / "a"), load_model(tmp_path / "b")
    user = loaded.user_ids[3]
    assert a.recommend(user).items == b.recommend(user).items


def test_test_size_zero_skips_the_evaluation(loaded, database, settings):
    report = train_model(
        database, settings.model_dir, TrainParams(factors=4, epochs=5, test_size=0)
    )
    assert report.metrics is None and report.artifact.meta["metrics"] is None


def test_database_without_ratings_is_not_ready(database, settings, fast_params):
    with pytest.raises(ModelNotReady, match="no ratings"):
        train_model(database, settings.model_dir, fast_params)
    assert not settings.model_dir.exists() or not any(settings.model_dir.iterdir())


@pytest.mark.parametrize(
    "params, word",
    [
        (TrainParams(factors=0), "factors"),
        (TrainParams(epochs=0), "epochs"),
        (TrainParams(lr=0), "lr"),
        (TrainParams(reg=-1), "reg"),
        (TrainParams(test_size=1.0), "test size"),
    ],
)
def test_bad_parameters_are_bad_input(params, word):
    with pytest.raises(BadInput, match=word):
        params.check()


def test_too_few_ratings_for_a_hold_out(database, settings, execute, fast_params):
    execute("INSERT INTO users (id, username) VALUES (1, 'a')")
    execute("INSERT INTO movies (id, title) VALUES (1, 'm')")
    execute("INSERT INTO ratings (user_id, movie_id, rating) VALUES (1, 1, 4)")
    with pytest.raises(BadInput, match="too few"):
        train_model(database, settings.model_dir, fast_params)


def test_svd_named_with_parameters_keeps_the_train_params(loaded, database, tmp_path):
    """The library merged SVD's parameters unlike the CLI: naming the algorithm with one
    parameter dropped --factors and the others (the algorithm's defaults came back)."""
    params = TrainParams(factors=8, epochs=40, lr=0.01, reg=0.05, test_size=0)
    report = train_model(database, tmp_path, params, algo="svd", algo_params={"epochs": 5})
    assert report.artifact.meta["params"]["factors"] == 8
    assert report.artifact.meta["params"]["epochs"] == 5
