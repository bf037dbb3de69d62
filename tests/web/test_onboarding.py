"""The first visit (issue 21, item 2): sign-up lands on two steps, genres then a dozen
informative movies to rate (or skip), and "for you" asks the recommender anew at once."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from movierec.db import Movie, Preference, Rating, User
from movierec.db.onboarding import Candidate, candidate_stats, informative_order


@pytest.fixture
def crowd(database):
    """20 movies rated by 12 people: 1-10 Drama, 11-20 Comedy. Even movies are divisive
    (1 and 5 stars), odd ones liked by all (4 stars); the lower the id, the more rated."""
    with database.session() as s:
        for i in range(1, 21):
            s.add(Movie(id=100 + i, title=f"Movie {i}", year=1990 + i,
                        genres=["Drama"] if i <= 10 else ["Comedy"]))  # fmt: skip
        people = [User(username=f"p{j}") for j in range(12)]
        s.add_all(people)
        s.flush()
        for i in range(1, 21):
            raters = people[: 12 - (i - 1) % 10 // 2]  # 12 down to 8
            for j, p in enumerate(raters):
                stars = (1.0 if j % 2 else 5.0) if i % 2 == 0 else 4.0
                s.add(Rating(user_id=p.id, movie_id=100 + i, rating=stars))
    return [100 + i for i in range(1, 21)]


def test_the_order_is_widely_seen_and_divisive_first_genres_taking_turns():
    c = [
        Candidate(1, ("Drama",), 100, 0.1),  # the top seller everybody likes
        Candidate(2, ("Drama",), 80, 2.0),  # seen by many, judged differently
        Candidate(3, ("Comedy",), 50, 1.5),
        Candidate(4, ("Comedy", "Drama"), 10, 1.0),
        Candidate(5, ("Horror",), 90, 2.0),
    ]
    assert informative_order(c, ["Drama", "Comedy"]) == [2, 3, 4, 1]
    assert informative_order(c)[:2] == [5, 2]
    assert informative_order(c, ["Drama"], exclude=[2]) == [4, 1]


def test_candidate_stats_read_counts_and_spreads(database, crowd):
    with database.session() as s:
        stats = {c.movie_id: c for c in candidate_stats(s)}
    assert stats[101].ratings == 12 and stats[101].spread == 0
    assert stats[102].spread == pytest.approx(2.0)  # half 1s, half 5s
    assert stats[102].genres == ("Drama",)


def test_sign_up_leads_through_genres_and_ratings_to_a_personal_for_you(
    client, crowd, helpers, database, ai
):
    answer = client.post(
        "/auth/signup",
        data={"username": "newbie", "password": helpers.password, "confirm": helpers.password},
    )
    assert answer.headers["Location"] == "/welcome"
    page = client.get("/welcome").get_data(as_text=True)
    assert "Step 1 of 2" in page and 'value="Comedy"' in page

    assert (
        client.post("/welcome/genres", data={"genres": ["Comedy"]})
        .headers["Location"]
        .startswith("/welcome/rate")
    )
    page = client.get("/welcome/rate").get_data(as_text=True)
    shown = [int(i) for i in re.findall(r'name="rating-(\d+)"', page)]
    assert len(shown) == 10 and all(110 < m <= 120 for m in shown)  # Comedy only
    assert shown[0] % 2 == 0  # a divisive one first, not the top seller (111)

    with database.session() as s:
        newbie = s.scalar(select(User.id).where(User.username == "newbie"))
    ai.recommendations[newbie] = [(101, 0.9)]
    before = client.get("/for-you")  # the list is kept while the taste does not change
    assert before.status_code == 200
    calls = len(ai.calls)
    answer = client.post(
        "/welcome/rate",
        data={
            f"rating-{shown[0]}": "4.5",
            f"rating-{shown[1]}": "",
            f"rating-{shown[2]}": "2",
            "next": "done",
            "page": "1",
        },  # fmt: skip
    )
    assert answer.headers["Location"] == "/for-you"
    assert "your 2 new ratings" in client.get("/for-you").get_data(as_text=True)
    assert len(ai.calls) > calls  # asked anew: the new ratings count at once
    # The recommender is sent the new ratings and genres, which it folds in.
    sent = ai.contexts[newbie]
    assert sorted(sent["movie_ids"]) == sorted([shown[0], shown[2]])
    assert sent["genres"] == ["Comedy"]
    with database.session() as s:
        rated = dict(
            s.execute(select(Rating.movie_id, Rating.rating).where(Rating.user_id == newbie)).all()
        )
        genres = s.scalar(select(Preference.genres).where(Preference.user_id == newbie))
    assert rated == {shown[0]: 4.5, shown[2]: 2.0} and genres == ["Comedy"]


def test_more_pages_leave_out_what_was_rated(client, crowd, seed, helpers, database):
    helpers.log_in(client, "ann")
    client.post("/welcome/genres", data={"genres": ["Drama"]})
    first = client.get("/welcome/rate").get_data(as_text=True)
    assert "Save and show more" not in first  # 10 Drama movies fit on one page
    answer = client.post("/welcome/rate", data={"rating-102": "3", "next": "more", "page": "1"})
    assert answer.headers["Location"] == "/welcome/rate?page=2"
    page = client.get("/welcome/rate").get_data(as_text=True)
    assert 'name="rating-102"' not in page


@pytest.mark.parametrize(
    "form",
    [
        {"rating-101": "6"},
        {"rating-101": "4e0"},
        {"rating-x": "4"},
        {"rating-101": "٤"},
        {f"rating-{i}": "" for i in range(1, 60)},
    ],  # fmt: skip
)
def test_bad_ratings_are_a_400_with_a_message_and_save_nothing(
    client, crowd, seed, helpers, database, form
):
    helpers.log_in(client, "ann")
    answer = client.post("/welcome/rate", data=form)
    assert answer.status_code == 400
    assert "rating" in answer.get_data(as_text=True)
    with database.session() as s:
        assert s.scalar(select(func.count()).where(Rating.user_id == seed.ann)) == 2


def test_the_steps_need_a_login(client):
    assert client.get("/welcome").status_code == 302
    assert client.post("/welcome/rate", data={"rating-1": "4"}).status_code == 302
