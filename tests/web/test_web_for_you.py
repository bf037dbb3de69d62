"""The "for you" page's "not interested", "because you liked" and genre / decade filters,
with the stand-in AI server (which honours ``exclude`` and answers ``because``)."""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from sqlalchemy import select

from movierec.ai.user_context import UserContextReader, from_json
from movierec.db import NotInterested, Preference, Search
from movierec.web import picks
from movierec.web.db import get_session
from movierec.web.users import Refusals, dismiss, refusals


def recommend_calls(ai) -> list[str]:
    return [unquote(c) for c in ai.calls if c.startswith("/recommend")]


@pytest.fixture
def csrf_client(make_app, seed, helpers):
    """ann logged in on an app with CSRF checks on."""
    client = make_app(WTF_CSRF_ENABLED=True).test_client()
    helpers.log_in(client, "ann", token=helpers.csrf_token(client, "/auth/login"))
    return client


def dismissed(database, user_id: int) -> set[int]:
    with database.session() as s:
        rows = s.scalars(select(NotInterested.movie_id).where(NotInterested.user_id == user_id))
        return set(rows)


def test_not_interested_removes_the_movie_and_refreshes_the_cached_list(
    csrf_client, seed, ai, helpers, database
):
    ai.recommendations[seed.ann] = [(seed.alien, 0.9), (seed.toy, 0.8), (seed.shining, 0.7)]
    page = csrf_client.get("/for-you")
    assert helpers.titles(page) == ["Alien", "Toy Story", "The Shining"]
    html = page.get_data(as_text=True)
    assert f'form="not-interested" name="movie_id"\n            value="{seed.alien}"' in html
    assert helpers.titles(csrf_client.get("/for-you")) == ["Alien", "Toy Story", "The Shining"]
    assert len(recommend_calls(ai)) == 1  # the second page came from the cache

    token = helpers.csrf_token(csrf_client, "/for-you")
    answer = csrf_client.post(
        "/for-you/not-interested", data={"movie_id": seed.alien, "csrf_token": token}
    )
    assert answer.status_code == 302 and answer.headers["Location"] == "/for-you"
    assert dismissed(database, seed.ann) == {seed.alien}

    after = csrf_client.get("/for-you")
    assert helpers.titles(after) == ["Toy Story", "The Shining"]
    assert "You will not be shown Alien again" in after.get_data(as_text=True)
    calls = recommend_calls(ai)
    assert len(calls) == 2  # the taste version changed: the cached list was not used
    assert calls[-1] == f"/recommend?user={seed.ann}&k=24&exclude={seed.alien}&stars=1"


def test_not_interested_needs_the_csrf_token(csrf_client, seed, ai, database):
    answer = csrf_client.post("/for-you/not-interested", data={"movie_id": seed.alien})
    assert answer.status_code == 400
    assert dismissed(database, seed.ann) == set()


def test_not_interested_in_an_unknown_movie_is_404(client, seed, helpers, database):
    helpers.log_in(client, "ann")
    assert client.post("/for-you/not-interested", data={"movie_id": 999}).status_code == 404
    assert dismissed(database, seed.ann) == set()


def test_genres_of_two_dismissed_movies_are_demoted(client, seed, ai, helpers):
    helpers.log_in(client, "ann")
    for movie in (seed.shining, seed.alien, seed.toy):
        assert client.post("/for-you/not-interested", data={"movie_id": movie}).status_code == 302
    client.get("/for-you")
    exclude = ",".join(str(m) for m in (seed.toy, seed.alien, seed.shining))  # newest first
    # Horror is in The Shining and Alien; Thriller, Sci-Fi and Toy Story's genres once each.
    expected = f"/recommend?user={seed.ann}&k=24&exclude={exclude}&demote_genres=Horror&stars=1"
    assert recommend_calls(ai) == [expected]


