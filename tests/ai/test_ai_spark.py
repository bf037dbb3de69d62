"""`model train --engine spark`: Spark MLlib's ALS in local mode, from a Parquet snapshot of the
database's ratings, into the artifact the recommender server loads; served by the real app.
One Spark session for the module (its start-up is the slow part)."""

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from movierec.ai.artifact import read_artifact
from movierec.ai.snapshot import read_snapshot
from movierec.ai.spark_als import spark_session
from movierec.ai.train import train_with_spark
from movierec.cli.main import app as cli
from movierec.db.roles import AI_ROLE
from movierec.errors import BadInput


@pytest.fixture(scope="module")
def spark():
    session = spark_session("local[2]")
    yield session
    session.stop()


def test_model_train_engine_spark_writes_the_served_als_artifact_from_a_snapshot(
    spark, loaded, db_url, settings, tmp_path, make_app, as_role
):
    env = {
        "MOVIEREC_DATABASE_URL": db_url, "MOVIEREC_MODEL_DIR": str(settings.model_dir),
        "MOVIEREC_SPARK_MASTER": "local[2]", "MOVIEREC_DEBUG": "",
        "MOVIEREC_SPARK_SNAPSHOT_DIR": str(tmp_path / "snapshots"),
    }  # fmt: skip
    args = ["model", "train", "--algo", "als", "--engine", "spark", "--test-size", "0"]
    done = CliRunner().invoke(cli, [*args, "-p", "factors=8", "-p", "iterations=5"], env=env)
    assert done.exit_code == 0, done.output
    report = read_artifact(settings.model_dir)
    meta = report.meta
    assert (meta["algorithm"], meta["form"], meta["engine"]) == ("als", "als", "spark")
    assert meta["library"].startswith("pyspark") and meta["spark_master"] == "local[2]"
    snapshot = read_snapshot(Path(meta["snapshot"]))
    assert snapshot.n_ratings == len(loaded.ratings) == meta["n_ratings"]
    assert sorted(snapshot.movie_ids.tolist()) == sorted(loaded.movie_ids)
    server = make_app(settings.replace(database_url=as_role(settings.database_url, AI_ROLE)))
    client = server.test_client()
    user = loaded.user_ids[0]
    body = client.get(f"/recommend?user={user}&k=5").get_json()
    assert body["model_version"] == report.version and body["fallback"] is False
    ids = [item["movie_id"] for item in body["items"]]
    assert len(ids) == 5 and not set(ids) & loaded.rated_by(user)
    assert client.get(f"/similar?movie={loaded.movie_ids[0]}&k=3").status_code == 200


def test_the_spark_engine_refuses_other_algorithms_and_engines(database, settings, tmp_path):
    with pytest.raises(BadInput, match="spark engine trains als"):
        train_with_spark(
            database, settings.model_dir, algo="ease", snapshot_dir=tmp_path,
        )  # fmt: skip
    env = {"MOVIEREC_DATABASE_URL": settings.database_url, "MOVIEREC_DEBUG": ""}
    done = CliRunner().invoke(cli, ["model", "train", "--engine", "hadoop"], env=env)
    assert done.exit_code == 1 and "--engine must be one of local, spark" in done.output


def test_the_recommender_server_never_imports_pyspark():
    code = "import sys, movierec.ai.server, movierec.ai.train; print('pyspark' in sys.modules)"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert found.stdout.strip() == "False", found.stderr
