"""``movierec model train --algo|evaluate|tune|promote|rollback|refresh|live`` and the
server's /predict, exclude, demote_genres and because, on the synthetic database."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from movierec.ai.registry import live_version
from movierec.cli.main import app


@pytest.fixture
def run(db_url, settings):
    runner = CliRunner()
    env = {
        "MOVIEREC_DATABASE_URL": db_url,
        "MOVIEREC_MODEL_DIR": str(settings.model_dir),
        "MOVIEREC_STATE_DIR": str(settings.state_dir),
        "MOVIEREC_DEBUG": "",
    }

    def invoke(*args: str):
        return runner.invoke(app, list(args), env=env)

    return invoke


@pytest.fixture
def movielens_file(synthetic, tmp_path):
    """The synthetic ratings as an ml-100k u.data file (tabs, with timestamps)."""
    path = tmp_path / "u.data"
    rows = [
        f"{u}\t{m}\t{int(max(1, round(r)))}\t{i}" for i, (u, m, r) in enumerate(synthetic.ratings)
    ]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_train_ranking_and_rating_models_then_serve_both(run, loaded, settings, make_app):
    ease = run("model", "train", "--algo", "ease", "--param", "lam=50")
    assert ease.exit_code == 0, ease.output
    assert "NDCG@10" in ease.stdout and "live ranking model" in ease.stdout
    svd = run("model", "train", "--algo", "svd", "--factors", "8", "--epochs", "40", "--lr", "0.01")
    assert svd.exit_code == 0, svd.output
    ranking = live_version(settings.model_dir, "ranking")
    rating = live_version(settings.model_dir, "rating")
    assert ranking.endswith("-ease") and rating.endswith("-svd")
    meta = json.loads(run("model", "show", ranking, "--json").stdout)
    assert meta["kind"] == "ranking" and meta["params"]["lam"] == 50
    listed = run("model", "list").stdout
    assert ranking in listed and rating in listed and "ranking" in listed

    client = make_app(settings).test_client()
    user = loaded.user_ids[0]
    body = client.get(f"/recommend?user={user}&k=5").get_json()
    assert list(body) == ["user", "k", "model_version", "fallback", "reason", "items"]
    assert body["model_version"] == ranking and len(body["items"]) == 5
    assert all(
        "because" in item and item["because"] in loaded.rated_by(user) for item in body["items"]
    )
    first = body["items"][0]["movie_id"]
    skipped = client.get(f"/recommend?user={user}&k=5&exclude={first},1").get_json()
    assert first not in [i["movie_id"] for i in skipped["items"]]
    assert client.get(f"/recommend?user={user}&exclude=x").status_code == 400
    predicted = client.get(f"/predict?user={user}&movie={first}").get_json()
    assert predicted["model_version"] == rating and 0.5 <= predicted["rating"] <= 5
    # A new user with a stated genre preference gets personal, not popular, picks.
    new = client.get("/recommend?user=9001&k=4").get_json()
    assert new["fallback"] is False and len(new["items"]) == 4
    assert client.get("/models").get_json()["rating"]["version"] == rating


def test_evaluate_on_a_movielens_file_prints_a_table_and_a_chart(run, movielens_file, tmp_path):
    chart = tmp_path / "chart.png"
    result = run(
        "model", "evaluate", "--algo", "svd,ease", "--dataset", "movielens", str(movielens_file),
        "--folds", "2", "--chart", str(chart),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for word in ("svd", "ease", "popularity", "RMSE/MAE 2-fold"):
        assert word in result.stdout
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tune_ranks_a_grid_and_bad_input_is_one_line(run, movielens_file):
    result = run(
        "model", "tune", "--algo", "ease", "--grid", "lam=10,1000", "--grid", "rating_weight=0",
        "--dataset", "movielens", str(movielens_file),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "best: --param lam=" in result.stdout and "NDCG@10" in result.stdout
    bad = run("model", "train", "--algo", "ease", "--param", "lam")
    assert bad.exit_code == 1 and "name=value" in bad.stderr


def test_refresh_promote_rollback_from_the_cli(run, loaded, settings):
    # The synthetic ratings follow popularity alone, so popularity is the model to beat there.
    first = run("model", "refresh", "--algo", "popularity")
    assert first.exit_code == 0 and "promoted" in first.stdout, first.output
    good = live_version(settings.model_dir, "ranking")
    worse = run("model", "refresh", "--algo", "ease", "--param", "lam=50")
    assert "not promoted" in worse.stdout and live_version(settings.model_dir, "ranking") == good
    forced = run("model", "refresh", "--algo", "ease", "--param", "lam=50", "--force")
    assert "forced" in forced.stdout
    assert live_version(settings.model_dir, "ranking").endswith("-ease")
    back = run("model", "rollback", "--kind", "ranking")
    assert back.exit_code == 0 and live_version(settings.model_dir, "ranking") == good
    assert good in run("model", "live").stdout
    assert run("model", "refresh", "--every", "soon").exit_code == 1
    assert np.isfinite(json.loads(run("model", "show", good, "--json").stdout)["refresh"]["score"])
