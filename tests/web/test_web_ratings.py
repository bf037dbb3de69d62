"""Rating from the movie page: upsert, validation, removal, login required."""

from __future__ import annotations

from sqlalchemy import select

from movierec.db import Rating


def average_line(client, movie_id: int) -> str:
    page = client.get(f"/movies/{movie_id}").get_data(as_text=True)
    return " ".join(page.split("Average rating", 1)[1].split("</p>", 1)[0].split())


def test_rating_a_movie_changes_its_average_and_rerating_replaces_it(client, seed, helpers):
    assert average_line(client, seed.heat) == "<strong>4.5</strong> ★ from 2 ratings"
    anonymous = client.post(f"/movies/{seed.heat}/rating", data={"rating": "1.5"})
    assert anonymous.headers["Location"].startswith("/auth/login?next=")
    assert average_line(client, seed.heat) == "<strong>4.5</strong> ★ from 2 ratings"

    helpers.log_in(client, "ann")
    response = client.post(f"/movies/{seed.heat}/rating", data={"rating": "1.0"})
    assert response.headers["Location"] == f"/movies/{seed.heat}"
    # (1.0 + 5.0) / 2: ann's 4.0 was replaced, not added to
    assert average_line(client, seed.heat) == "<strong>3.0</strong> ★ from 2 ratings"
    assert "You rated it <strong>1</strong> ★." in client.get(f"/movies/{seed.heat}").get_data(
        as_text=True
    )

    client.post(f"/movies/{seed.toy}/rating", data={"rating": "3.5"})
    assert average_line(client, seed.toy) == "<strong>3.5</strong> ★ from 1 rating"


def test_invalid_ratings_are_refused_with_a_message(client, seed, helpers, database):
    helpers.log_in(client, "ann")
    for bad in ("7", "0", "3.3", "abc", ""):
        response = client.post(
            f"/movies/{seed.toy}/rating", data={"rating": bad}, follow_redirects=True
        )
        assert "Pick a rating from 0.5 to 5 stars." in response.get_data(as_text=True)
    with database.session() as s:
        assert s.scalar(select(Rating).where(Rating.movie_id == seed.toy)) is None


def test_removing_a_rating(client, seed, helpers, database):
    helpers.log_in(client, "ann")
    page = client.post(f"/movies/{seed.godfather}/rating/delete", follow_redirects=True)
    assert "Rating removed." in page.get_data(as_text=True)
    assert "No ratings yet." in page.get_data(as_text=True)
    with database.session() as s:
        left = s.scalars(select(Rating.movie_id).where(Rating.user_id == seed.ann)).all()
    assert left == [seed.heat]


def test_rating_an_unknown_movie_is_a_404(client, seed, helpers):
    helpers.log_in(client, "ann")
    assert client.post("/movies/999/rating", data={"rating": "4.0"}).status_code == 404
    assert client.post("/movies/999/rating/delete").status_code == 404
