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
from movierec.db.online_eval import WINDOW, Comparison, K, OnlineMetrics, compare, online_metrics
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
    console.print(comparison_line(comparison), highlight=False)


def comparison_line(c: Comparison) -> str:
    """One line: the live version against the one before it, or why there is none."""
    if c.live_version is None:
        return "no live ranking model recorded (model promote / refresh sets one)"
    if c.previous_version is None:
        return f"live {c.live_version}: no earlier live version to compare with"
    if c.live is None or c.previous is None:
        missing = c.live_version if c.live is None else c.previous_version
        return f"live {c.live_version} vs {c.previous_version}: no impressions of {missing} yet"
    return (
        f"live {c.live_version} vs {c.previous_version}: hit rate {c.live.hit_rate:.3f} vs "
        f"{c.previous.hit_rate:.3f} ({c.live.hit_rate - c.previous.hit_rate:+.3f}), NDCG "
        f"{c.live.ndcg:.4f} vs {c.previous.ndcg:.4f} ({c.live.ndcg - c.previous.ndcg:+.4f}), "
        f"over {c.live.impressions:,} and {c.previous.impressions:,} lists"
    )
