"""SANSA (Spišák et al., RecSys 2023, "Scalable Approximate NonSymmetric Autoencoder"): EASE
whose item-item matrix stays sparse, through the ``sansa`` library.

EASE's ``B = I - P / diag(P)`` with ``P = (XᵀX + λI)⁻¹`` is dense ``n²``; SANSA factors
``XᵀX + λI ≈ L D Lᵀ`` sparsely (Cholesky after a fill-reducing ordering, then pruned to
``factor_weights`` per movie, or incomplete) and inverts ``L`` approximately, which gives
``B ≈ E · D'`` with two sparse factors. Served is their product with each row pruned to its
``weights_per_movie`` largest weights in magnitude (:func:`pruned_product`): one sparse ``B``
read like EASE's, ``q · B``, one row per signal. Serving the two factors instead reached 71 %
of ml-latest-small per user through their two hops and cost 15.6 ms per recommendation
against 1.3 ms for the dense blend (bench_large_catalogue.py --only latency, before this
change); the product pruned to 200 per row cost 0.4 % and 0.2 % of NDCG@10 in the blend
(0.4957 against 0.4978 on ml-100k, 0.1306 against 0.1309 on ml-latest-small) and 3.9 ms. Memory
is linear in the catalogue: a million movies at 200 weights are 200M entries (1.6 GB).

**Collective rows.** Fitted on the user-item matrix stacked with collective EASE's weighted
pseudo-user rows (:func:`movierec.ai.algorithms.ease.side_rows`): sessions, liked movies and
time windows by default. Genre and decade rows are off (weight 0): one such row links every
movie of its genre with every other, which makes ``XᵀX`` dense and the sparse factorisation
as costly as EASE's (measured on ml-latest-small: fit 240 s instead of 31 s, and NDCG@10 0.111
instead of 0.131 with 100 weights per movie in the factors, the pruning losing more than
those rows add).

Measured numbers: BENCHMARKS.md, "Large catalogues".
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from importlib import metadata
from typing import Any

import numpy as np
import scipy.sparse as sp

from movierec.ai.algorithms.base import RANKING, Algorithm, Fitted, Param, positive
from movierec.ai.algorithms.ease import BLOCK_WEIGHTS, EASE_PARAMS, side_rows
from movierec.ai.dataset import RatingsData, user_item_matrix
from movierec.ai.folding import signal_weights
from movierec.ai.sparse_weights import csr_arrays
from movierec.errors import BadInput

FACTORIZERS = ("icf", "cholmod")
# Collective EASE's parameters, less its dense-size guard, and with the rows that densify the
# Gram matrix off (module docstring).
SANSA_PARAMS = (
    *(
        replace(p, default=0.0) if p.name in ("genre_weight", "decade_weight") else p
        for p in EASE_PARAMS
        if p.name != "max_items"
    ),
    Param("factor_weights", float, 100.0, "weights per movie in each factor", positive, "> 0"),
    Param("weights_per_movie", int, 200, "served weights per movie (B's row)", positive, "> 0"),
    Param(
        "factorizer",
        str,
        "cholmod",
        "icf (incomplete, scales) or cholmod (exact, then pruned)",
        lambda v: v in FACTORIZERS,
        " or ".join(FACTORIZERS),
    ),  # fmt: skip
)
WEIGHTS = "sansa_weights"
PRODUCT_ROWS = 1024  # rows of E · D multiplied (then pruned) at a time


def augmented_matrix(
    data: RatingsData, rows: np.ndarray | None, params: Mapping[str, Any]
) -> sp.csr_matrix:
    """The binary user-item matrix stacked with the weighted side rows: its Gram matrix is
    collective EASE's (:func:`movierec.ai.algorithms.ease.collective_gram`)."""
    parts = [user_item_matrix(data, rows, "binary").astype(np.float32)]
    for name, block in side_rows(data, rows, params).items():
        if block.nnz:
            parts.append(block.astype(np.float32) * float(params[BLOCK_WEIGHTS[name]]))
    return sp.vstack(parts, format="csr")


