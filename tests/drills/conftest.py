"""The drills' cluster and switches.

One cluster serves every drill of a session (2 web, 2 AI, two directors, a tiny catalogue on
loopback): a drill breaks a member and brings it back, and the next one starts with every
member running again (``cluster restart`` reconciles first). Drills marked ``drill_slow`` run
only with ``make drills`` (tests/conftest.py); plain ``pytest`` skips them, saying so.
Every drill's table row is printed at the end of the run.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.cluster import ClusterHome, cluster_home, free_spec, tiny_catalogue
from support.drill import DRILL_ENV, HEADER, REPORTS, Drill

from movierec import cluster


def pytest_terminal_summary(terminalreporter) -> None:
    if REPORTS:
        terminalreporter.section("drills")
        terminalreporter.write_line(HEADER)
        for report in REPORTS:
            terminalreporter.write_line(report.row())


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
