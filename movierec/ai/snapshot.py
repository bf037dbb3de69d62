"""A ratings snapshot as one Parquet file: what a trainer past one machine (Spark) reads.

The database streams its ratings once (:func:`movierec.ai.dataset.read_ratings`, binary COPY
from a replica when there is one); they are written with pyarrow to ``ratings-<UTC time>.parquet``
(columns ``row``, ``user_id``, ``movie_id``, ``rating``, ``rated_at`` in epoch seconds), first
under a temporary name and renamed when complete, so a reader never sees half a file. ``row``
numbers the ratings in the order the snapshot holds them: a training split is a set of rows,
the same on the driver (which keeps the whole snapshot for the artifact's id maps and
evaluation) and on every executor. pyarrow is an optional dependency (the ``spark`` extra).
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from movierec.ai.dataset import RatingsData, ratings_from_arrays, read_ratings
from movierec.db import Database
from movierec.errors import BadInput, ModelNotReady

COLUMNS = ("row", "user_id", "movie_id", "rating", "rated_at")


def pyarrow_modules():
    """pyarrow and its Parquet module. Raises :class:`BadInput` when it is not installed."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as exc:
        raise BadInput(
            "Parquet snapshots need pyarrow: install movierec with its spark extra "
            "(pip install -e '.[spark]')"
        ) from exc
    return pyarrow, pyarrow.parquet


def write_snapshot(data: RatingsData, directory: Path, when: datetime | None = None) -> Path:
    """``data`` as ``directory/ratings-<UTC time>.parquet``; returns its path.

    Raises :class:`BadInput` without pyarrow, :class:`OSError` when it cannot be written.
    """
    pa, pq = pyarrow_modules()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stamp = (when or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")
    stamps = data.timestamps if data.timestamps is not None else np.zeros(data.n_ratings)
    table = pa.table(
        {
            "row": np.arange(data.n_ratings, dtype=np.int64),
            "user_id": data.user_ids[data.user_index].astype(np.int64),
            "movie_id": data.movie_ids[data.item_index].astype(np.int64),
            "rating": data.ratings.astype(np.float32),
            "rated_at": np.asarray(stamps, dtype=np.int64),
        }
    )
    final = directory / f"ratings-{stamp}.parquet"
    fd, tmp = tempfile.mkstemp(prefix=".ratings-", suffix=".parquet", dir=directory)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.chmod(tmp, 0o644)  # executors may run as another user
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return final


def export_ratings(database: Database, directory: Path, progress=None) -> Path:
    """Every rating in the database as a new snapshot in ``directory``; returns its path.

    Raises :class:`ModelNotReady` when there is no rating, :class:`DatabaseUnavailable`,
    :class:`BadInput` without pyarrow.
    """
    pyarrow_modules()  # before minutes of reading, not after
    data = read_ratings(database, progress)
    if data.n_ratings == 0:
        raise ModelNotReady("the database has no ratings to export; import or generate data")
    return write_snapshot(data, directory)


def read_snapshot(path: Path) -> RatingsData:
    """The ratings of a snapshot, in its row order.

    Raises :class:`BadInput` when the file is missing, not Parquet or lacks a column.
    """
    _, pq = pyarrow_modules()
    try:
        table = pq.read_table(str(path))
    except (OSError, ValueError) as exc:
        raise BadInput(f"{path} is not a readable ratings snapshot: {exc}") from exc
    missing = [name for name in COLUMNS if name not in table.column_names]
    if missing:
        raise BadInput(f"{path} lacks the column(s) {', '.join(missing)} of a ratings snapshot")
    table = table.sort_by("row")
    columns = {name: table.column(name).to_numpy() for name in COLUMNS}
    if not np.array_equal(columns["row"], np.arange(table.num_rows)):
        raise BadInput(f"{path}: its rows are not numbered 0..{table.num_rows - 1}")
    return ratings_from_arrays(
        columns["user_id"], columns["movie_id"], columns["rating"], columns["rated_at"]
    )
