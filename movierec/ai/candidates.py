"""The movies a loaded model scores: the whole catalogue, or one shard's slice of it.

**Shards.** Shard ``i`` of ``n`` holds the movies with ``movie_id % n == i``. The rule needs no
table, is the same on every server and on the web side (which merges the shards' answers), and
spreads old and new, popular and obscure movies evenly. Scores do not depend on the shard: it
is the same model and the same scoring, restricted to fewer movies, so the merge by score of
every shard's top-k is the unsharded top-k. Two ways to use it:

* per request (``/recommend?...&shard=i&shards=n``) on a server holding the whole model: the
  model scores as usual and only the shard's movies may be picked;
* a server started for one shard (setting ``ai_shard = "i/n"``) keeps only its slice: the
  per-movie arrays it scores (SVD/ALS item factors, biases and norms; EASE's columns
  ``B[:, slice]``, SANSA's sparse columns; ids, popularity, genres) and an ANN index of the
  slice (the full index's cells, filtered: no k-means again). The slice is written once into
  ``<artifact>/shards/<i>-of-<n>/`` (under a file lock, renamed into place when complete) and
  memory-mapped, so every worker of the instance shares it; the full arrays stay mapped for
  what is looked up by any movie (a user's rated movies in a fold-in, the query movie of
  ``/similar``, ``/predict``) and are only touched there. When the artifact directory is not
  writable the slice is built in each worker's memory instead.

**Hot data.** The popularity fallback lists are cached per (genres, demoted genres, shard), and
:class:`HotRows` keeps the vectors of the most rated movies (the ones users rate, so the ones
fold-ins read) in process memory, within a byte budget.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from cachetools import LRUCache

from movierec.ai.ann import ANN_FILE, AnnIndex, pack, write_index
from movierec.ai.artifact import mapped
from movierec.ai.dataset import dense_index
from movierec.ai.sparse_weights import csr_names, slice_columns
from movierec.ai.stats import COUNTERS
from movierec.errors import BadInput, ModelNotReady
from movierec.wire.recommender import MAX_SHARDS

log = logging.getLogger(__name__)

SHARD_PATTERN = re.compile(r"^\s*(\d{1,4})\s*/\s*(\d{1,4})\s*$")
COLUMN_SLICED = ("ease_weights",)  # (n_items, n_items): a shard keeps its columns
CSR_COLUMN_SLICED = ("sansa_weights",)  # sparse (n_items, n_items), the same as three arrays
POPULAR_DEPTH = 512  # a cached fallback list holds this many movies per genre set
SLICE_CHUNK_BYTES = 64 << 20


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``: the movies with ``movie_id % count == index``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not (1 <= self.count <= MAX_SHARDS and 0 <= self.index < self.count):
            raise BadInput(f"shard must be i/n with 0 <= i < n <= {MAX_SHARDS}, not {self}")

    @classmethod
    def parse(cls, text: str | None) -> Shard | None:
        """``"i/n"`` as a shard, ``""`` or None as none. Raises :class:`BadInput`."""
        if not text or not text.strip():
            return None
        found = SHARD_PATTERN.match(text)
        if not found:
            raise BadInput(f"shard must be written i/n (e.g. 0/4), not {text!r}")
        return cls(int(found[1]), int(found[2]))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def mask(self, movie_ids: np.ndarray) -> np.ndarray:
        return np.asarray(movie_ids) % self.count == self.index


def weighted_row_sum(matrix: np.ndarray, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``weights @ matrix[rows]`` (a user's scores from their signals' rows of ``B``), in the
    matrix's dtype, reading the rows where they lie: gathering a hundred rows of a large ``B``
    first cost more than the sum itself.

    Through a one-row sparse product, which adds row after row (in the order of ``rows``)
    into each column: a column's sum does not depend on which other columns there are, so a
    shard holding some of the columns scores them exactly as the whole model does (BLAS's
    gemv blocks the sum differently for a different width)."""
    if not matrix.flags.c_contiguous:  # the product would copy all of it
        matrix, rows = np.ascontiguousarray(matrix[rows]), np.arange(len(rows))
    query = sp.csr_matrix(
        (weights, np.asarray(rows), np.array([0, len(rows)])), shape=(1, matrix.shape[0])
    )
    return np.asarray(query @ matrix).ravel()


