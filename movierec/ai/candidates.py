"""The movies a loaded model scores: the whole catalogue, or one shard's slice of it.

:class:`Candidates` answers what every model's ``recommend`` and ``similar`` need of them:
masks (a shard's movies, a genre's), the ANN and exact top-k searches, and the most rated
movies for a fallback. A shard (:mod:`movierec.ai.shard`) is kept two ways:

* per request (``/recommend?...&shard=i&shards=n``) on a server holding the whole model: the
  model scores as usual and only the shard's movies may be picked (:meth:`Candidates.shard_mask`);
* a server started for one shard keeps only its slice (:meth:`Candidates.slice`, persisted by
  :mod:`movierec.ai.slices`); the full arrays stay mapped for what is looked up by any movie
  (a user's rated movies in a fold-in, the query movie of ``/similar``, ``/predict``) and are
  only touched there. When the artifact directory is not writable the slice is built in each
  worker's memory instead.

**Hot data.** The popularity fallback lists are cached per (genres, demoted genres, shard).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from cachetools import LRUCache

from movierec.ai.ann import ANN_FILE, AnnIndex, pack
from movierec.ai.ids import dense_index
from movierec.ai.shard import Shard
from movierec.ai.slices import COMMON, cached_slice, slice_arrays
from movierec.ai.stats import COUNTERS
from movierec.ai.topk import top_k
from movierec.errors import BadInput

log = logging.getLogger(__name__)

POPULAR_DEPTH = 512  # a cached fallback list holds this many movies per genre set


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

    def _common(self) -> dict[str, np.ndarray]:
        return {
            "movie_ids": self.movie_ids,
            "popularity": self.popularity,
            "popular_order": self.popular_order,
            "movie_genres": self.movie_genres,
        }

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
                arrays, index_path = cached_slice(self._common(), self.arrays, rows, source, target)
            except OSError as exc:
                log.warning("cannot write shard %s slice in %s (%s); keeping it in memory",
                            shard, target, exc)  # fmt: skip
        if arrays is None:
            arrays = slice_arrays(self._common(), self.arrays, rows)
        ann = None
        if self.ann is not None and source is not None:
            if index_path is not None:
                ann = AnnIndex.open(index_path, self.ann.nprobe)
            else:
                ann = AnnIndex(source.subset(rows), None, self.ann.nprobe)
        return Candidates(
            *(arrays[name] for name in COMMON),
            {name: arrays[name] for name in self.arrays},
            ann=ann, shard=shard, rows=arrays["rows"],
        )  # fmt: skip
