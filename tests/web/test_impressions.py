"""Impressions (movierec.web.impressions): a freshly computed "for you" list of a sampled
user is recorded once, a kept copy is not, nor a filtered page, nor an unsampled user."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from movierec.db.schema import Impression
from movierec.web.impressions import recorder


def impressions(database, client=None) -> list[tuple[int, str, list[int]]]:
    """The recorded impressions, after ``client``'s app wrote what it queued."""
    if client is not None:
        recorder(client.application).flush()
    with database.session() as s:
        rows = s.execute(
            select(Impression.user_id, Impression.model_version, Impression.movie_ids).order_by(
                Impression.id
            )
        )
        return [tuple(r) for r in rows]


@pytest.fixture
def ann_client(make_app, seed, helpers):
    def make(**config):
        client = make_app(**config).test_client()
        helpers.log_in(client, "ann")
        return client

    return make


def test_a_fresh_list_is_recorded_once_in_rank_order(ann_client, seed, ai, database):
    ai.recommendations[seed.ann] = [(seed.alien, 0.9), (seed.toy, 0.8)]
    client = ann_client(impression_sample=1.0)
    assert client.get("/for-you").status_code == 200
    assert client.get("/for-you").status_code == 200  # the kept list: nothing new to record
    assert client.get("/for-you?genre=Horror").status_code == 200  # not the list as shown
    assert impressions(database, client) == [(seed.ann, "stand-in-1", [seed.alien, seed.toy])]


def test_the_recommenders_fallback_is_recorded_apart(ann_client, seed, ai, database):
    ai.recommendations[seed.ann] = [(seed.alien, 0.9)]
    ai.fallback = True
    client = ann_client(impression_sample=1.0)
    client.get("/for-you")
    assert impressions(database, client) == [(seed.ann, "popular (fallback)", [seed.alien])]


def test_an_unsampled_user_costs_nothing(ann_client, seed, ai, database):
    ai.recommendations[seed.ann] = [(seed.alien, 0.9)]
    client = ann_client(impression_sample=0.0)
    client.get("/for-you")
    assert impressions(database, client) == []


def test_the_queue_is_written_by_the_workers_thread_and_stays_bounded(
    make_app, seed, database, monkeypatch
):
    app = make_app()
    queue = recorder(app)
    monkeypatch.setattr(queue, "bound", 2)
    for movie in (seed.alien, seed.toy, seed.heat):
        queue.add(seed.ann, "v1", [movie])
    assert queue.dropped == 1
    for _ in range(50):  # the thread writes within its interval (1 s)
        if queue.written == 2:
            break
        time.sleep(0.1)
    assert impressions(database) == [
        (seed.ann, "v1", [seed.alien]), (seed.ann, "v1", [seed.toy]),
    ]  # fmt: skip


def test_a_list_of_an_account_deleted_meanwhile_does_not_fail_the_batch(make_app, seed, database):
    app = make_app()
    queue = recorder(app)
    queue.add(seed.ann, "v1", [seed.alien])
    queue.add(10_000, "v1", [seed.alien])  # an account deleted meanwhile: skipped
    assert queue.flush() == 2
    assert impressions(database) == [(seed.ann, "v1", [seed.alien])]
