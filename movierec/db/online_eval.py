"""Online evaluation: what was shown to whom, and how well it did afterwards.

The site records an impression (migration 0012) when it computes a user's list, for a
sampled fraction of users (:func:`sampled`). Scoring joins each impression to what the same
user did in the ``window`` after it:

* a *hit* is a shown movie the user then rated at least :data:`LIKED` stars;
* the *hit rate* is the fraction of impressions with at least one hit;
* *NDCG@k* scores the shown order against the movies the user then liked (shown or not),
  with binary gains, as the offline hold-out does (:mod:`movierec.ai.evaluation`): the ideal
  list puts min(k, liked) of them first;
* the *dismiss rate* is the fraction of shown movies the user then said "not interested" to.

A later rating is one made after the impression and before the window ends; a movie rated
again keeps only its newest time (``rated_at``), so a re-rating counts when it is the one in
the window. Impressions younger than the window are still counted: their figures can only
rise as the users act, which the report's "since" says.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, text

LIKED = 4.0
WINDOW = timedelta(days=7)
K = 10
# Knuth's multiplicative hash: spreads consecutive ids evenly over [0, 2**32).
_GOLDEN = 2654435761


def sampled(user_id: int, fraction: float) -> bool:
    """Whether ``user_id``'s lists are recorded: the same answer for a user every time, so a
    sampled user's whole sequence is kept; about ``fraction`` of all users."""
    if fraction <= 0.0:
        return False
    return (user_id * _GOLDEN) % 2**32 < fraction * 2**32


def record_many(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Record many impressions in one INSERT: each row has ``user_id``, ``model_version``,
    ``movie_ids`` and ``shown_at``. A row of a user deleted meanwhile is skipped (the
    account's data is gone; its impressions must not fail the batch). Raises the driver's
    errors as :mod:`movierec.db` maps them."""
    conn.execute(_INSERT_MANY, {"rows": json.dumps([_jsonable(r) for r in rows])})


def _jsonable(row: Mapping[str, Any]) -> dict[str, Any]:
    return {**row, "shown_at": row["shown_at"].isoformat()}


# One statement for the whole batch, whatever its size (one plan, one round trip).
_INSERT_MANY = text(
    """
INSERT INTO impressions (user_id, model_version, movie_ids, shown_at)
SELECT r.user_id, r.model_version, r.movie_ids, r.shown_at
FROM jsonb_to_recordset(CAST(:rows AS jsonb))
     AS r(user_id bigint, model_version text, movie_ids bigint[], shown_at timestamptz)
WHERE EXISTS (SELECT 1 FROM users u WHERE u.id = r.user_id)
"""
)


@dataclass(frozen=True)
class OnlineMetrics:
    """One model version's online figures over its impressions."""

    model_version: str
    impressions: int
    users: int
    hits: int  # impressions with at least one hit
    hit_rate: float
    ndcg: float
    dismiss_rate: float
    first_shown: datetime
    last_shown: datetime


# Per impression: its top-k (rank order), the user's movies liked in the window, its hits
# weighted by rank, and the dismissals of shown movies in the window. Binary gains: DCG is
# the sum of 1/log2(rank+1) over hits; the ideal DCG the same over min(k, liked) ranks.
_SCORE = text(
    """
WITH shown AS (
    SELECT i.id, i.user_id, i.model_version, i.shown_at,
           i.movie_ids[1:CAST(:k AS int)] AS top
    FROM impressions i
    WHERE i.shown_at >= :since
      AND (CAST(:version AS text) IS NULL OR i.model_version = :version)
),
scored AS (
    SELECT s.id, s.user_id, s.model_version, s.shown_at, cardinality(s.top) AS n_shown,
        (SELECT count(*) FROM ratings r
          WHERE r.user_id = s.user_id AND r.rating >= :liked
            AND r.rated_at > s.shown_at AND r.rated_at <= s.shown_at + :window) AS liked,
        (SELECT coalesce(sum(1.0 / log(2, t.rank + 1)), 0) FROM unnest(s.top)
                WITH ORDINALITY AS t(movie_id, rank)
           JOIN ratings r ON r.user_id = s.user_id AND r.movie_id = t.movie_id
          WHERE r.rating >= :liked
            AND r.rated_at > s.shown_at AND r.rated_at <= s.shown_at + :window) AS dcg,
        (SELECT count(*) FROM unnest(s.top) AS t(movie_id)
           JOIN not_interested n ON n.user_id = s.user_id AND n.movie_id = t.movie_id
          WHERE n.created_at > s.shown_at AND n.created_at <= s.shown_at + :window)
          AS dismissed
    FROM shown s
)
SELECT model_version, count(*), count(DISTINCT user_id),
       count(*) FILTER (WHERE dcg > 0),
       avg(CASE WHEN liked = 0 THEN 0 ELSE dcg / (
           SELECT sum(1.0 / log(2, g + 1)) FROM generate_series(1, least(liked, n_shown)) g
       ) END),
       sum(dismissed)::float8 / greatest(sum(n_shown), 1),
       min(shown_at), max(shown_at)
FROM scored
GROUP BY model_version
ORDER BY min(shown_at)
"""
)


def online_metrics(
    conn: Connection,
    since: datetime,
    *,
    version: str | None = None,
    k: int = K,
    window: timedelta = WINDOW,
) -> list[OnlineMetrics]:
    """The online figures of every model version shown since ``since`` (or of ``version``
    only), oldest first; versions with no impression are absent. Raises the driver's
    errors as :mod:`movierec.db` maps them."""
    rows = conn.execute(
        _SCORE,
        {"since": since, "version": version, "k": k, "window": window, "liked": LIKED},
    ).all()
    return [
        OnlineMetrics(
            model_version=v,
            impressions=n,
            users=u,
            hits=h,
            hit_rate=h / n if n else 0.0,
            ndcg=float(ndcg or 0.0),
            dismiss_rate=float(dismissed or 0.0),
            first_shown=first,
            last_shown=last,
        )  # fmt: skip
        for v, n, u, h, ndcg, dismissed, first, last in rows
    ]


@dataclass(frozen=True)
class Comparison:
    """The live version's online figures beside the one it replaced (``model refresh``
    promotes, :func:`movierec.ai.registry.history` remembers the one before)."""

    live: OnlineMetrics | None
    previous: OnlineMetrics | None
    live_version: str | None
    previous_version: str | None


def compare(metrics: Sequence[OnlineMetrics], versions: Sequence[str]) -> Comparison:
    """``versions``: the live version first, then the earlier ones (the registry's history)."""
    by_version = {m.model_version: m for m in metrics}
    live = versions[0] if versions else None
    previous = versions[1] if len(versions) > 1 else None
    return Comparison(by_version.get(live or ""), by_version.get(previous or ""), live, previous)


def describe(c: Comparison) -> str:
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
