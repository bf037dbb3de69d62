"""Operations under load: the primary crashes and ``cluster restart`` brings it back on its port;
a web instance someone restarted by hand is replaced by the cluster's own; web instances are
killed again and again (what the director's retries and checks are for).
"""

from __future__ import annotations

import pytest
from support.cluster import start_by_hand
from support.load import Load

pytestmark = [pytest.mark.integration, pytest.mark.drill]

KILLS = 6
READS = ("search", "for_you", "page")


@pytest.mark.drill_slow
def test_crash_the_primary_and_restart_it(drill):
    port = drill.member("postgres").port
    load, restarted = drill.under_load(lambda: drill.crash("postgres"), after=6.0)
    assert restarted == ["postgres"]
    report = drill.report("crash the primary, restart", load)
    print(report.row())
    assert drill.member("postgres").port == port
    assert report.lost == 0
    # Recovered: what the users asked for in the last seconds was served.
    last = [r for r in load.requests if r.started > load.marks["restarted"] + 3.0]
    assert last and not [r for r in last if r.failed], [r for r in last if r.failed]


@pytest.mark.drill_slow
def test_a_web_instance_started_by_hand_is_replaced_without_failures(drill):
    strays = []

    def fault() -> None:
        drill.crash("web-2")
        strays.append(start_by_hand(drill.member("web-2"), like=drill.member("web-1")))

    load, restarted = drill.under_load(fault, observe=1.0)
    assert restarted == ["web-2"]
    stray = strays[0]
    report = drill.report("web-2 started by hand, replaced", load)
    print(report.row())
    assert stray.wait(timeout=15) is not None
    assert report.lost == 0
    assert not [r for r in load.requests if r.failed and r.kind in READS]


@pytest.mark.drill_slow
def test_kill_web_instances_again_and_again(drill):
    """Six kills, each restarted: no read fails, and none waits for HAProxy's pause before a
    retry (it was a whole second with `timeout connect 1s`)."""
    slowest: list[float] = []
    with drill.load(max_seconds=150) as load:
        for kill in range(KILLS):
            load.wait(2.0)
            fault = load.mark("fault")
            drill.crash(f"web-{kill % 2 + 1}")
            load.wait(2.0)
            slowest.append(_slowest_read(load, fault, fault + 1.0))
            drill.restart()
    report = drill.report(f"kill a web instance {KILLS} times, restart each", load)
    print(report.row(), "slowest read within 1 s of each kill (ms):", slowest)
    assert report.lost == 0
    assert not [r for r in load.requests if r.failed and r.kind in READS]
    assert max(slowest) < 1000, slowest


def _slowest_read(load: Load, start: float, end: float) -> float:
    reads = [r for r in load.requests if r.kind in READS and start <= r.started <= end]
    return round(max((r.elapsed for r in reads), default=0.0) * 1000)