class HotRows:
    """Rows of a (memory-mapped) matrix, the most popular ones copied into process memory.

    ``rows[idx]`` gathers rows like the matrix would; hot ones come from the copy (no page
    fault, no page-cache eviction risk). The copy holds the first rows of ``order`` that fit
    in ``budget`` bytes.
    """

    def __init__(self, matrix: np.ndarray, order: np.ndarray, budget: int):
        self.matrix = matrix
        row_bytes = max(1, int(np.prod(matrix.shape[1:], dtype=np.int64)) * matrix.itemsize)
        n_hot = int(min(len(order), max(0, budget) // row_bytes))
        self.ids = np.sort(np.asarray(order[:n_hot], dtype=np.int64))
        self.rows = np.ascontiguousarray(matrix[self.ids]) if n_hot else None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.matrix.shape

    @property
    def nbytes(self) -> int:
        return 0 if self.rows is None else int(self.rows.nbytes)

    def __getitem__(self, idx) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.int64)
        if self.rows is None or idx.ndim != 1:
            return np.asarray(self.matrix[idx])
        pos, hot = self._lookup(idx)
        if hot.all():
            return self.rows[pos]
        out = np.empty((idx.size, *self.matrix.shape[1:]), dtype=self.matrix.dtype)
        out[hot] = self.rows[pos[hot]]
        out[~hot] = self.matrix[idx[~hot]]
        return out

    def weighted_sum(self, idx: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """``weights @ self[idx]`` (see :func:`weighted_row_sum`) without gathering the rows:
        from the copy when all of them are in it."""
        pos = self._all_hot(idx)
        if pos is None:
            return weighted_row_sum(self.matrix, idx, weights)
        return weighted_row_sum(self.rows, pos, weights)

    def block(self, idx: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """``self[idx][:, columns]``, reading only those cells."""
        pos = self._all_hot(idx)
        if pos is None:
            return np.asarray(self.matrix[np.ix_(idx, columns)])
        return self.rows[np.ix_(pos, columns)]

    def _all_hot(self, idx: np.ndarray) -> np.ndarray | None:
        """The copy's positions of rows ``idx`` when it holds them all."""
        if self.rows is None:
            return None
        pos, hot = self._lookup(np.asarray(idx, dtype=np.int64))
        return pos if hot.all() else None

    def _lookup(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where each of ``idx`` would be in the copy, and whether it is there (counted)."""
        pos = np.minimum(np.searchsorted(self.ids, idx), self.ids.size - 1)
        hot = self.ids[pos] == idx
        n_hot = int(hot.sum())
        COUNTERS.add("movierec_recommender_cache_hits_total", n_hot, cache="hot_rows")
        COUNTERS.add("movierec_recommender_cache_misses_total", idx.size - n_hot, cache="hot_rows")
        return pos, hot


class Candidates:
    """The movies one model object scores. Position ``p`` is the model's dense movie index
    ``rows[p]`` (the identity for the whole catalogue); ``arrays`` hold the per-movie arrays
    of the form (item factors, biases, norms, EASE columns) in this order."""

    def __init__(
        self,
        movie_ids: np.ndarray,
        popularity: np.ndarray,
        popular_order: np.ndarray,
        movie_genres: np.ndarray,
        arrays: Mapping[str, np.ndarray],
        ann: AnnIndex | None = None,
        shard: Shard | None = None,
        rows: np.ndarray | None = None,
    ):
        self.movie_ids, self.popularity = movie_ids, popularity
        self.popular_order, self.movie_genres = popular_order, movie_genres
        self.arrays = dict(arrays)
        self.ann = ann
        self.shard = shard
        self.rows = rows
        self._lock = threading.Lock()
        self._masks: LRUCache = LRUCache(maxsize=32)
        self._popular: LRUCache = LRUCache(maxsize=256)

    @property
    def n(self) -> int:
        return int(self.movie_ids.shape[0])

    def positions(self, movie_ids: Iterable[int]) -> np.ndarray:
        """Positions of those ``movie_ids`` that are candidates (others are dropped)."""
        return dense_index(self.movie_ids, movie_ids)

    def from_full(self, full: np.ndarray) -> np.ndarray:
        """Positions of the model's dense indices ``full`` that are candidates."""
        full = np.asarray(full, dtype=np.int64)
        if self.rows is None or full.size == 0:
            return full
        pos = np.minimum(np.searchsorted(self.rows, full), self.rows.size - 1)
        return pos[self.rows[pos] == full]

    def _cached_mask(self, key: Hashable, make) -> np.ndarray:
        with self._lock:
            found = self._masks.get(key)
        if found is None:
            found = make()
            with self._lock:
                self._masks[key] = found
        return found

    def shard_mask(self, shard: Shard | None) -> np.ndarray | None:
        """Which candidates belong to ``shard`` (None: all of them).

        Raises :class:`BadInput` when these candidates are a different shard's slice.
        """
        if shard is None or shard == self.shard:
            return None
        if self.shard is not None:
            raise BadInput(f"this server holds shard {self.shard} only, not {shard}")
        return self._cached_mask(("shard", shard), lambda: shard.mask(self.movie_ids))

    def genre_mask(self, columns: Sequence[int]) -> np.ndarray:
        """Candidates in any of the genre ``columns``."""
        key = ("genres", tuple(columns))
        return self._cached_mask(
            key, lambda: np.asarray(self.movie_genres[:, list(columns)]).any(axis=1)
        )

    def _bitmap(self, shard: Shard | None, demoted: Sequence[int], low: bool) -> np.ndarray | None:
        mask = self.shard_mask(shard)
        if not demoted and mask is None:
            return None
        shard = None if mask is None else shard

        def make() -> np.ndarray:
            keep = np.ones(self.n, dtype=bool) if mask is None else mask.copy()
            if demoted:
                keep &= self.genre_mask(demoted) if low else ~self.genre_mask(demoted)
            return pack(keep)

        return self._cached_mask(("bitmap", shard, tuple(demoted), low), make)

    def ann_top(
        self,
        query: np.ndarray,
        k: int,
        blocked: np.ndarray,
        shard: Shard | None,
        score: Callable[[np.ndarray], np.ndarray],
        demoted: Sequence[int] = (),
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """ANN top-``k`` by inner product with ``query``: positions, their ``score(positions)``
        (the model's exact scores, best first) and how many at the end are of ``demoted``
        genres (searched only when the others are fewer than ``k``)."""
        assert self.ann is not None
        COUNTERS.add("movierec_recommender_scored_total", method="ann")
        parts = [self.ann.search(query, k, blocked, self._bitmap(shard, demoted, False))]
        if demoted and parts[0].size < k:
            parts.append(
                self.ann.search(
                    query, k - parts[0].size, blocked, self._bitmap(shard, demoted, True)
                )
            )
        ordered, values = [], []
        for pos in parts:
            scores = np.asarray(score(pos), dtype=np.float64)
            order = np.lexsort((pos, -scores))
            ordered.append(pos[order])
            values.append(scores[order])
        n_low = parts[1].size if len(parts) > 1 else 0
        return np.concatenate(ordered), np.concatenate(values), n_low

    def cosine_top(
        self, query: np.ndarray, k: int, skip: np.ndarray, shard: Shard | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` candidates whose ``item_factors`` have the highest cosine with ``query``
        (not ``skip``): over the ANN's probed cells when there is an index, else all."""
        factors, norms = self.arrays["item_factors"], self.arrays["item_norms"]
        tiny = np.float32(1e-12)
        query = np.asarray(query, dtype=np.float32)
        q_norm = max(float(np.linalg.norm(query)), float(tiny))
        mask = self.shard_mask(shard)
        if self.ann is not None:
            COUNTERS.add("movierec_recommender_scored_total", method="ann")
            pos = np.sort(self.ann.probe(query))
            pos = pos[~np.isin(pos, skip)]
            if mask is not None:
                pos = pos[mask[pos]]
            sims = np.asarray(factors[pos]) @ query / (np.maximum(norms[pos], tiny) * q_norm)
            order = np.lexsort((pos, -sims))[:k]
            return pos[order], sims[order]
        COUNTERS.add("movierec_recommender_scored_total", method="exact")
        sims = np.asarray(factors @ query)
        sims /= np.maximum(norms, tiny) * np.float32(q_norm)
        sims[skip] = -np.inf
        if mask is not None:
            sims[~mask] = -np.inf
        top = top_k(sims, k)
        return top, sims[top]

    def most_rated(
        self,
        k: int,
        excluded: set[int],
        columns: Sequence[int] = (),
        demoted: Sequence[int] = (),
        shard: Shard | None = None,
    ) -> list[int]:
        """The ``k`` most rated candidates (of the genre ``columns`` when given, of ``shard``),
        not ``excluded``; those of ``demoted`` genres after all others. The first
        :data:`POPULAR_DEPTH` of each list are cached."""
        mask = self.shard_mask(shard)
        key = (tuple(columns), tuple(demoted), None if mask is None else shard)
        with self._lock:
            entry = self._popular.get(key)
        if entry is None:
            COUNTERS.add("movierec_recommender_cache_misses_total", cache="popular")
            entry = self._walk(max(POPULAR_DEPTH, k), set(), columns, demoted, mask)
            with self._lock:
                self._popular[key] = entry
        else:
            COUNTERS.add("movierec_recommender_cache_hits_total", cache="popular")
        picked, later, exhausted = entry
        mine = [i for i in picked if i not in excluded]
        if len(mine) >= k:
            return mine[:k]
        if exhausted:
            return (mine + [i for i in later if i not in excluded])[:k]
        picked, later, _ = self._walk(k, excluded, columns, demoted, mask)
        return (picked + later)[:k]

    def popular_entries(self) -> int:
        return len(self._popular)

    def _walk(self, limit, excluded, columns, demoted, mask) -> tuple[list[int], list[int], bool]:
        # Walk the popularity order in growing blocks: a common genre fills the list from the
        # first block, a rare one reads further, and nobody sorts the whole catalogue.
        picked: list[int] = []
        later: list[int] = []
        start, block = 0, max(256, 4 * limit)
        while start < self.n and len(picked) < limit:
            chunk = np.asarray(self.popular_order[start : start + block])
            start, block = start + block, block * 2
            if mask is not None:
                chunk = chunk[mask[chunk]]
            if columns:
                chunk = chunk[np.asarray(self.movie_genres[chunk][:, list(columns)]).any(axis=1)]
            low = (
                np.asarray(self.movie_genres[chunk][:, list(demoted)]).any(axis=1)
                if demoted
                else np.zeros(chunk.size, dtype=bool)
            )
            for idx, is_low in zip(chunk.tolist(), low.tolist(), strict=True):
                if idx in excluded:
                    continue
                (later if is_low else picked).append(idx)
                if len(picked) == limit:
                    break
        return picked, later, start >= self.n and len(picked) < limit

    # --- a shard's slice ------------------------------------------------------------------------

    def slice(self, shard: Shard, directory: Path | None = None) -> Candidates:
        """These candidates restricted to ``shard``, written into (and mapped from)
        ``directory/shards/<i>-of-<n>/`` when given and writable, else held in memory.

        The ANN index of the slice is derived from ``directory/ann.faiss`` when it exists;
        it is searched when this object searches one. Raises :class:`BadInput` when these
        candidates are already a slice.
        """
        if self.rows is not None:
            raise BadInput(f"candidates are already shard {self.shard}; cannot re-shard")
        rows = np.flatnonzero(shard.mask(self.movie_ids)).astype(np.int64)
        full_index = directory / ANN_FILE if directory is not None else None
        source = self.ann
        if source is None and full_index is not None and full_index.exists():
            source = AnnIndex.open(full_index)  # to derive the slice's index for later servers
        arrays: dict[str, np.ndarray] | None = None
        index_path: Path | None = None
        if directory is not None:
            target = directory / "shards" / f"{shard.index}-of-{shard.count}"
            try:
                arrays, index_path = _cached_slice(self, rows, source, target)
            except OSError as exc:
                log.warning("cannot write shard %s slice in %s (%s); keeping it in memory",
                            shard, target, exc)  # fmt: skip
        if arrays is None:
            arrays = _slice_arrays(self, rows)
        ann = None
        if self.ann is not None and source is not None:
            if index_path is not None:
                ann = AnnIndex.open(index_path, self.ann.nprobe)
            else:
                ann = AnnIndex(source.subset(rows), None, self.ann.nprobe)
        common = ("movie_ids", "popularity", "popular_order", "movie_genres")
        return Candidates(
            *(arrays[name] for name in common),
            {name: arrays[name] for name in self.arrays},
            ann=ann, shard=shard, rows=arrays["rows"],
        )  # fmt: skip


class ServesCandidates:
    """What every served model has from its :class:`Candidates` (``self._cand``) and its
    genre index (``self._genre_column``: lower-cased genre name -> column)."""

    _cand: Candidates
    _genre_column: Mapping[str, int]

    @property
    def shard(self) -> Shard | None:
        """The shard this object keeps (None: the whole catalogue)."""
        return self._cand.shard

    @property
    def ann(self) -> AnnIndex | None:
        return self._cand.ann

    def _genre_columns(self, genres: Iterable[str]) -> list[int]:
        return [
            self._genre_column[g.casefold()] for g in genres if g.casefold() in self._genre_column
        ]

    def in_genres(self, movie_ids: Sequence[int], genres: Sequence[str]) -> list[bool]:
        """Per movie of ``movie_ids`` (movies this model answered), whether it is of any of
        ``genres``."""
        columns = self._genre_columns(genres)
        if not columns:
            return [False] * len(movie_ids)
        return self._cand.genre_mask(columns)[self._cand.positions(movie_ids)].tolist()


def check_k(k: int) -> int:
    """``k`` as an int. Raises :class:`BadInput` unless it is a positive integer."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise BadInput(f"k must be a positive integer, not {k!r}")
    return int(k)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest finite scores, best first (ties: lower index); -inf marks
    excluded items."""
    k = min(k, int(np.count_nonzero(np.isfinite(scores))))
    if k == 0:
        return np.empty(0, dtype=np.int64)
    top = np.argpartition(-scores, k - 1)[:k] if k < scores.size else np.arange(k)
    return top[np.lexsort((top, -scores[top]))]


def _slice_arrays(full: Candidates, rows: np.ndarray) -> dict[str, np.ndarray]:
    in_slice = np.zeros(full.n, dtype=bool)
    in_slice[rows] = True
    order = np.asarray(full.popular_order)
    out = {
        "rows": rows,
        "movie_ids": np.asarray(full.movie_ids[rows]),
        "popularity": np.asarray(full.popularity[rows]),
        # Positions in the slice, most rated first, in the whole catalogue's tie order.
        "popular_order": np.searchsorted(rows, order[in_slice[order]]).astype(np.int32),
        "movie_genres": np.asarray(full.movie_genres[rows]),
    }
    sparse = {name for prefix in CSR_COLUMN_SLICED for name in csr_names(prefix)}
    for name, array in full.arrays.items():
        if name not in sparse:
            out[name] = np.asarray(array[:, rows] if name in COLUMN_SLICED else array[rows])
    for prefix in CSR_COLUMN_SLICED:
        if f"{prefix}_indptr" in full.arrays:
            out |= slice_columns(full.arrays, prefix, rows, full.n)
    return out


def _cached_slice(
    full: Candidates, rows: np.ndarray, source: AnnIndex | None, target: Path
) -> tuple[dict[str, np.ndarray], Path | None]:
    """Write the slice into ``target`` unless there, then map it. Raises :class:`OSError`."""
    if not target.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target.parent / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one worker writes, the others wait, then map
            if not target.is_dir():
                _write_slice(full, rows, source, target)
    arrays = {}
    for name in ("rows", "movie_ids", "popularity", "popular_order", "movie_genres", *full.arrays):
        try:
            arrays[name] = mapped(target / f"{name}.npy")
        except (OSError, ValueError) as exc:
            raise ModelNotReady(f"shard slice {target} is damaged: {name}.npy: {exc}") from exc
    index_path = target / ANN_FILE
    return arrays, index_path if index_path.exists() else None


def _write_slice(full: Candidates, rows: np.ndarray, source: AnnIndex | None, target: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        small = {name: full.arrays[name] for name in full.arrays if name not in COLUMN_SLICED}
        view = Candidates(
            full.movie_ids, full.popularity, full.popular_order, full.movie_genres, small
        )
        for name, array in _slice_arrays(view, rows).items():
            np.save(tmp / f"{name}.npy", array, allow_pickle=False)
        for name in COLUMN_SLICED:
            if name in full.arrays:
                _write_columns(full.arrays[name], rows, tmp / f"{name}.npy")
        if source is not None:
            write_index(source.subset(rows), tmp / ANN_FILE)
        for path in tmp.iterdir():
            os.chmod(path, 0o644)
        os.chmod(tmp, 0o755)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_columns(matrix: np.ndarray, columns: np.ndarray, path: Path) -> None:
    """``matrix[:, columns]`` into a new ``.npy`` file, a block of rows at a time."""
    out = np.lib.format.open_memmap(path, "w+", matrix.dtype, (matrix.shape[0], columns.size))
    step = max(1, SLICE_CHUNK_BYTES // max(1, matrix.shape[1] * matrix.itemsize))
    for start in range(0, matrix.shape[0], step):
        out[start : start + step] = np.asarray(matrix[start : start + step])[:, columns]
    out.flush()
    del out
