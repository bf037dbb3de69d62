"""New movies are not invisible (issue 21, item 3): a movie added after training reaches the
users whose taste fits through its own metadata, in "for you"'s "New this week" slot."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from movierec.db import Movie, Rating, User
from movierec.db.schema import MovieArrival
from movierec.errors import DatabaseUnavailable
from movierec.web import new_movies
from movierec.web.content import fit, taste_of, title_words


def test_title_words_leave_out_years_articles_and_numbers():
    assert title_words("The Godfather: Part II (1974)") == {"godfather"}
    assert title_words("Toy Story 3") == {"toy", "story"}


def test_taste_weighs_ratings_against_the_users_own_mean():
    taste = taste_of(
        [(("Crime", "Drama"), 1972, "The Godfather", 5.0), (("Comedy",), 1995, "Clueless", 2.0)],
        preferred=["Western"],
    )
    assert taste.genres["Crime"] > 0 > taste.genres["Comedy"] and taste.genres["Western"] == 1
    sequel = fit(taste, ("Crime", "Drama"), 1974, "The Godfather Part II")
    same_genres = fit(taste, ("Crime", "Drama"), 1974, "Serpico")
    assert sequel > same_genres > 0 > fit(taste, ("Comedy",), 1995, "Friday")
    assert fit(taste_of([]), ("Horror",), None, "Saw") == 0


def test_inserted_movies_arrive_and_deleted_ones_leave(database, seed, sequel):
    with database.session() as s:
        arrived = set(s.scalars(select(MovieArrival.movie_id)))
        assert arrived == {40, 41}  # the seed is the catalogue (tests/web/conftest.py)
        s.delete(s.get(Movie, 41))
    with database.session() as s:
        assert s.get(MovieArrival, 41) is None


def test_a_data_sets_first_load_is_no_arrival_and_a_later_ones_new_movies_are(db_url, database):
    with database.session() as s:
        conn = s.connection().connection.driver_connection
        with conn.cursor() as cur:
            cur.execute("SELECT set_config('movierec.catalogue_load', 'on', true)")
            cur.execute("INSERT INTO movies (title, genres) VALUES ('Old', '{Drama}')")
            cur.execute("SELECT set_config('movierec.catalogue_load', 'off', true)")
            cur.execute("INSERT INTO movies (title, genres) VALUES ('New', '{Drama}')")
    with database.session() as s:
        arrived = s.scalars(
            select(Movie.title).join(MovieArrival, MovieArrival.movie_id == Movie.id)
        ).all()
    assert arrived == ["New"]


@pytest.fixture
def sequel(database, seed):
    """A new movie for the people who loved The Godfather, another for nobody here."""
    with database.session() as s:
        s.add(Movie(id=40, title="The Godfather Part IV", year=1990, genres=["Crime", "Drama"]))
        s.add(Movie(id=41, title="Toy Story 5", year=2026, genres=["Animation", "Children"]))
    return 40


def test_for_you_shows_the_new_movie_to_those_it_fits(client, seed, sequel, helpers, ai):
    ai.recommendations[seed.ann] = [(seed.toy, 0.9)]
    helpers.log_in(client, "ann")
    page = client.get("/for-you").get_data(as_text=True)
    assert "New this week" in page
    slot = page.split('id="new-this-week"')[1]
    assert "The Godfather Part IV" in slot
    assert "Toy Story 5" not in slot  # nothing in her ratings says she would like it
    assert "Heat" not in slot  # rated already


def test_a_movie_stops_being_new_after_a_week_once_rated_often_enough(database, seed, sequel):
    with database.session() as s:
        s.execute(update(MovieArrival).values(added_at=func.now() - timedelta(days=30)))
        fans = [User(username=f"fan{i}") for i in range(new_movies.RARE)]
        s.add_all(fans)
        s.flush()
        s.add_all(Rating(user_id=f.id, movie_id=40, rating=4.0) for f in fans)
    with database.session() as s:
        still_new = {a.movie.id for a in new_movies.arrivals(s)}
    assert still_new == {41}  # Toy Story 5: rated by none yet


def test_a_movie_in_the_list_above_is_not_repeated_in_the_slot(client, seed, sequel, helpers, ai):
    ai.recommendations[seed.ann] = [(40, 0.9)]
    helpers.log_in(client, "ann")
    page = client.get("/for-you")
    assert helpers.titles(page) == ["The Godfather Part IV"]
    assert "New this week" not in page.get_data(as_text=True)


def test_no_slot_without_new_movies(client, seed, helpers, ai):
    helpers.log_in(client, "ann")
    page = client.get("/for-you")
    assert page.status_code == 200 and "New this week" not in page.get_data(as_text=True)


def test_the_page_goes_on_without_the_slot_when_its_read_fails(
    client, seed, sequel, helpers, ai, monkeypatch
):
    def down(_session):
        raise DatabaseUnavailable("the shard holding some movies is down")

    ai.recommendations[seed.ann] = [(seed.toy, 0.9)]
    helpers.log_in(client, "ann")
    monkeypatch.setattr(client.application.extensions[new_movies.EXTENSION], "read", down)
    page = client.get("/for-you")
    assert page.status_code == 200 and helpers.titles(page) == ["Toy Story"]
