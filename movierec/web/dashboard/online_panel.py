"""The online panel: how each model version's lists did with the people shown them
(:mod:`movierec.db.online_eval`, what ``movierec model report`` prints), the live ranking
model against the one it replaced, and a chart of hit rate and NDCG across versions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from markupsafe import Markup

from movierec.db.online_eval import WINDOW, Comparison, K, OnlineMetrics, compare, online_metrics
from movierec.web.dashboard.charts import line_chart
from movierec.web.db import database, read_session

DAYS = 30


@dataclass(frozen=True)
class OnlinePanel:
    metrics: tuple[OnlineMetrics, ...]
    comparison: Comparison
    chart: Markup
    days: int = DAYS
    k: int = K
    window_days: int = WINDOW.days
    sample: float = 1.0


def gather() -> OnlinePanel:
    """The last :data:`DAYS` days' figures. Raises :class:`DatabaseUnavailable`."""
    from movierec.ai.registry import history  # when used: see models_panel

    settings = database().settings
    since = datetime.now(UTC) - timedelta(days=DAYS)
    with read_session() as session:
        metrics = online_metrics(session.connection(), since)
    scored = [m for m in metrics if not m.model_version.startswith("popular")]
    chart = line_chart(
        f"online hit rate and NDCG@{K} per version",
        [m.model_version for m in scored],
        {"hit rate": [m.hit_rate for m in scored], f"NDCG@{K}": [m.ndcg for m in scored]},
    )
    comparison = compare(metrics, history(settings.model_dir, "ranking"))
    return OnlinePanel(tuple(metrics), comparison, chart, sample=settings.impression_sample)