def _sansa_module():
    """The ``sansa`` package, imported on first use (it pulls numba and CHOLMOD, which servers
    never need) and without the root log handler it installs on import (``basicConfig`` at
    INFO would print every library's progress on the CLI's stderr)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    import sansa

    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    logging.getLogger("sansa").setLevel(logging.ERROR)
    return sansa


@contextmanager
def _heap_frozen() -> Iterator[None]:
    """Objects that live before the fit are kept out of the garbage collector's walks while it
    runs. ``sansa`` calls ``gc.collect()`` between its steps (14 times per fit), and each full
    collection walks every object of the process: in a test process with the suite's imports
    that was 0.6 s a call, 18 s of a 21 s fit of 60 users × 40 movies. ``gc.freeze`` (made for
    this: CPython's docs) leaves the collections only what the fit itself made."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def fit_sansa(
    data: RatingsData, rows: np.ndarray | None, params: Mapping[str, Any]
) -> sp.csr_matrix:
    """Collective SANSA's item-item weights for ``rows`` of ``data``: ``B = E · D`` with each
    row's ``weights_per_movie`` largest (in magnitude) kept (CSR, float32).

    Raises :class:`BadInput` when the data has fewer than two movies.
    """
    if data.n_items < 2:
        raise BadInput("sansa needs at least two movies")
    sansa = _sansa_module()
    factorizer = (
        sansa.ICFGramianFactorizerConfig()
        if params["factorizer"] == "icf"
        else sansa.CHOLMODGramianFactorizerConfig()
    )
    config = sansa.SANSAConfig(
        l2=float(params["lam"]),
        weight_matrix_density=min(1.0, float(params["factor_weights"]) / data.n_items),
        gramian_factorizer_config=factorizer,
        lower_triangle_inverter_config=sansa.UMRUnitLowerTriangleInverterConfig(
            scans=1, finetune_steps=5
        ),
    )
    matrix = augmented_matrix(data, rows, params)
    # Movies without a training row are left out of the fit (sansa's scaling fails on an
    # empty column) and get no weights: nothing can be learnt about them from these rows.
    active = np.flatnonzero(matrix.getnnz(axis=0) > 0)
    from sksparse.cholmod import CholmodOutOfMemoryError, CholmodTooLargeError

    try:
        with _heap_frozen():
            encoder, decoder = sansa.SANSA(config).fit(matrix[:, active].tocsr()).weights
    except (CholmodTooLargeError, CholmodOutOfMemoryError) as exc:
        # 100,000 synthetic movies: "problem too large" after 55 s (BENCHMARKS.md, "The
        # whole product at scale"); it reached the user as a traceback.
        raise BadInput(
            f"sansa: {active.size:,} movies are too many for the {params['factorizer']} "
            f"factorisation ({str(exc).splitlines()[0][-60:]}); train --algo als instead"
        ) from exc
    weights = pruned_product(sp.csr_matrix(encoder), sp.csr_matrix(decoder), params)
    return _embed(weights, active, data.n_items)


def pruned_product(
    encoder: sp.csr_matrix, decoder: sp.csr_matrix, params: Mapping[str, Any]
) -> sp.csr_matrix:
    """``E · D`` keeping each row's ``weights_per_movie`` largest entries in magnitude,
    a block of rows at a time (the whole product is far denser than either factor)."""
    keep = int(params["weights_per_movie"])
    blocks = []
    for start in range(0, encoder.shape[0], PRODUCT_ROWS):
        block = (encoder[start : start + PRODUCT_ROWS] @ decoder).tocoo()
        order = np.lexsort((-np.abs(block.data), block.row))
        row = block.row[order]
        first = np.searchsorted(row, row, side="left")
        kept = order[np.arange(order.size) - first < keep]
        blocks.append(
            sp.csr_matrix((block.data[kept], (block.row[kept], block.col[kept])), shape=block.shape)
        )
    return sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix(encoder.shape)


def _embed(matrix: sp.spmatrix, active: np.ndarray, n: int) -> sp.csr_matrix:
    """``matrix`` over the movies ``active`` as an ``n × n`` CSR matrix (float32)."""
    coo = sp.coo_matrix(matrix)
    full = sp.csr_matrix(
        (coo.data.astype(np.float32), (active[coo.row], active[coo.col])), shape=(n, n)
    )
    full.sort_indices()
    return full


class FittedSansa(Fitted):
    kind = RANKING
    form = "sansa"

    def __init__(self, weights: sp.csr_matrix, rating_weight: float):
        self.weights = weights
        self.rating_weight = rating_weight

    def score_users(self, users: np.ndarray, seen: sp.csr_matrix) -> np.ndarray:
        query = seen[users].astype(np.float32)
        query.data = signal_weights(query.data, self.rating_weight)
        return (query @ self.weights).toarray()

    def arrays(self) -> dict[str, np.ndarray]:
        return csr_arrays(WEIGHTS, self.weights)

    def meta(self) -> dict[str, Any]:
        return {"rating_weight": self.rating_weight, "sansa_nnz": int(self.weights.nnz)}


class Sansa(Algorithm):
    name = "sansa"
    kind = RANKING
    summary = "collective EASE with sparse approximate weights (memory linear in movies)"
    library = f"sansa {metadata.version('sansa')}"
    params = SANSA_PARAMS

    def fit(self, data: RatingsData, rows, params: Mapping[str, Any], seed: int) -> Fitted:
        return FittedSansa(fit_sansa(data, rows, params), params["rating_weight"])
