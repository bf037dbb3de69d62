"""``movierec model train|list|show`` through typer's CliRunner, configured by environment."""

import json

import pytest
from typer.testing import CliRunner

from movierec.ai import newest_version
from movierec.ai.registry import live_version
from movierec.cli.main import app


@pytest.fixture
def run(db_url, settings):
    runner = CliRunner()
    env = {
        "MOVIEREC_DATABASE_URL": db_url,
        "MOVIEREC_MODEL_DIR": str(settings.model_dir),
        "MOVIEREC_DEBUG": "",
    }

    def invoke(*args: str, **more_env: str):
        return runner.invoke(app, list(args), env={**env, **more_env})

    return invoke


FAST = ("--factors", "8", "--epochs", "40", "--lr", "0.01", "--reg", "0.05")


def test_train_prints_metrics_then_list_and_show_the_version(run, loaded, settings):
    """With no --algo: the two models the site serves, each saved, promoted and scored."""
    trained = run("model", "train", *FAST, "--seed", "3")
    assert trained.exit_code == 0, trained.output
    ranking = live_version(settings.model_dir, "ranking")
    version = live_version(settings.model_dir, "rating")
    assert ranking.endswith("-easeals") and version.endswith("-svd")
    assert version == newest_version(settings.model_dir)  # the rating model comes second
    assert f"saved model {ranking}" in trained.stdout and "NDCG@10" in trained.stdout
    assert f"saved model {version}" in trained.stdout
    assert "SVD" in trained.stdout and "global mean" in trained.stdout
    assert "fitting on all ratings" in trained.stderr  # the stage progress

    listed = run("model", "list")
    assert listed.exit_code == 0 and version in listed.stdout

    shown = run("model", "show", "--json")
    meta = json.loads(shown.stdout)
    assert meta["version"] == version and meta["params"]["seed"] == 3
    assert meta["metrics"]["rmse"] < meta["metrics"]["baseline_rmse"]
    assert version in run("model", "show", version).stdout


def test_train_on_a_database_without_ratings_fails_in_one_line(run, settings):
    result = run("model", "train", *FAST)
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("error:") and "no ratings" in result.stderr
    assert "Traceback" not in result.output


def test_list_and_show_without_models(run):
    listed = run("model", "list")
    assert listed.exit_code == 0 and "no models" in listed.stdout
    shown = run("model", "show")
    assert shown.exit_code == 1 and "model train" in shown.stderr
    missing = run("model", "show", "20200101T000000Z-svd")
    assert missing.exit_code == 1 and "not found" in missing.stderr


def test_out_of_range_options_are_refused(run):
    result = run("model", "train", "--factors", "0")
    assert result.exit_code == 2 and "--factors" in result.output


def test_parameters_without_an_algorithm_are_refused_in_one_line(run):
    """The ranking and rating models take different parameters: which one is meant?"""
    result = run("model", "train", "--param", "lam=50")
    assert result.exit_code == 1 and result.stderr.strip().count("\n") == 0
    assert "--algo" in result.stderr


def test_svd_named_with_parameters_keeps_the_svd_options(run, loaded, settings):
    trained = run("model", "train", "--algo", "svd", *FAST, "--param", "epochs=5")
    assert trained.exit_code == 0, trained.output
    meta = json.loads(run("model", "show", "--json").stdout)
    assert (meta["params"]["factors"], meta["params"]["epochs"]) == (8, 5)


def test_auto_past_the_sansa_handover_trains_als(run, loaded, settings):
    """A catalogue past sansa_max_items (lowered here to 2 of its 100 movies, with
    ease_max_items to 1) gets ALS, which trains at any size: the SANSA blend's factorisation
    fell over at 100,000 synthetic movies, and `auto` picked it at any size above 20,000."""
    limits = {"MOVIEREC_EASE_MAX_ITEMS": "1", "MOVIEREC_SANSA_MAX_ITEMS": "2"}
    trained = run("model", "train", "--algo", "auto", **limits)
    assert trained.exit_code == 0, trained.output
    meta = json.loads(run("model", "show", "--json").stdout)
    assert (meta["algorithm"], meta["kind"], meta["n_movies"]) == ("als", "ranking", 100)
    assert meta["top_n"]["ndcg"] > 0
