"""Kill each kind of member under load and bring it back with ``cluster restart``.

Each drill runs the bounded load of :mod:`support.load` through both directors (a client that
knows both addresses, as with two DNS A records), crashes members with SIGKILL, restarts what
is missing with ``cluster restart`` and asserts what users saw: failed requests by status,
degraded seconds, time to recover, and that every acknowledged rating is in the database.

What may fail, by design: a POST in flight at the instant its web instance or director dies
(it may have been applied, so neither the director nor the client sends it twice). Reads never.
"""

from __future__ import annotations

import pytest
import requests
from support.drill import DrillReport
from support.load import Load

from movierec.web.ai_client import COOLDOWN_SECONDS

pytestmark = [pytest.mark.integration, pytest.mark.drill]

WRITES = ("rate", "signup")


def run(drill, name: str, *members: str, after: float = 3.0) -> tuple[DrillReport, Load]:
    """Load, crash ``members``, watch, ``cluster restart`` (what is missing), watch ``after``
    seconds."""
    load, restarted = drill.under_load(lambda: drill.crash(*members), after=after)
    assert sorted(restarted) == sorted(members)
    report = drill.report(name, load)
    print(report.row())
    assert report.lost == 0, "an acknowledged rating is missing from the database"
    assert load.acknowledged, "no rating was acknowledged: the load did not run"
    return report, load


def only_writes_in_flight_failed(report: DrillReport, load: Load) -> None:
    """Reads never fail; writes only those in flight at the kill, one per user at most."""
    assert set(report.failed_kinds) <= set(WRITES), report.failed_kinds
    fault = load.marks["fault"]
    failed = [r for r in load.requests if r.failed]
    assert all(r.started <= fault + 0.5 for r in failed), failed
    assert len(failed) <= load.users, failed


def test_kill_a_web_instance(drill):
    report, load = run(drill, "kill web-1, restart", "web-1")
    only_writes_in_flight_failed(report, load)


def test_kill_a_director(drill):
    report, load = run(drill, "kill director-1, restart", "director-1")
    only_writes_in_flight_failed(report, load)
    # The restarted director serves again.
    url = f"http://127.0.0.1:{drill.member('director-1').port}/api/search?q=movie"
    assert requests.get(url, timeout=10).status_code == 200


@pytest.mark.drill_slow
def test_kill_an_ai_instance(drill):
    report, load = run(drill, "kill ai-1, restart", "ai-1")
    assert report.failures == 0
    assert not any(r.degraded for r in load.requests), "the other AI instance answers"


@pytest.mark.drill_slow
def test_kill_both_ai_instances(drill):
    report, load = run(
        drill, "kill ai-1 and ai-2, restart", "ai-1", "ai-2", after=COOLDOWN_SECONDS + 3.0
    )
    assert report.failures == 0  # popular movies with a note instead
    down = [r for r in load.requests if r.kind == "for_you" and r.started > load.marks["fault"]]
    assert any(r.degraded for r in down), "recommendations were limited while both were down"
    # A web worker tries a failed instance again only after the breaker's cooldown: one that
    # probed just before the restart returned keeps serving popular movies that long (the
    # drill failed twice in a row with 1 s, recovering 10.1 and 10.4 s after the kill).
    settled = load.marks["restarted"] + COOLDOWN_SECONDS + 1.0
    later = [r for r in load.requests if r.kind == "for_you" and r.started > settled]
    assert later and not any(r.degraded for r in later), "recommendations are back"
