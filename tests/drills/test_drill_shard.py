"""A shard server crashes under load (issue 24, drill 1).

Before: a generic plan of the site's rating write opened every foreign partition, so one shard
down stopped every user's writes (500), and the home and movie pages answered 503 for everyone.
Now the users whose rows live elsewhere do not notice: only requests that need the lost
shard's rows fail, each with a 503 (and Retry-After), and no acknowledged rating is lost.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.cluster import cluster_home, free_spec, tiny_catalogue
from support.drill import DRILL_ENV, Drill

from movierec import cluster

pytestmark = [pytest.mark.integration, pytest.mark.drill]


@pytest.fixture(scope="module")
def sharded() -> Iterator[Drill]:
    """A cluster whose last partition of ratings, searches and preferences lives on a shard
    server of its own (one web and one AI instance, two directors)."""
    with cluster_home("movierec-drill-shard-") as home:
        spec = free_spec(web=1, ai=1, shards=1, web_workers=2, ai_workers=1)
        with pytest.MonkeyPatch.context() as patch:
            for key, value in DRILL_ENV.items():
                patch.setenv(key, value)
            record = cluster.up(home.settings, spec, lambda _text: None, tiny_catalogue)
        yield Drill(home, record)


def test_a_shard_down_stops_only_what_lives_there(sharded):
    load, restarted = sharded.under_load(lambda: sharded.crash("shard1"), observe=6.0)
    assert restarted == ["shard1"]
    report = sharded.report("crash a shard server, restart", load)
    print(report.row())
    assert report.lost == 0, "an acknowledged rating is missing from the database"
    fault, back = load.marks["fault"], load.marks["restarted"]
    during = [r for r in load.requests if fault + 0.5 < r.started < back]
    # Everything that failed was told so: a 503, nothing else (no 500, no dropped connection).
    assert {r.outcome for r in load.requests if r.failed} <= {"503"}, report.failed
    # Users elsewhere went on rating: most writes in the outage succeeded (a quarter of the
    # users have their rows on the shard).
    rated = [r for r in during if r.kind == "rate"]
    assert rated and sum(not r.failed for r in rated) >= len(rated) // 2, rated
    # Pages that need no user's rows on the shard never failed.
    assert not [r for r in during if r.kind in ("search", "page") and r.failed]
