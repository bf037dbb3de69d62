"""`model train --engine spark`: Spark MLlib's ALS in local mode, from a Parquet snapshot of the
database's ratings, into the artifact the recommender server loads; served by the real app.
One Spark session for the module (its start-up is the slow part)."""

import subprocess
import sys
from pathlib import Path

import pytest

from movierec.ai.snapshot import read_snapshot
from movierec.ai.spark_als import spark_session
from movierec.ai.train import TrainParams, train_with_spark
from movierec.db.roles import AI_ROLE
from movierec.errors import BadInput

FAST = {"factors": 8, "iterations": 5}


@pytest.fixture(scope="module")
def spark():
    session = spark_session("local[2]")
    yield session
    session.stop()


def test_spark_trains_the_served_als_artifact_from_a_snapshot(
    spark, loaded, database, settings, tmp_path, make_app, as_role
):
    report = train_with_spark(
        database, settings.model_dir, TrainParams(test_size=0), algo="auto",
        algo_params=FAST, master="local[2]", snapshot_dir=tmp_path / "snapshots",
    )  # fmt: skip
    meta = report.artifact.meta
    assert (meta["algorithm"], meta["form"], meta["engine"]) == ("als", "als", "spark")
    assert meta["library"].startswith("pyspark") and meta["spark_master"] == "local[2]"
    snapshot = read_snapshot(Path(meta["snapshot"]))
    assert snapshot.n_ratings == len(loaded.ratings) == meta["n_ratings"]
    assert sorted(snapshot.movie_ids.tolist()) == sorted(loaded.movie_ids)
    app = make_app(settings.replace(database_url=as_role(settings.database_url, AI_ROLE)))
    client = app.test_client()
    user = loaded.user_ids[0]
    body = client.get(f"/recommend?user={user}&k=5").get_json()
    assert body["model_version"] == report.artifact.version and body["fallback"] is False
    ids = [item["movie_id"] for item in body["items"]]
    assert len(ids) == 5 and not set(ids) & loaded.rated_by(user)
    assert client.get(f"/similar?movie={loaded.movie_ids[0]}&k=3").status_code == 200


def test_the_spark_engine_refuses_other_algorithms(database, settings, tmp_path):
    with pytest.raises(BadInput, match="spark engine trains als"):
        train_with_spark(
            database, settings.model_dir, algo="ease", snapshot_dir=tmp_path,
        )  # fmt: skip


def test_the_recommender_server_never_imports_pyspark():
    code = "import sys, movierec.ai.server, movierec.ai.train; print('pyspark' in sys.modules)"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert found.stdout.strip() == "False", found.stderr