def test_demoted_genres_most_dismissed_first(app, seed):
    with app.test_request_context():
        session = get_session()
        for movie in (seed.shining, seed.alien, seed.heat):
            dismiss(session, seed.bob, movie)
        # Horror and Thriller twice each; then by name. Action, Crime, Sci-Fi once.
        assert refusals(session, seed.bob).demoted_genres == ["Horror", "Thriller"]
        dismiss(session, seed.bob, seed.godfather)  # Crime twice now
        assert refusals(session, seed.bob, at_least=3).demoted_genres == []
        found = refusals(session, seed.bob)
        assert found.demoted_genres == ["Crime", "Horror", "Thriller"]
        assert set(found.dismissed) == {seed.shining, seed.alien, seed.heat, seed.godfather}
        assert refusals(session, seed.ann) == Refusals([], [])
        # The cache-miss path reads both in one statement: the same answers.
        for user in (seed.ann, seed.bob):
            conn = session.connection()
            taste = picks.read_taste(conn, user)
            assert taste.version == picks.taste_version(conn, user)
            assert taste.read_with[0] == refusals(session, user)


def test_a_dismissed_movie_never_comes_back_even_from_the_popular_fallback(
    make_app, dead_url, seed, helpers, database
):
    with database.session() as s:
        s.add(NotInterested(user_id=seed.ann, movie_id=seed.shining))
    client = make_app(ai_urls=(dead_url,), ai_timeout=0.5).test_client()
    helpers.log_in(client, "ann")
    page = client.get("/for-you")
    assert "temporarily limited" in page.get_data(as_text=True)
    # Popular movies ann has not rated (Heat and The Godfather are hers), minus The Shining.
    assert helpers.titles(page) == ["Alien"]


def test_a_dismissed_movie_is_dropped_even_when_the_recommender_returns_it(
    client, seed, ai, helpers, monkeypatch
):
    ai.recommendations[seed.ann] = [(seed.alien, 0.9), (seed.toy, 0.8)]
    helpers.log_in(client, "ann")
    client.post("/for-you/not-interested", data={"movie_id": seed.alien})
    # An older recommender that ignores ``exclude``.
    real = picks.AIClient.recommend
    monkeypatch.setattr(picks.AIClient, "recommend", lambda self, user, k, **_: real(self, user, k))
    assert helpers.titles(client.get("/for-you")) == ["Toy Story"]


def test_taste_version_changes_on_dismissal_and_undo(app, seed):
    with app.test_request_context():
        session = get_session()
        before = picks.taste_version(session.connection(), seed.ann)
        dismiss(session, seed.ann, seed.alien)
        dismissed_once = picks.taste_version(session.connection(), seed.ann)
        assert dismissed_once != before
        session.execute(NotInterested.__table__.delete().where(NotInterested.user_id == seed.ann))
        assert picks.taste_version(session.connection(), seed.ann) == before


def test_account_page_lists_dismissed_movies_and_undo_brings_them_back(
    csrf_client, seed, ai, helpers, database
):
    ai.recommendations[seed.ann] = [(seed.alien, 0.9), (seed.toy, 0.8)]
    token = helpers.csrf_token(csrf_client, "/for-you")
    csrf_client.post("/for-you/not-interested", data={"movie_id": seed.alien, "csrf_token": token})
    assert helpers.titles(csrf_client.get("/for-you")) == ["Toy Story"]

    account = csrf_client.get("/account").get_data(as_text=True)
    undo = f"/for-you/not-interested/{seed.alien}/delete"
    assert undo in account

    assert csrf_client.post(undo).status_code == 400  # no CSRF token: refused
    assert dismissed(database, seed.ann) == {seed.alien}
    token = helpers.csrf_token(csrf_client, "/account")
    assert csrf_client.post(undo, data={"csrf_token": token}).status_code == 302
    assert dismissed(database, seed.ann) == set()
    assert helpers.titles(csrf_client.get("/for-you")) == ["Alien", "Toy Story"]


def test_the_page_sends_the_recommender_what_it_would_read_itself(
    client, seed, ai, helpers, database
):
    with database.session() as s:
        s.add(Preference(user_id=seed.bob, genres=["Drama"], movie_ids=[seed.toy]))
        s.add(Search(user_id=seed.bob, query="alien", genre="Sci-Fi"))
    ai.recommendations[seed.bob] = [(seed.toy, 0.9)]
    helpers.log_in(client, "bob")
    assert helpers.titles(client.get("/for-you")) == ["Toy Story"]
    sent = from_json(ai.contexts[seed.bob])
    assert sent == UserContextReader(database).read(seed.bob, want_genres=True)
    assert sent.rated == {seed.heat, seed.shining, seed.alien} and sent.liked == (seed.toy,)
    assert (sent.genres, sent.searched_genres) == (("Drama",), ("Sci-Fi",))


