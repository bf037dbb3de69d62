"""The drills' cluster and switches.

One cluster serves every drill of a session (2 web, 2 AI, two directors, a tiny catalogue on
loopback): a drill breaks a member and brings it back, and the next one starts with every
member running again (``cluster restart`` reconciles first). Drills marked ``drill_slow`` run
only when ``-m`` names that marker (``make drills``); plain ``pytest`` skips them, saying so.
Every drill's table row is printed at the end of the run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from support.cluster import ClusterHome, cluster_home, crash, free_spec, tiny_catalogue
from support.drill import HEADER, REPORTS, DrillReport, lost_ratings
from support.load import Load

from movierec import cluster

# The load signs up a user every few requests, all from 127.0.0.1: the site's limit for one
# address (10 an hour) is not what these drills are about.
DRILL_ENV = {"MOVIEREC_RATELIMIT_SIGNUP": "100000 per hour"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "drill_slow" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="slow drill: `make drills` runs it (pytest -m drill_slow)")
    for item in items:
        if item.get_closest_marker("drill_slow"):
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter) -> None:
    if REPORTS:
        terminalreporter.section("drills")
        terminalreporter.write_line(HEADER)
        for report in REPORTS:
            terminalreporter.write_line(report.row())


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
        """The drill's numbers, the acknowledged ratings looked up in the primary."""
        lost = lost_ratings(self.home.admin_conninfo(), load.acknowledged)
        return DrillReport.of(name, load, lost)


@pytest.fixture(scope="session")
def drill_home() -> Iterator[ClusterHome]:
    with cluster_home("movierec-drills-") as home:
        spec = free_spec(web=2, ai=2, web_workers=1, ai_workers=1)
        # Only while `up` runs: its launch records keep the setting for every restart, and the
        # rest of the session keeps its own environment.
        with pytest.MonkeyPatch.context() as patch:
            for key, value in DRILL_ENV.items():
                patch.setenv(key, value)
            cluster.up(home.settings, spec, lambda _text: None, tiny_catalogue)
        yield home


@pytest.fixture
def drill(drill_home: ClusterHome) -> Drill:
    """The cluster with every member running (a drill before may have left one down)."""
    cluster.restart(drill_home.settings, lambda _text: None)
    return Drill(drill_home, cluster.load_record(drill_home.state_dir))
