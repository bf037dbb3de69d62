"""Approximate top-k for factor models: a faiss IVF index of the item vectors, in the artifact.

Exact scoring reads every item vector per request (a million movies × 64 factors is 256 MB of
memory traffic, ~100 ms on one core). The index splits the items into ``nlist`` k-means cells
(about ``2·√n``) at train time; a query ranks the cell centroids, then scores only the items
of its ``nprobe`` best cells (``IndexIVFFlat`` keeps the raw vectors). The caller re-scores the
few it gets back with the model's own formula, so scores are the exact scores of those items.
``bench/bench_ann.py`` measures recall@10 against exact scoring.

What is indexed, so that the inner product ranks like the model:

* ALS: item factors ``y_i``; the query is the user's folded-in vector ``x``: ``score = x·y_i``.
* SVD (any factor model): ``[q_i, b_i]`` against ``[p_u, 1]``, so ``q_i·p_u + b_i`` is the
  estimate ``μ + b_u + b_i + q_i·p_u`` less ``μ + b_u``, which is the same for every movie of
  one user. NMF (no biases) indexes ``q_i`` alone.

The largest inner product is turned into the nearest neighbour (Bachrach et al. 2014, the
Xbox recommender): every vector ``v`` gets one more coordinate ``√(M² − |v|²)`` (``M`` the
largest norm) and queries a ``0``, so ``|q − v|² = |q|² + M² − 2 q·v``. k-means in that space
makes cells that suit inner products better than clustering the raw vectors (recall@10 0.90
instead of 0.82 at the same ``nprobe`` on an ALS model in our tests).

The index is written beside the ``.npy`` arrays (``ann.faiss``) and opened memory-mapped and
read-only (``IO_FLAG_MMAP``, which serves the lists as ``OnDiskInvertedLists``): its pages
belong to the page cache, shared by every gunicorn worker like the arrays. Searches run on
the calling thread (faiss's OpenMP team is set to one thread per request thread), so
gunicorn's threads are the only parallelism.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from movierec.errors import ModelNotReady, first_line

ANN_FILE = "ann.faiss"
MIN_ITEMS = 100_000  # the ann_min_items setting's default: exact scoring up to here
NPROBE = 32  # the ann_nprobe setting's default
POINTS_PER_LIST = 64  # k-means training sample per cell (faiss wants at least 39)
KMEANS_ITERATIONS = 12
ANN_FORMS = ("factors", "als", "sansaals")

_thread = threading.local()


def n_lists(n_items: int) -> int:
    """Cells for ``n_items`` vectors: ``2·√n``, but at least 39 training points per cell."""
    return max(1, min(round(2 * math.sqrt(n_items)), n_items // 39))


def item_vectors(form: str, arrays: Mapping[str, np.ndarray], biased: bool) -> np.ndarray | None:
    """The vectors to index for an artifact's ``form``, or None when it has none (EASE,
    popularity, KNN, or a model without factors such as BaselineOnly)."""
    if form not in ANN_FORMS or arrays["item_factors"].shape[1] == 0:
        return None
    factors = np.asarray(arrays["item_factors"], dtype=np.float32)
    if form == "factors" and biased:
        bias = np.asarray(arrays["item_bias"], dtype=np.float32)[:, None]
        return np.ascontiguousarray(np.hstack([factors, bias]))
    return np.ascontiguousarray(factors)


def augment(vectors: np.ndarray) -> np.ndarray:
    """``[v, √(M² − |v|²)]``: every row gets the norm ``M``, the largest of ``vectors``."""
    norms2 = np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64)
    extra = np.sqrt(np.maximum(norms2.max(initial=0.0) - norms2, 0.0)).astype(np.float32)
    return np.ascontiguousarray(np.hstack([vectors, extra[:, None]]), dtype=np.float32)


def build_index(vectors: np.ndarray, seed: int = 0) -> faiss.IndexIVFFlat:
    """An IVF index of ``vectors`` for the largest inner product (row ``i`` gets id ``i``)."""
    vectors = augment(np.asarray(vectors, dtype=np.float32))
    n, d = vectors.shape
    quantizer = faiss.IndexFlatL2(d)
    index = faiss.IndexIVFFlat(quantizer, d, n_lists(n), faiss.METRIC_L2)
    index.cp.seed = seed
    index.cp.niter = KMEANS_ITERATIONS
    index.cp.max_points_per_centroid = POINTS_PER_LIST
    index.train(vectors)
    index.add(vectors)
    return index


def write_index(index: faiss.Index, path: Path) -> None:
    faiss.write_index(index, str(path))


def describe(index: faiss.IndexIVFFlat, seconds: float) -> dict[str, Any]:
    """What meta.json records about an index."""
    return {
        "file": ANN_FILE, "kind": "IVFFlat", "metric": "inner product (as L2, augmented)",
        "n": int(index.ntotal), "dim": int(index.d) - 1, "nlist": int(index.nlist),
        "build_seconds": round(seconds, 3),
    }  # fmt: skip


def _selector(blocked: np.ndarray | None, allowed: np.ndarray | None):
    """A faiss selector keeping ids not in ``blocked`` and set in the packed bitmap
    ``allowed``; returns it with the objects it points into (kept alive by the caller)."""
    keep: list[Any] = []
    selector = None
    if blocked is not None and blocked.size:
        ids = np.ascontiguousarray(blocked, dtype=np.int64)
        batch = faiss.IDSelectorBatch(ids.size, faiss.swig_ptr(ids))
        selector = faiss.IDSelectorNot(batch)
        keep += [ids, batch]
    if allowed is not None:
        bitmap = faiss.IDSelectorBitmap(allowed.size, faiss.swig_ptr(allowed))
        keep += [allowed, bitmap]
        if selector is not None:
            keep.append(selector)
            selector = faiss.IDSelectorAnd(selector, bitmap)
        else:
            selector = bitmap
    return selector, keep


def pack(mask: np.ndarray) -> np.ndarray:
    """A boolean mask as faiss's bitmap (bit ``i % 8`` of byte ``i // 8``)."""
    return np.packbits(mask, bitorder="little")


