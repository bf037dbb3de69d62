"""The models panel: every saved version with its kind, whether it is live, its offline
metrics from training (``movierec model list``), charts of NDCG@10 and RMSE across versions,
and the rollback ``movierec model rollback`` makes (the registry's pointer file: the
recommender servers switch within their reload interval).

The registry is imported when the panel is used: importing :mod:`movierec.ai` loads the
model code (35,000 objects), which the site otherwise never imports (DESIGN.md) and every web
worker would carry, each full garbage collection walking it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from markupsafe import Markup

from movierec.web.dashboard.charts import line_chart
from movierec.web.db import database

SHOWN = 30  # the newest versions listed and charted


@dataclass(frozen=True)
class Version:
    version: str
    kind: str
    algorithm: str
    live: bool
    trained_at: str
    users: Any
    movies: Any
    ratings: Any
    rmse: float | None
    ndcg: float | None


@dataclass(frozen=True)
class ModelsPanel:
    versions: tuple[Version, ...]  # newest first
    live: dict[str, list[str]]  # kind -> live version first, then the ones a rollback returns to
    ndcg_chart: Markup
    rmse_chart: Markup
    model_dir: str


def gather() -> ModelsPanel:
    from movierec.ai.artifact import list_artifacts
    from movierec.ai.registry import KINDS, history, kind_of

    model_dir = database().settings.model_dir
    live = {kind: history(model_dir, kind) for kind in KINDS}
    current = {versions[0] for versions in live.values() if versions}
    versions = []
    for info in list_artifacts(model_dir)[-SHOWN:]:
        meta, metrics = info.meta, info.meta.get("metrics") or {}
        versions.append(
            Version(
                info.version, kind_of(meta), str(meta.get("algorithm", "")),
                info.version in current, str(meta.get("trained_at", "")),
                meta.get("n_users", "-"), meta.get("n_movies", "-"), meta.get("n_ratings", "-"),
                metrics.get("rmse"), (meta.get("top_n") or {}).get("ndcg"),
            )
        )  # fmt: skip
    ranking = [v for v in versions if v.kind == "ranking" and v.ndcg is not None]
    rating = [v for v in versions if v.kind == "rating" and v.rmse is not None]
    return ModelsPanel(
        versions=tuple(reversed(versions)),
        live=live,
        ndcg_chart=line_chart(
            "NDCG@10 of ranking models (hold-out)",
            [v.version for v in ranking], {"NDCG@10": [v.ndcg for v in ranking]},
        ),
        rmse_chart=line_chart(
            "RMSE of rating models (hold-out)",
            [v.version for v in rating], {"RMSE": [v.rmse for v in rating]},
        ),
        model_dir=str(model_dir),
    )  # fmt: skip


def roll_back(kind: str) -> str:
    """Serve the previously live version of ``kind`` again; the version now live. Raises
    :class:`NotFound` when no earlier version is recorded."""
    from movierec.ai.registry import rollback

    return rollback(database().settings.model_dir, kind)
