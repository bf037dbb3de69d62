"""ALS past one machine: Spark MLlib's implicit ALS over a Parquet ratings snapshot, into the
artifact the recommender servers already serve (form ``als``).

Spark fits the item factors; everything else is the one-machine path's: the driver holds the
snapshot as :class:`RatingsData` (ids, the per-user lists the artifact keeps, the evaluation
split) and the result is a :class:`FittedAls`, so the artifact, its ANN index and serving (a
user folded in per request against the item factors) are the same as with ``implicit``. Only
the item factors go to the servers, so Spark's user factors are never collected.

Each rating's weight is the served one, ``max(1 + rating_weight·(r - 3), 0.05)``; Spark's
confidence is ``1 + alpha·w`` where ``implicit``'s (and the fold-in's) is ``alpha·w``, and
Spark scales ``reg`` by each user's and movie's number of ratings (ALS-WR): the same parameter
values are not the same model. So Spark keeps its own ``reg`` and ``alpha`` defaults (0.05 and
2, ``als``'s before it was tuned for ``implicit``: ``implicit``'s reg 50 scaled by every count
would flatten the factors); the others are ``als``'s. BENCHMARKS.md compares the two trainers
with their defaults (bench/bench_spark.py).

The session comes from ``SparkSession.builder.getOrCreate()`` with ``master`` (``local[*]``
for this machine; ``spark://host:7077``, ``yarn`` or ``k8s://...`` for a cluster, where the
snapshot must lie on storage every executor reads). An active session is reused.
Nothing the servers import imports this module: ``pyspark`` is an optional extra.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyspark
from pyspark.ml.recommendation import ALS
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from movierec.ai.algorithms.als import Als, FittedAls
from movierec.ai.algorithms.base import RANKING, Algorithm, Fitted
from movierec.ai.dataset import RatingsData
from movierec.ai.folding import NEUTRAL_RATING
from movierec.ai.ids import dense_lookup
from movierec.ai.snapshot import pyarrow_modules

SPARK_DEFAULTS = {"reg": 0.05, "alpha": 2.0}  # ALS-WR's scale: see the module's docstring


def spark_session(master: str) -> SparkSession:
    """The active session, or a new one on ``master`` (few shuffle partitions for a training
    job's small tables; the UI off: nothing should listen on a port it was not asked to)."""
    session = (
        SparkSession.builder.master(master)
        .appName("movierec-train")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "8")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")  # its INFO/WARN lines would drown the CLI's
    return session


class SparkAls(Algorithm):
    """Implicit ALS fitted by Spark MLlib from the snapshot at ``snapshot``: the rows of the
    :class:`RatingsData` given to :meth:`fit` must be that snapshot's rows (read with
    :func:`movierec.ai.snapshot.read_snapshot`)."""

    name = "als"
    kind = RANKING
    summary = "implicit-feedback matrix factorisation, fitted on Spark MLlib"
    library = f"pyspark {pyspark.__version__}"
    params = tuple(  # Spark has executors, not threads
        replace(p, default=SPARK_DEFAULTS.get(p.name, p.default))
        for p in Als.params
        if p.name != "threads"
    )

    def __init__(self, snapshot: Path, master: str = "local[*]"):
        self.snapshot, self.master = Path(snapshot), master

    def fit(self, data: RatingsData, rows, params: Mapping[str, Any], seed: int) -> Fitted:
        spark = spark_session(self.master)
        ratings = spark.read.parquet(str(self.snapshot))
        with tempfile.TemporaryDirectory(dir=self.snapshot.parent) as tmp:
            if rows is not None:  # the split travels as a file beside the snapshot
                pa, pq = pyarrow_modules()
                split = Path(tmp) / "rows.parquet"
                pq.write_table(pa.table({"row": np.asarray(rows, dtype=np.int64)}), split)
                ratings = ratings.join(spark.read.parquet(str(split)), "row")
            weight = F.greatest(
                F.lit(1.0) + params["rating_weight"] * (F.col("rating") - NEUTRAL_RATING),
                F.lit(0.05),
            )
            signals = ratings.select(
                F.col("user_id").cast("int"), F.col("movie_id").cast("int"), weight.alias("w")
            )
            # One block of users and of movies per core: Spark's default of 10 makes 10 tasks
            # per step whatever the cluster, mostly waiting on each other on a small one.
            blocks = max(1, spark.sparkContext.defaultParallelism)
            als = ALS(
                rank=params["factors"], maxIter=params["iterations"], regParam=params["reg"],
                alpha=params["alpha"], implicitPrefs=True, userCol="user_id",
                itemCol="movie_id", ratingCol="w", seed=seed, coldStartStrategy="drop",
                numUserBlocks=blocks, numItemBlocks=blocks,
            )  # fmt: skip
            model = als.fit(signals)
            found = model.itemFactors.collect()
        item_factors = np.zeros((data.n_items, params["factors"]), dtype=np.float32)
        if found:
            ids = np.array([row["id"] for row in found], dtype=np.int64)
            pos, known = dense_lookup(data.movie_ids, ids)
            vectors = np.array([row["features"] for row in found], dtype=np.float32)
            item_factors[pos[known]] = vectors[known]
        return FittedAls(item_factors, params["reg"], params["alpha"], params["rating_weight"])
