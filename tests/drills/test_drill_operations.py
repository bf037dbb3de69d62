"""Admin operations under load: a partition moved to another disk, a model promoted.

What users may see: a partition move is online (issue 23): a rating waits at most for its
final lock, none fails and none is lost; a model promoted
while pages are served changes the recommenders' version without a failed request.
"""

from __future__ import annotations

import time

import pytest
import requests

from movierec.db.tools import give_to_server_user

pytestmark = [pytest.mark.integration, pytest.mark.drill]


def test_a_partition_moves_to_another_disk_under_writes(drill):
    home = drill.home
    disk = home.root / "disk-b"
    disk.mkdir()
    give_to_server_user(disk)
    added = home.admin_cli("db", "partitions", "add-tablespace", "diskb", str(disk))
    assert added.returncode == 0, added.stdout + added.stderr
    moved = []
    load, _ = drill.under_load(
        lambda: moved.append(
            home.admin_cli("db", "partitions", "place", "ratings_p1", "--tablespace", "diskb")
        )
    )
    assert moved[0].returncode == 0, moved[0].stdout + moved[0].stderr
    report = drill.report("move ratings_p1 to another disk", load)
    print(report.row())
    assert report.lost == 0, "an acknowledged rating is missing from the database"
    assert report.failures == 0, report.failed
    fault = load.marks["fault"]
    stall = max(
        (r.elapsed for r in load.requests if r.kind == "rate" and r.started >= fault - 1),
        default=0.0,
    )
    print(f"longest rating while ratings_p1 moved: {stall * 1000:.0f} ms")
    assert any(disk.iterdir())  # the partition's files are on the other disk now


def test_a_model_promoted_under_load(drill):
    ai = f"http://127.0.0.1:{drill.member('ai-1').port}/health"
    before = requests.get(ai, timeout=5).json()["model_version"]
    refreshed = []
    load, _ = drill.under_load(
        lambda: refreshed.append(drill.home.admin_cli("model", "refresh", "--force")),
        observe=6.0,  # the servers look for a new version every 5 s
    )
    assert refreshed[0].returncode == 0, refreshed[0].stdout + refreshed[0].stderr
    report = drill.report("model refreshed and promoted", load)
    print(report.row())
    assert report.failures == 0, report.failed
    assert report.lost == 0
    deadline = time.monotonic() + 10
    while requests.get(ai, timeout=5).json()["model_version"] == before:
        assert time.monotonic() < deadline, "the recommender still serves the old version"
        time.sleep(0.2)
