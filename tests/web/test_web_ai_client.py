"""AIClient against stand-in recommenders on real sockets: failover, rotation, errors."""

from __future__ import annotations

import pytest

from movierec.errors import ConfigError, NotFound
from movierec.web.ai_client import AIAnswer, AIClient, AIUnavailable, Scored


@pytest.fixture
def clients():
    made = []

    def make(urls, timeout=1.0):
        client = AIClient(urls, timeout)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def test_recommend_parses_the_answer(clients, ai):
    ai.recommendations[7] = [(3, 4.5), (1, 4.0), (2, 3.5)]
    answer = clients([ai.url]).recommend(7, 2)
    assert answer == AIAnswer(
        items=(Scored(3, 4.5), Scored(1, 4.0)), model_version="stand-in-1", fallback=False
    )


def test_a_dead_instance_is_skipped(clients, ai, dead_url):
    ai.recommendations[1] = [(5, 1.0)]
    client = clients([dead_url, ai.url])
    for _ in range(3):  # whichever instance a call starts at
        assert client.recommend(1, 5).items == (Scored(5, 1.0),)


def test_calls_rotate_over_the_instances(clients, ai, ai2):
    client = clients([ai.url, ai2.url])
    for _ in range(4):
        client.recommend(1, 5)
    assert len(ai.calls) == 2 and len(ai2.calls) == 2


@pytest.mark.parametrize("failure", ["status", "garbage", "slow"])
def test_a_failing_instance_gives_way_to_the_next(clients, ai, ai2, failure):
    if failure == "status":
        ai.status = 503
    elif failure == "garbage":
        ai.body = '{"items": "not a list"}'
    else:
        ai.delay = 0.5
    ai2.recommendations[1] = [(9, 2.0)]
    client = clients([ai.url, ai2.url], timeout=0.2)
    assert client.recommend(1, 5).items == (Scored(9, 2.0),)
    assert len(ai.calls) == 1 and len(ai2.calls) == 1


def test_the_users_context_goes_to_whichever_instance_answers(clients, ai, ai2):
    ai.body = '{"items": "not a list"}'
    ai2.recommendations[1] = [(9, 2.0)]
    context = {"movie_ids": [4], "stars": [5.0], "last_rated_at": None}
    client = clients([ai.url, ai2.url])
    assert client.recommend(1, 5, context=context).items == (Scored(9, 2.0),)
    assert ai2.contexts[1] == context and len(ai.calls) == 1


def test_a_recommender_older_than_posted_contexts_is_asked_with_a_get(clients, ai):
    ai.get_only = True
    ai.recommendations[1] = [(9, 2.0)]
    context = {"movie_ids": [4], "stars": [5.0], "last_rated_at": None}
    assert clients([ai.url]).recommend(1, 5, context=context).items == (Scored(9, 2.0),)
    assert len(ai.calls) == 2 and ai.contexts == {}  # the POST refused (405), then the GET


def test_no_answer_from_any_instance_raises_ai_unavailable(clients, ai, dead_url):
    ai.status = 500
    with pytest.raises(AIUnavailable, match="HTTP 500"):
        clients([ai.url, dead_url]).recommend(1, 5)


def test_similar_for_an_unknown_movie_raises_not_found_without_failover(clients, ai, ai2):
    ai.similar[4] = [(2, 0.9)]
    client = clients([ai.url, ai2.url])
    assert client.similar(4, 3).items == (Scored(2, 0.9),)
    with pytest.raises(NotFound):
        client.similar(42, 3)
    assert len(ai.calls) + len(ai2.calls) == 2


def test_health_reports_each_instance(clients, ai, dead_url):
    assert clients([ai.url, dead_url]).health() == [(ai.url, True), (dead_url, False)]


def test_at_least_one_url_is_needed():
    with pytest.raises(ConfigError):
        AIClient([], 1.0)
