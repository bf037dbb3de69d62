"""Impressions (movierec.web.impressions): a freshly computed "for you" list of a sampled
user is recorded once, a kept copy is not, nor a filtered page, nor an unsampled user."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from movierec.db.schema import Impression


def impressions(database) -> list[tuple[int, str, list[int]]]:
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
    assert impressions(database) == [(seed.ann, "stand-in-1", [seed.alien, seed.toy])]


def test_the_recommenders_fallback_is_recorded_apart(ann_client, seed, ai, database):
    ai.recommendations[seed.ann] = [(seed.alien, 0.9)]
    ai.fallback = True
    ann_client(impression_sample=1.0).get("/for-you")
    assert impressions(database) == [(seed.ann, "popular (fallback)", [seed.alien])]


def test_an_unsampled_user_costs_nothing(ann_client, seed, ai, database):
    ai.recommendations[seed.ann] = [(seed.alien, 0.9)]
    ann_client(impression_sample=0.0).get("/for-you")
    assert impressions(database) == []
