"""``movierec model report``: how each model version did online, and the live one against
the one it replaced (:mod:`movierec.db.online_eval`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from movierec.ai.registry import history
from movierec.cli.common import console, settings_from
from movierec.config import Settings
from movierec.db import Database
from movierec.db.online_eval import (
    WINDOW,
    Comparison,
    K,
    OnlineMetrics,
    compare,
    describe,
    online_metrics,
)
from movierec.errors import BadInput


def read_report(
    settings: Settings, days: float, k: int = K, kind: str = "ranking"
) -> tuple[list[OnlineMetrics], Comparison]:
    """Every version's online figures over the last ``days``, and the live ``kind`` against
    the one before it. The dashboard shows the same. Raises :class:`DatabaseUnavailable`."""
    since = datetime.now(UTC) - timedelta(days=days)
    database = Database(settings)
    try:
        with database.autocommit(readonly=True) as conn:
            metrics = online_metrics(conn, since, k=k, window=WINDOW)
    finally:
        database.dispose()
    return metrics, compare(metrics, history(settings.model_dir, kind))


def report(
    ctx: typer.Context,
    days: Annotated[float, typer.Option(help="Impressions of the last DAYS days.")] = 30.0,
    k: Annotated[int, typer.Option(help="Score the top K of each list.")] = K,
) -> None:
    """Online hit rate and NDCG@K per model version, from what users did after being shown
    their lists: ratings of 4 stars or more are hits, "not interested" clicks dismissals."""
    if days <= 0 or k < 1:
        raise BadInput("--days must be positive and --k at least 1")
    settings = settings_from(ctx)
    metrics, comparison = read_report(settings, days, k)
    if not metrics:
        console.print(
            f"no impressions in the last {days:g} days (the site records lists for "
            f"impression_sample={settings.impression_sample:g} of users)",
            highlight=False,
        )
        return
    table = Table(title=f"online, last {days:g} days, window {WINDOW.days} d", box=box.SIMPLE_HEAD)
    table.add_column("version", no_wrap=True)
    for header in ("live", "lists", "users", f"hit rate@{k}", f"NDCG@{k}", "dismissed", "since"):
        table.add_column(header, justify="right")
    for m in metrics:
        table.add_row(
            m.model_version, "●" if m.model_version == comparison.live_version else "",
            f"{m.impressions:,}", f"{m.users:,}", f"{m.hit_rate:.3f}", f"{m.ndcg:.4f}",
            f"{m.dismiss_rate:.3f}", f"{m.first_shown:%Y-%m-%d %H:%M}",
        )  # fmt: skip
    console.print(table)
    console.print(describe(comparison), highlight=False)
