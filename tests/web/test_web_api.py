"""The JSON API: movies, search, own ratings, recommendations; errors as JSON; CSRF."""

from __future__ import annotations

from sqlalchemy import select

from movierec.db import Rating, Search


def test_get_movie(client, seed):
    response = client.get(f"/api/movies/{seed.shining}")
    assert response.status_code == 200
    assert response.get_json() == {
        "id": seed.shining,
        "title": "The Shining",
        "year": 1980,
        "genres": ["Horror", "Thriller"],
        "imdb_url": "https://www.imdb.com/title/tt0081505/",
        "tmdb_url": "https://www.themoviedb.org/movie/694",
        "ratings": 1,
        "average_rating": 3.0,
        "score": None,
    }


def test_unknown_movie_is_a_json_404(client, seed):
    response = client.get("/api/movies/999")
    assert response.status_code == 404
    assert response.get_json() == {"error": "There is no movie 999."}
    # beyond PostgreSQL's bigint: still a miss, not a database error
    assert client.get(f"/api/movies/{2**64}").status_code == 404


def test_search(client, seed, helpers, database):
    helpers.log_in(client, "bob")
    own = {"Sec-Fetch-Site": "same-origin"}  # a search the user made here (see test_web_movies)
    response = client.get("/api/search?q=heat", headers=own)
    body = response.get_json()
    assert response.status_code == 200
    assert [m["title"] for m in body["results"]] == ["Heat"]
    assert body["has_next"] is False
    by_year = client.get("/api/search?genre=Thriller&year=1980", headers=own).get_json()
    assert [m["title"] for m in by_year["results"]] == ["The Shining"]
    with database.session() as s:
        assert s.scalars(select(Search.query).order_by(Search.id)).all() == ["heat", ""]


def test_bad_search_is_a_json_400(client):
    # Cases in one test: each test pays for a fresh database.
    for query, message in (
        ("", "give q, genre or year"),
        ("?q=x&year=abc", "year must be a whole number"),
        ("?q=x&genre=Nope", "unknown genre"),
        ("?q=x&page=0", "page must be a whole number"),
    ):
        response = client.get(f"/api/search{query}")
        assert response.status_code == 400
        assert message in response.get_json()["error"]


def test_ratings_need_a_login(client, seed):
    for response in (
        client.get("/api/ratings"),
        client.post("/api/ratings", json={"movie_id": seed.heat, "rating": 4}),
        client.get("/api/recommendations"),
    ):
        assert response.status_code == 401
        assert response.get_json() == {"error": "log in first"}


def test_own_ratings_only(client, seed, helpers):
    helpers.log_in(client, "bob")
    body = client.get("/api/ratings").get_json()
    assert sorted(r["movie_id"] for r in body["ratings"]) == [seed.shining, seed.heat, seed.alien]
    # No way to name another user: ann's ratings of The Godfather never show up.
    other = client.get(f"/api/ratings?user={seed.ann}").get_json()
    assert seed.godfather not in [r["movie_id"] for r in other["ratings"]]
    assert client.get(f"/api/users/{seed.ann}/ratings").status_code == 404


def test_post_a_rating(client, seed, helpers, database):
    helpers.log_in(client, "ann")
    response = client.post("/api/ratings", json={"movie_id": seed.toy, "rating": 3.5})
    assert response.status_code == 200
    assert response.get_json() == {"movie_id": seed.toy, "rating": 3.5}
    client.post("/api/ratings", json={"movie_id": seed.toy, "rating": 2})
    with database.session() as s:
        rows = s.execute(select(Rating.rating).where(Rating.movie_id == seed.toy)).all()
    assert rows == [(2.0,)]
    assert client.get(f"/api/movies/{seed.toy}").get_json()["average_rating"] == 2.0


def test_bad_rating_posts_are_json_400(client, seed, helpers, database):
    helpers.log_in(client, "ann")
    response = client.post("/api/ratings", data="not json", content_type="application/json")
    assert response.status_code == 400
    assert "send a JSON object" in response.get_json()["error"]
    for body, message in (
        ([1, 2], "send a JSON object"),
        ({"rating": 4}, "movie_id must be a positive integer"),
        ({"movie_id": "2", "rating": 4}, "movie_id must be a positive integer"),
        ({"movie_id": True, "rating": 4}, "movie_id must be a positive integer"),
        ({"movie_id": 2}, "rating must be a number"),
        ({"movie_id": 2, "rating": "4"}, "rating must be a number"),
        ({"movie_id": 2, "rating": 5.5}, "not from 0.5 to 5"),
        ({"movie_id": 2, "rating": 0}, "not from 0.5 to 5"),
        ({"movie_id": 2, "rating": 3.3}, "not from 0.5 to 5"),
        ({"movie_id": 2, "rating": 10**400}, "not from 0.5 to 5"),
    ):
        response = client.post("/api/ratings", json=body)
        assert response.status_code == 400, body
        assert message in response.get_json()["error"], body
    with database.session() as s:
        assert (
            s.scalar(select(Rating.rating).where(Rating.user_id == seed.ann, Rating.movie_id == 2))
            == 4.0
        )


def test_rating_an_unknown_movie_is_a_json_404(client, seed, helpers):
    helpers.log_in(client, "ann")
    response = client.post("/api/ratings", json={"movie_id": 999, "rating": 4})
    assert response.status_code == 404
    assert response.get_json() == {"error": "There is no movie 999."}
    assert client.post("/api/ratings", json={"movie_id": 2**64, "rating": 4}).status_code == 404


def test_recommendations(client, seed, ai, helpers):
    ai.recommendations[seed.bob] = [(seed.godfather, 4.8), (seed.toy, 4.2)]
    helpers.log_in(client, "bob")
    body = client.get("/api/recommendations?k=1").get_json()
    assert body["model_version"] == "stand-in-1"
    assert body["fallback"] is False and body["limited"] is False
    assert [(m["title"], m["score"]) for m in body["items"]] == [("The Godfather", 4.8)]
    bad = client.get("/api/recommendations?k=0")
    assert bad.status_code == 400 and "k must be" in bad.get_json()["error"]


def test_recommendations_with_the_recommender_down(make_app, dead_url, seed, helpers):
    client = make_app(ai_urls=(dead_url,)).test_client()
    helpers.log_in(client, "bob")
    body = client.get("/api/recommendations").get_json()
    assert body["limited"] is True and body["fallback"] is True
    # popular movies bob has not rated
    assert [m["title"] for m in body["items"]] == ["The Godfather"]


def test_json_posts_need_the_csrf_header_when_csrf_is_on(make_app, seed, helpers):
    client = make_app(WTF_CSRF_ENABLED=True).test_client()
    helpers.log_in(client, "ann", token=helpers.csrf_token(client, "/auth/login"))
    rating = {"movie_id": seed.toy, "rating": 4.0}

    refused = client.post("/api/ratings", json=rating)
    assert refused.status_code == 400
    assert "CSRF" in refused.get_json()["error"]

    token = helpers.csrf_token(client, "/")  # the page's csrf-token meta tag
    accepted = client.post("/api/ratings", json=rating, headers={"X-CSRFToken": token})
    assert accepted.status_code == 200
