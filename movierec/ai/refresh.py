"""Model refresh: train a candidate, compare it with the live model on the same hold-out,
promote it only when it is no worse.

Comparing fairly means both sides are fitted on the same training rows and measured on the
same held-out rows of *today's* data: the live artifact itself was fitted on ratings that
are now in the hold-out, so its configuration (algorithm + parameters from its meta.json) is
refitted on the split instead. Ranking models are compared by NDCG@10 on each user's latest
ratings, rating models by RMSE on a random share. ``force`` promotes regardless.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from movierec.ai.algorithms import RANKING, get_algorithm
from movierec.ai.ann import MIN_ITEMS
from movierec.ai.artifact import ArtifactInfo, read_artifact
from movierec.ai.dataset import RatingsData
from movierec.ai.registry import live_version, pin_serving, promote
from movierec.ai.train import (
    StageProgress,
    ranking_metrics,
    rating_metrics,
    time_split,
    train_on_data,
)
from movierec.errors import MovierecError

log = logging.getLogger(__name__)
TOLERANCE = 1e-9  # "no worse" allows float noise, nothing more


@dataclass(frozen=True)
class RefreshReport:
    candidate: ArtifactInfo
    live_before: str | None
    promoted: bool
    metric: str  # "ndcg@10" (higher is better) or "rmse" (lower is better)
    candidate_score: float
    live_score: float | None
    reason: str


def _score(
    data: RatingsData, algo: str, params: Mapping[str, Any], kind: str, split, test_size, seed
) -> float:
    if kind == RANKING:
        return ranking_metrics(data, algo, params, split, seed).ndcg
    return rating_metrics(data, algo, params, test_size, seed).rmse


def refresh(
    data: RatingsData,
    model_dir: Path,
    algo: str,
    params: Mapping[str, Any] | None = None,
    *,
    force: bool = False,
    test_size: float = 0.2,
    seed: int = 0,
    genre_names: np.ndarray | None = None,
    movie_genres: np.ndarray | None = None,
    progress: StageProgress | None = None,
    ann_min_items: int = MIN_ITEMS,
) -> RefreshReport:
    """Train ``algo`` on ``data``, write it as a new version, and promote it when its hold-out
    score is no worse than the live model's (or ``force``).

    Raises :class:`BadInput` for bad algorithms or parameters or too little data.
    """
    algorithm = get_algorithm(algo)
    kind = algorithm.kind
    resolved = algorithm.resolve(params)
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    # Without a pointer servers follow the newest artifact: pin what they serve first, so the
    # candidate written below is served only if promoted.
    live = pin_serving(model_dir, kind)
    split = time_split(data, test_size, seed) if kind == RANKING else None
    metric = "ndcg@10" if kind == RANKING else "rmse"
    report = progress or (lambda stage, done, total: None)
    report(f"scoring candidate {algorithm.name}", 0, 1)
    candidate_score = _score(data, algorithm.name, resolved, kind, split, test_size, seed)
    report(f"scoring candidate {algorithm.name}", 1, 1)
    live_score = None
    if live is not None:
        meta = read_artifact(model_dir, live).meta
        report(f"scoring live {live}", 0, 1)
        try:
            live_algo = meta.get("algorithm", "svd")
            live_params = {
                k: v
                for k, v in meta.get("params", {}).items()
                if k in {p.name for p in get_algorithm(live_algo).params}
            }
            live_score = _score(data, live_algo, live_params, kind, split, test_size, seed)
        except MovierecError as exc:  # e.g. an algorithm this version no longer knows
            log.warning("cannot re-score live model %s (%s); treating it as beatable", live, exc)
        report(f"scoring live {live}", 1, 1)
    better = (
        live_score is None
        or (kind == RANKING and candidate_score >= live_score - TOLERANCE)
        or (kind != RANKING and candidate_score <= live_score + TOLERANCE)
    )
    extra = {"refresh": {"metric": metric, "score": candidate_score, "live": live,
                         "live_score": live_score}}  # fmt: skip
    info = train_on_data(
        data, model_dir, algorithm.name, resolved, test_size=0, seed=seed,
        genre_names=genre_names, movie_genres=movie_genres, progress=progress, extra_meta=extra,
        ann_min_items=ann_min_items,
    )  # fmt: skip
    info = info.artifact
    if better or force:
        promote(model_dir, info.version)
        if live_score is None:
            reason = "no live model to compare with" if live is None else "live not comparable"
        elif better:
            reason = f"{metric} {candidate_score:.4f} is no worse than live {live_score:.4f}"
        else:
            reason = f"forced: {metric} {candidate_score:.4f} vs live {live_score:.4f}"
        promoted = True
    else:
        reason = f"kept {live}: {metric} {candidate_score:.4f} is worse than {live_score:.4f}"
        promoted = False
    log.info("refresh %s: %s", info.version, reason)
    return RefreshReport(info, live, promoted, metric, candidate_score, live_score, reason)


def refresh_every(
    interval: float,
    run_once: Callable[[], RefreshReport],
    on_report: Callable[[RefreshReport | MovierecError], None],
    stop: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Call ``run_once`` every ``interval`` seconds until ``stop()``; a failed run (a
    :class:`MovierecError`, e.g. the database is down) is reported and the loop goes on."""
    while not stop():
        started = time.monotonic()
        try:
            on_report(run_once())
        except MovierecError as exc:
            on_report(exc)
        sleep(max(0.0, interval - (time.monotonic() - started)))


def live_meta(model_dir: Path, kind: str) -> dict[str, Any] | None:
    version = live_version(model_dir, kind)
    return None if version is None else read_artifact(model_dir, version).meta
