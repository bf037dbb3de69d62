"""A shard's slice of a model's per-movie arrays, written once beside the artifact and mapped.

A server started for one shard (setting ``ai_shard = "i/n"``) keeps only its slice: the
per-movie arrays it scores (SVD/ALS item factors, biases and norms; EASE's columns
``B[:, slice]``, SANSA's sparse columns; ids, popularity, genres) and an ANN index of the slice
(the full index's cells, filtered: no k-means again). The slice is written once into
``<artifact>/shards/<i>-of-<n>/`` (under a file lock, renamed into place when complete, like an
artifact) and memory-mapped, so every worker of the instance shares it. Which rows make the
slice and what is done with it is :meth:`movierec.ai.candidates.Candidates.slice`'s business.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from movierec.ai.ann import ANN_FILE, AnnIndex, write_index
from movierec.ai.artifact import mapped
from movierec.ai.sparse_weights import csr_names, slice_columns
from movierec.errors import ModelNotReady

# The per-movie arrays every model's candidates have, beside its own (``arrays``).
COMMON = ("movie_ids", "popularity", "popular_order", "movie_genres")
COLUMN_SLICED = ("ease_weights",)  # (n_items, n_items): a shard keeps its columns
CSR_COLUMN_SLICED = ("sansa_weights",)  # sparse (n_items, n_items), the same as three arrays
SLICE_CHUNK_BYTES = 64 << 20


def slice_arrays(
    common: Mapping[str, np.ndarray], arrays: Mapping[str, np.ndarray], rows: np.ndarray
) -> dict[str, np.ndarray]:
    """The slice ``rows`` (sorted positions) of the ``common`` and the model's ``arrays``, in
    memory, plus ``rows`` itself."""
    n = int(common["movie_ids"].shape[0])
    in_slice = np.zeros(n, dtype=bool)
    in_slice[rows] = True
    order = np.asarray(common["popular_order"])
    out = {
        "rows": rows,
        "movie_ids": np.asarray(common["movie_ids"][rows]),
        "popularity": np.asarray(common["popularity"][rows]),
        # Positions in the slice, most rated first, in the whole catalogue's tie order.
        "popular_order": np.searchsorted(rows, order[in_slice[order]]).astype(np.int32),
        "movie_genres": np.asarray(common["movie_genres"][rows]),
    }
    sparse = {name for prefix in CSR_COLUMN_SLICED for name in csr_names(prefix)}
    for name, array in arrays.items():
        if name not in sparse:
            out[name] = np.asarray(array[:, rows] if name in COLUMN_SLICED else array[rows])
    for prefix in CSR_COLUMN_SLICED:
        if f"{prefix}_indptr" in arrays:
            out |= slice_columns(arrays, prefix, rows, n)
    return out


def cached_slice(
    common: Mapping[str, np.ndarray],
    arrays: Mapping[str, np.ndarray],
    rows: np.ndarray,
    source: AnnIndex | None,
    target: Path,
) -> tuple[dict[str, np.ndarray], Path | None]:
    """Write the slice into ``target`` unless there, then map it; also the path of its ANN
    index when it has one. Raises :class:`OSError` (cannot write), :class:`ModelNotReady`
    (a damaged slice)."""
    if not target.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target.parent / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one worker writes, the others wait, then map
            if not target.is_dir():
                _write_slice(common, arrays, rows, source, target)
    out = {}
    for name in ("rows", *COMMON, *arrays):
        try:
            out[name] = mapped(target / f"{name}.npy")
        except (OSError, ValueError) as exc:
            raise ModelNotReady(f"shard slice {target} is damaged: {name}.npy: {exc}") from exc
    index_path = target / ANN_FILE
    return out, index_path if index_path.exists() else None


def _write_slice(common, arrays, rows: np.ndarray, source: AnnIndex | None, target: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        small = {name: arrays[name] for name in arrays if name not in COLUMN_SLICED}
        for name, array in slice_arrays(common, small, rows).items():
            np.save(tmp / f"{name}.npy", array, allow_pickle=False)
        for name in COLUMN_SLICED:
            if name in arrays:
                _write_columns(arrays[name], rows, tmp / f"{name}.npy")
        if source is not None:
            write_index(source.subset(rows), tmp / ANN_FILE)
        for path in tmp.iterdir():
            os.chmod(path, 0o644)
        os.chmod(tmp, 0o755)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_columns(matrix: np.ndarray, columns: np.ndarray, path: Path) -> None:
    """``matrix[:, columns]`` into a new ``.npy`` file, a block of rows at a time (a large
    EASE ``B`` does not fit in memory twice)."""
    out = np.lib.format.open_memmap(path, "w+", matrix.dtype, (matrix.shape[0], columns.size))
    step = max(1, SLICE_CHUNK_BYTES // max(1, matrix.shape[1] * matrix.itemsize))
    for start in range(0, matrix.shape[0], step):
        out[start : start + step] = np.asarray(matrix[start : start + step])[:, columns]
    out.flush()
    del out
