"""What a drill measured, as one row of the table in BENCHMARKS.md: requests, failures by
status, degraded seconds, acknowledged writes lost, time to recover, the slowest request.

``DrillReport.of(name, load, lost)`` makes the row from a finished :class:`support.load.Load`;
:meth:`Drill.report` checks the acknowledged writes with the admin's own ``movierec db check
--acknowledged`` (its library call): on the primary, and every replica against it.
Every report made in a session is printed at its end (``tests/drills/conftest.py``).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from movierec import cluster
from movierec.db.check import check
from support.cluster import ClusterHome, crash
from support.load import Load, Request

# Seconds: a request slower than this degrades its second like a failure. A sign-up hashes
# a password with argon2id, which takes most of a second of CPU by design.
SLOW = {"signup": 3.0}
SLOW_DEFAULT = 1.0
HEADER = (
    "| drill | requests | failed (by status) | degraded s | acked writes lost | recover s "
    "| slowest ms (sign-ups aside) |\n|---|---|---|---|---|---|---|"
)
REPORTS: list[DrillReport] = []  # this session's, in the order made


@dataclass(frozen=True)
class DrillReport:
    drill: str
    requests: int
    failed: dict[str, int]  # by outcome (502, closed, refused, ...)
    failed_kinds: dict[str, int]  # by kind of request (rate, search, ...)
    degraded_seconds: int  # seconds in which a request failed, was slow or answered less
    acknowledged: int  # ratings the site acknowledged
    lost: int  # of those, missing from the database afterwards
    recover_seconds: float  # from the fault to the end of the last bad request (0: none)
    slowest_ms: float  # sign-ups aside: argon2id makes each one slow by design

    @classmethod
    def of(cls, drill: str, load: Load, lost: Sequence[object]) -> DrillReport:
        """The report of ``load`` (stopped); ``lost``: the acknowledged ratings not stored as
        acknowledged (:meth:`Drill.report` finds them). Recorded for
        the session's table."""
        done = list(load.requests)
        bad = [r for r in done if _bad(r)]
        timed = [r for r in done if r.kind != "signup"]
        fault = load.marks.get("fault", load.started)
        ends = [r.started + r.elapsed for r in bad if r.started + r.elapsed >= fault]
        report = cls(
            drill=drill,
            requests=len(done),
            failed=dict(Counter(r.outcome for r in done if r.failed)),
            failed_kinds=dict(Counter(r.kind for r in done if r.failed)),
            degraded_seconds=len({math.floor(r.started - load.started) for r in bad}),
            acknowledged=len(load.acknowledged),
            lost=len(lost),
            recover_seconds=round(max(ends) - fault, 1) if ends else 0.0,
            slowest_ms=round(max((r.elapsed for r in timed), default=0.0) * 1000),
        )
        REPORTS.append(report)
        return report

    @property
    def failures(self) -> int:
        return sum(self.failed.values())

    def row(self) -> str:
        failed = ", ".join(f"{n} × {k}" for k, n in sorted(self.failed.items())) or "0"
        return (
            f"| {self.drill} | {self.requests:,} | {failed} | {self.degraded_seconds} | "
            f"{self.lost} of {self.acknowledged:,} | {self.recover_seconds:.1f} | "
            f"{self.slowest_ms:,.0f} |"
        )


def _bad(request: Request) -> bool:
    slow = SLOW.get(request.kind, SLOW_DEFAULT)
    return request.failed or request.degraded or request.elapsed > slow


# The load signs up a user every few requests, all from 127.0.0.1: the site's limit for one
# address (10 an hour) is not what these drills are about.
DRILL_ENV = {"MOVIEREC_RATELIMIT_SIGNUP": "100000 per hour"}


@dataclass
class Drill:
    """The drills' running cluster and what a drill does to it."""

    home: ClusterHome
    record: cluster.ClusterRecord

    @property
    def urls(self) -> list[str]:
        """The site's addresses: every director."""
        return [f"http://127.0.0.1:{m.port}/" for m in self.record.members if m.role == "director"]

    def member(self, name: str) -> cluster.Member:
        self.record = cluster.load_record(self.home.state_dir)
        return next(m for m in self.record.members if m.name == name)

    def load(self, **options) -> Load:
        return Load(self.urls, **options)

    def under_load(
        self, fault: Callable[[], object], observe: float = 3.0, after: float = 3.0, **options
    ) -> tuple[Load, list[str]]:
        """The usual drill: 2 s of load, then ``fault()`` (marked ``fault``), ``observe``
        seconds, ``cluster restart`` of what is missing (marked ``restarted``), ``after``
        seconds more. The stopped load and the members restarted."""
        with self.load(**options) as load:
            load.wait(2.0)
            load.mark("fault")
            fault()
            load.wait(observe)
            restarted = self.restart()
            load.mark("restarted")
            load.wait(after)
        return load, restarted

    def crash(self, *names: str) -> None:
        for name in names:
            crash(self.member(name))

    def restart(self, *names: str) -> list[str]:
        """``cluster restart`` (of ``names``, or of what is missing)."""
        done = cluster.restart(self.home.settings, lambda _text: None, names)
        self.record = cluster.load_record(self.home.state_dir)
        return done

    def report(self, name: str, load: Load) -> DrillReport:
        """The drill's numbers. The acknowledged ratings are checked as an admin would, with
        ``movierec db check --acknowledged FILE`` (its library call, on the file the load's
        record makes): stored on the primary as acknowledged, and every replica the same as
        the primary at one moment."""
        record = self.home.root / f"acknowledged-{len(REPORTS)}.jsonl"
        record.write_text(
            "".join(
                json.dumps({"username": r.username, "movie_id": r.movie_id, "rating": r.rating})
                + "\n"
                for r in load.acknowledged
            )
        )
        url = cluster.admin_url_file(self.home.settings).read_text().strip()
        checked = check(self.home.settings.replace(database_url=url), acknowledged=record)
        assert all(c.ok for c in checked.comparisons), checked
        lost = list(checked.acknowledged.missing) if checked.acknowledged else []
        return DrillReport.of(name, load, lost)
