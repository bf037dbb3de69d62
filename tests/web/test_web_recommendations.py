"""The "for you" page and similar movies, with the stand-in AI server up and with it down."""

from __future__ import annotations

from movierec.db import Preference, Rating, User


def test_for_you_shows_the_recommenders_picks_in_order(client, seed, ai, helpers):
    ai.recommendations[seed.ann] = [(seed.alien, 4.9), (seed.toy, 4.1), (999, 3.0)]
    helpers.log_in(client, "ann")
    response = client.get("/for-you")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert helpers.titles(response) == ["Alien", "Toy Story"]  # 999 is unknown here: dropped
    assert "temporarily limited" not in page and "popular picks" not in page
    assert f"/recommend?user={seed.ann}&k=24&stars=1" in ai.calls


def test_for_you_says_when_the_recommender_fell_back(client, seed, ai, helpers):
    ai.recommendations[seed.ann] = [(seed.heat, 1.0)]
    ai.fallback = True
    helpers.log_in(client, "ann")
    response = client.get("/for-you")
    assert helpers.titles(response) == ["Heat"]
    assert "popular picks" in response.get_data(as_text=True)


def test_for_you_with_the_recommender_down_shows_popular_movies_in_liked_genres(
    make_app, dead_url, seed, database, helpers
):
    with database.session() as s:
        s.add(Preference(user_id=seed.ann, genres=["Horror"]))
        s.add(Rating(user_id=seed.bob, movie_id=seed.toy, rating=4.0))
        carol = User(username="carol")
        s.add(carol)
        s.flush()
        s.add(Rating(user_id=carol.id, movie_id=seed.toy, rating=4.0))
    client = make_app(ai_urls=(dead_url,), ai_timeout=0.5).test_client()
    helpers.log_in(client, "ann")
    response = client.get("/for-you")
    assert response.status_code == 200
    assert "Recommendations are temporarily limited" in response.get_data(as_text=True)
    # Horror first (The Shining, Alien), then the rest by popularity, although Toy Story has
    # more ratings than either; ann's own ratings (Heat, The Godfather) are left out.
    assert helpers.titles(response) == ["The Shining", "Alien", "Toy Story"]


def test_movie_page_lists_similar_movies_from_the_recommender(client, seed, ai, helpers):
    ai.similar[seed.alien] = [(seed.alien, 1.0), (seed.shining, 0.8), (seed.heat, 0.5)]
    response = client.get(f"/movies/{seed.alien}")
    assert helpers.titles(response) == ["The Shining", "Heat"]  # not itself


def test_movie_page_explains_missing_similar_movies(make_app, client, dead_url, seed):
    unknown = client.get(f"/movies/{seed.toy}").get_data(as_text=True)
    assert "No similar movies yet: the recommender does not know this movie yet." in unknown

    down = make_app(ai_urls=(dead_url,)).test_client().get(f"/movies/{seed.toy}")
    assert down.status_code == 200
    assert "Similar movies are unavailable right now" in down.get_data(as_text=True)