class AnnIndex:
    """A read-only IVF index over one candidate space (ids are candidate positions)."""

    def __init__(self, index: faiss.IndexIVFFlat, path: Path | None = None, nprobe: int = NPROBE):
        self.index = index
        self.path = path
        self.nprobe = max(1, min(nprobe, int(index.nlist)))
        self.radius = self._radius()

    def _radius(self) -> float:
        """``M``: every stored (augmented) vector has this norm."""
        lists = self.index.invlists
        for cell in range(int(self.index.nlist)):
            if lists.list_size(cell):
                first = faiss.rev_swig_ptr(lists.get_codes(cell), self.index.d * 4)
                return float(np.linalg.norm(first.view(np.float32)))
        return 1.0

    @classmethod
    def open(cls, path: Path, nprobe: int = NPROBE) -> AnnIndex:
        """Memory-map ``path`` read-only. Raises :class:`ModelNotReady` when unreadable."""
        try:
            index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
        except RuntimeError as exc:
            raise ModelNotReady(f"ANN index {path} is damaged: {first_line(exc)}") from exc
        if not isinstance(index, faiss.IndexIVFFlat):
            raise ModelNotReady(f"ANN index {path} is a {type(index).__name__}, not IVFFlat")
        lists = faiss.downcast_InvertedLists(index.invlists)
        if isinstance(lists, faiss.OnDiskInvertedLists):
            # Mapped lists would otherwise start 32 prefetch threads per search (30x slower
            # than the search itself); the pages are in the page cache anyway.
            lists.prefetch_nthread = 0
        return cls(index, path, nprobe)

    @property
    def n(self) -> int:
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        """The length of the vectors searched (without the added coordinate)."""
        return int(self.index.d) - 1

    def _query(self, query: np.ndarray) -> np.ndarray:
        x = np.zeros((1, self.index.d), dtype=np.float32)
        x[0, : query.shape[0]] = query
        return x

    def search(
        self,
        query: np.ndarray,
        k: int,
        blocked: np.ndarray | None = None,
        allowed: np.ndarray | None = None,
    ) -> np.ndarray:
        """Positions of the ``k`` items with the largest inner product with ``query`` among
        the probed cells (best first), skipping ``blocked`` positions and those unset in the
        packed bitmap ``allowed``; fewer than ``k`` when the cells hold fewer eligible ones."""
        _one_thread()
        params = faiss.SearchParametersIVF()
        params.nprobe = self.nprobe
        selector, _keep = _selector(blocked, allowed)
        if selector is not None:
            params.sel = selector
        _, ids = self.index.search(self._query(query), k, params=params)
        return ids[0][ids[0] >= 0].astype(np.int64)

    def probe(self, query: np.ndarray) -> np.ndarray:
        """Every position in the ``nprobe`` cells nearest the direction of ``query`` (for
        re-scoring, e.g. by cosine)."""
        _one_thread()
        norm = float(np.linalg.norm(query))
        x = self._query(np.asarray(query, dtype=np.float32) * (self.radius / max(norm, 1e-12)))
        _, cells = self.index.quantizer.search(x, self.nprobe)
        lists = self.index.invlists
        parts = []
        for cell in cells[0].tolist():
            size = lists.list_size(cell) if cell >= 0 else 0
            if size:
                parts.append(faiss.rev_swig_ptr(lists.get_ids(cell), size).copy())
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)

    def subset(self, rows: np.ndarray) -> faiss.IndexIVFFlat:
        """A new index (same cells) of the items at sorted positions ``rows`` only, renumbered
        ``0..len(rows)-1``: a shard's slice, without training k-means again."""
        nlist, d = int(self.index.nlist), int(self.index.d)
        quantizer = faiss.IndexFlatL2(d)
        quantizer.add(self.index.quantizer.reconstruct_n(0, nlist))
        out = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_L2)
        lists, code_size = self.index.invlists, int(self.index.invlists.code_size)
        total = 0
        for cell in range(nlist if rows.size else 0):
            size = lists.list_size(cell)
            if not size:
                continue
            ids = faiss.rev_swig_ptr(lists.get_ids(cell), size)
            codes = faiss.rev_swig_ptr(lists.get_codes(cell), size * code_size)
            pos = np.minimum(np.searchsorted(rows, ids), rows.size - 1)
            keep = rows[pos] == ids
            if not keep.any():
                continue
            new_ids = np.ascontiguousarray(pos[keep], dtype=np.int64)
            new_codes = np.ascontiguousarray(codes.reshape(size, code_size)[keep])
            out.invlists.add_entries(
                cell, new_ids.size, faiss.swig_ptr(new_ids), faiss.swig_ptr(new_codes)
            )
            total += new_ids.size
        out.ntotal = total
        out.referenced_objects = [quantizer]
        return out


def _one_thread() -> None:
    """faiss's OpenMP team size is per thread: set it once on each request thread."""
    if not getattr(_thread, "set", False):
        faiss.omp_set_num_threads(1)
        _thread.set = True