def test_because_you_liked_shows_the_liked_movies_title(client, seed, ai, helpers):
    ai.recommendations[seed.ann] = [(seed.alien, 0.9), (seed.toy, 0.8)]
    ai.because = {seed.toy: seed.heat, seed.alien: 999}  # 999: not in the catalogue
    helpers.log_in(client, "ann")
    page = client.get("/for-you")
    html = page.get_data(as_text=True)
    assert helpers.titles(page) == ["Alien", "Toy Story"]  # Heat is not listed itself
    toy = html.index(">Toy Story</a>")
    assert html.index("Because you liked Heat") > toy
    assert html.count("Because you liked") == 1  # none for Alien: its movie is unknown


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("genre=Horror", ["Alien", "The Shining"]),
        ("decade=1990", ["Toy Story", "Heat"]),
        ("decade=1970s", ["Alien", "The Godfather"]),
        ("genre=Crime&decade=1990", ["Heat"]),
    ],
)
def test_filters_keep_the_matching_movies_of_more_candidates(
    client, seed, ai, helpers, query, expected
):
    ai.recommendations[seed.ann] = [
        (seed.alien, 0.9),
        (seed.toy, 0.8),
        (seed.shining, 0.7),
        (seed.heat, 0.6),
        (seed.godfather, 0.5),
    ]
    helpers.log_in(client, "ann")
    page = client.get(f"/for-you?{query}")
    assert page.status_code == 200
    assert helpers.titles(page) == expected
    assert recommend_calls(ai) == [f"/recommend?user={seed.ann}&k=100&stars=1"]


def test_filters_say_when_nothing_matches(client, seed, ai, helpers):
    ai.recommendations[seed.ann] = [(seed.alien, 0.9)]
    helpers.log_in(client, "ann")
    page = client.get("/for-you?genre=Western")
    assert helpers.titles(page) == []
    assert "No matches among your recommendations" in page.get_data(as_text=True)
    assert '<option value="Western" selected>' in page.get_data(as_text=True)


def test_bad_filters_are_reported_and_ignored(client, seed, ai, helpers):
    ai.recommendations[seed.ann] = [(seed.alien, 0.9), (seed.toy, 0.8)]
    helpers.log_in(client, "ann")
    page = client.get("/for-you?genre=Nope&decade=1995")
    html = page.get_data(as_text=True)
    problems = "unknown genre &#39;Nope&#39;; unknown decade &#39;1995&#39;"
    assert f"Filter not understood: {problems}" in html
    assert helpers.titles(page) == ["Alien", "Toy Story"]


def test_not_interested_keeps_the_filters(client, seed, ai, helpers):
    helpers.log_in(client, "ann")
    answer = client.post(
        "/for-you/not-interested",
        data={"movie_id": seed.alien, "genre": "Horror", "decade": "1970"},
    )
    assert answer.headers["Location"] == "/for-you?genre=Horror&decade=1970"


def test_ai_client_sends_exclude_and_demote_genres_and_reads_because(app, ai):
    ai.recommendations[7] = [(1, 0.9), (2, 0.8), (3, 0.7)]
    ai.because = {2: 1}
    client = picks.AIClient([ai.url])
    try:
        answer = client.recommend(7, 5, exclude=[3], demote_genres=["Horror", "Drama"])
        assert [(i.movie_id, i.because) for i in answer.items] == [(1, None), (2, 1)]
        assert recommend_calls(ai) == ["/recommend?user=7&k=5&exclude=3&demote_genres=Horror,Drama"]
        ai.body = '{"items": [{"movie_id": 1, "score": 1.0, "because": "x"}]}'
        with pytest.raises(picks.AIUnavailable, match="malformed answer"):
            client.recommend(7, 5)
    finally:
        client.close()
