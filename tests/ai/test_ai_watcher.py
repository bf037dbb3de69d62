"""Model hot-swap in the server process, and the database back-off for user context."""

import shutil
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event
from support.clock import Clock

from movierec.ai import TrainParams, fit_svd, model_arrays, ratings_from_arrays
from movierec.ai.artifact import write_artifact
from movierec.ai.user_context import UserContextReader
from movierec.ai.watcher import ModelWatcher
from movierec.db import Database, Preference, Rating, Search
from movierec.db.local_server import free_port

HOUR = timedelta(hours=1)
STRANGER = 9002  # conftest: in the database, no preferences, no ratings


@pytest.fixture(scope="module")
def arrays(synthetic):
    users, movies, ratings = zip(*synthetic.ratings, strict=True)
    data = ratings_from_arrays(users, movies, ratings)
    return model_arrays(fit_svd(data, TrainParams(factors=4, epochs=3, test_size=0)), data)


def test_new_version_is_picked_up_only_after_the_interval(tmp_path, arrays):
    clock = Clock(100.0)
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
    clock = Clock(100.0)
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
    real_autocommit = dead.autocommit
    monkeypatch.setattr(dead, "autocommit", lambda **kw: calls.append(kw) or real_autocommit(**kw))
    clock = Clock(100.0)
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


def test_user_context_reads_everything_in_one_statement(loaded, database):
    user, (first, second) = STRANGER, loaded.movie_ids[:2]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with database.session() as session:
        session.add_all(
            [
                Rating(user_id=user, movie_id=first, rating=4.5, rated_at=start),
                Rating(user_id=user, movie_id=second, rating=2.0, rated_at=start + HOUR),
                Preference(user_id=user, genres=["Drama"], movie_ids=[second]),
            ]
            + [
                Search(user_id=user, genre=genre, searched_at=start + i * HOUR)
                for i, genre in enumerate(["Comedy", "Horror", None, "Comedy", "Action"])
            ]
        )
    statements = []
    event.listen(database.primary, "before_cursor_execute", lambda *a: statements.append(a[2]))
    context = UserContextReader(database).read(user, want_genres=True)
    assert len(statements) == 1  # one round trip besides the pool's ping
    assert sorted(context.ratings) == sorted([(first, 4.5), (second, 2.0)])
    assert context.rated == {first, second}
    assert context.last_rated_at == (start + HOUR).timestamp()
    assert (context.genres, context.liked) == (("Drama",), (second,))
    assert context.searched_genres == ("Action", "Comedy", "Horror")  # newest first, once each
