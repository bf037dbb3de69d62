"""Model hot-swap in the server process, and the database back-off for user context."""

import shutil

import pytest

from movierec.ai import TrainParams, fit_svd, model_arrays, ratings_from_arrays
from movierec.ai.artifact import write_artifact
from movierec.ai.user_context import UserContextReader
from movierec.ai.watcher import ModelWatcher
from movierec.db import Database
from movierec.db.local_server import free_port


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture(scope="module")
def arrays(synthetic):
    users, movies, ratings = zip(*synthetic.ratings, strict=True)
    data = ratings_from_arrays(users, movies, ratings)
    return model_arrays(fit_svd(data, TrainParams(factors=4, epochs=3, test_size=0)), data)


def test_new_version_is_picked_up_only_after_the_interval(tmp_path, arrays):
    clock = Clock()
    watcher = ModelWatcher(tmp_path, interval=5, clock=clock)
    assert watcher.current() is None
    first = write_artifact(tmp_path, "svd", arrays, {})
    assert watcher.current() is None  # checked a moment ago
    clock.now += 5
    assert watcher.current().version == first.version
    second = write_artifact(tmp_path, "svd", arrays, {})
    clock.now += 4.9
    assert watcher.current().version == first.version
    clock.now += 0.1
    assert watcher.current().version == second.version


def test_a_damaged_new_version_is_skipped_and_the_old_one_kept(tmp_path, arrays, caplog):
    clock = Clock()
    good = write_artifact(tmp_path, "svd", arrays, {})
    watcher = ModelWatcher(tmp_path, interval=1, clock=clock)
    assert watcher.current().version == good.version
    bad = write_artifact(tmp_path, "svd", arrays, {})
    (bad.path / "item_factors.npy").unlink()
    clock.now += 1
    assert watcher.current().version == good.version
    assert bad.version in caplog.text
    shutil.rmtree(bad.path)
    fixed = write_artifact(tmp_path, "svd", arrays, {})
    clock.now += 1
    assert watcher.current().version == fixed.version


def test_unreachable_database_is_skipped_for_a_while(settings, monkeypatch):
    dead = Database(settings.replace(database_url=f"postgresql://u@127.0.0.1:{free_port()}/x"))
    calls = []
    real_session = dead.session
    monkeypatch.setattr(dead, "session", lambda **kw: calls.append(kw) or real_session(**kw))
    clock = Clock()
    reader = UserContextReader(dead, retry_after=10, clock=clock)
    assert reader.read(1, want_genres=True).from_database is False
    reader.read(1, want_genres=True)
    assert len(calls) == 1  # the second read did not wait for another refused connection
    clock.now += 10
    reader.read(1, want_genres=True)
    assert len(calls) == 2


def test_user_context_reads_ratings_and_preferences(loaded, database):
    reader = UserContextReader(database)
    known = reader.read(loaded.user_ids[0], want_genres=False)
    assert known.from_database and known.rated == loaded.rated_by(loaded.user_ids[0])
    assert known.genres == ()
    new = reader.read(9001, want_genres=True)
    assert new.rated == frozenset() and new.genres == ("Horror",)
    assert UserContextReader(None).read(9001, want_genres=True).from_database is False
