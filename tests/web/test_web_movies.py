"""Home page, search (words, typos, genre, year, pages) and the movie page."""

from __future__ import annotations

import time

from sqlalchemy import select, text

from movierec.db import Movie, Rating, Search, User
from movierec.web import catalog, popular
from movierec.web.auth.tokens import create_token


def test_home_page_lists_popular_movies_and_a_search_box(client, seed, helpers):
    response = client.get("/")
    assert response.status_code == 200
    found = helpers.titles(response)
    assert found[0] == "Heat"  # two ratings; every other movie has at most one
    assert "Toy Story" not in found  # never rated
    assert 'name="q"' in response.get_data(as_text=True)


def test_search_by_title_words(client, seed, helpers):
    assert helpers.titles(client.get("/search?q=godfather")) == ["The Godfather"]
    assert helpers.titles(client.get("/search?q=THE+shining")) == ["The Shining"]


def test_search_tolerates_typos(client, seed, helpers):
    assert helpers.titles(client.get("/search?q=shinning"))[0] == "The Shining"
    assert helpers.titles(client.get("/search?q=godfater"))[0] == "The Godfather"


def test_search_filters_by_genre_and_year(client, seed, helpers):
    assert sorted(helpers.titles(client.get("/search?genre=Horror"))) == ["Alien", "The Shining"]
    assert sorted(helpers.titles(client.get("/search?year=1995"))) == ["Heat", "Toy Story"]
    assert helpers.titles(client.get("/search?q=the&genre=Crime")) == ["The Godfather"]
    assert helpers.titles(client.get("/search?genre=Horror&year=1995")) == []


def test_bad_search_arguments_are_a_400_with_a_message(client, seed):
    response = client.get("/search?year=nineteen&genre=Noir")
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "year must be a whole number" in page and "unknown genre" in page


def test_search_results_are_paginated(client, database, helpers):
    with database.session() as s:
        s.add_all(Movie(title=f"Film {i:02d}", year=2000) for i in range(25))
    first = client.get("/search?year=2000")
    assert len(helpers.titles(first)) == 20
    assert 'rel="next"' in first.get_data(as_text=True)
    second = client.get("/search?year=2000&page=2")
    assert helpers.titles(second) == [f"Film {i:02d}" for i in range(20, 25)]
    assert 'rel="next"' not in second.get_data(as_text=True)


def test_searches_of_a_logged_in_user_are_recorded(client, seed, database, helpers):
    own = {"Sec-Fetch-Site": "same-origin"}  # what a browser sends for a search form here
    client.get("/search?q=heat", headers=own)  # anonymous: not recorded
    helpers.log_in(client)
    client.get("/search?q=alien&genre=Horror&year=1979", headers=own)
    # A page turn is not a search.
    client.get("/search?q=alien&genre=Horror&year=1979&page=2", headers=own)
    # Typed or bookmarked (none) counts; a sibling subdomain, another site, or no word of
    # where it came from (an old browser; a forged navigation) does not (see
    # test_cross_site_search for the attack in a real browser).
    client.get("/search?q=typed", headers={"Sec-Fetch-Site": "none"})
    for where in ("same-site", "cross-site", None):
        client.get("/search?q=planted", headers={"Sec-Fetch-Site": where} if where else {})
    with database.session() as s:
        rows = s.execute(select(Search.user_id, Search.query, Search.genre, Search.year)).all()
    assert rows == [(seed.ann, "alien", "Horror", 1979), (seed.ann, "typed", None, None)]


def test_a_search_with_an_api_token_is_recorded(client, seed, database):
    with database.session() as s:
        token = create_token(s, seed.ann, "script")
    client.get("/api/search?q=alien", headers={"Authorization": f"Bearer {token}"})
    with database.session() as s:
        assert s.scalars(select(Search.query)).all() == ["alien"]


def test_movie_page_shows_details_average_and_links(client, seed):
    response = client.get(f"/movies/{seed.heat}")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<h1>Heat" in page
    assert "Action, Crime, Thriller" in page
    assert "<strong>4.5</strong> ★ from\n    2 ratings" in page
    assert "to rate this movie" in page  # anonymous: a login link, not a form

    shining = client.get(f"/movies/{seed.shining}").get_data(as_text=True)
    assert 'href="https://www.imdb.com/title/tt0081505/"' in shining
    assert 'href="https://www.themoviedb.org/movie/694"' in shining
    assert "imdb.com" not in page


def test_unknown_movie_is_a_404_page(client, seed):
    response = client.get("/movies/999")
    assert response.status_code == 404
    assert "There is no movie 999." in response.get_data(as_text=True)


def test_titles_are_escaped(client, database):
    with database.session() as s:
        s.add(Movie(id=66, title="<script>alert(1)</script>", year=2001, genres=["Drama"]))
    for path in ("/movies/66", "/search?q=script+alert"):
        page = client.get(path).get_data(as_text=True)
        assert "<script>" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_popular_movies_are_counted_at_most_once_a_minute(app, client, seed, database, helpers):
    assert helpers.titles(client.get("/"))[0] == "Heat"
    with database.session() as s:
        for user in (seed.ann, seed.bob):
            s.add(Rating(user_id=user, movie_id=seed.toy, rating=3.0))
        carol = User(username="carol")
        s.add(carol)
        s.flush()
        s.add(Rating(user_id=carol.id, movie_id=seed.toy, rating=3.0))
    assert helpers.titles(client.get("/"))[0] == "Heat"  # the cached count
    app.extensions[popular.EXTENSION] = popular.PopularCache(ttl=0)
    assert helpers.titles(client.get("/"))[0] == "Toy Story"


def test_a_new_worker_shows_the_kept_count_without_counting(make_app, seed, helpers, monkeypatch):
    """At 20M ratings a count took 9 s and each worker made its own: a new worker showed no
    popular movies until then. The count is kept in the database for every worker."""
    assert helpers.titles(make_app().test_client().get("/"))[0] == "Heat"  # counted, kept

    def counting(session, limit):
        raise AssertionError("a second count")

    monkeypatch.setattr(catalog, "popular", counting)
    assert helpers.titles(make_app().test_client().get("/"))[0] == "Heat"


def test_one_transaction_counts_at_a_time(database, seed):
    """Whoever holds the advisory lock counts; the others read its list when it is kept."""
    with database.session() as holder, database.session() as other:
        holder.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": popular.LOCK_KEY})
        assert popular.count_and_keep(other, ttl=0) is None
    with database.session() as session:
        movies, seconds = popular.count_and_keep(session, ttl=60)
    assert movies[0].title == "Heat" and seconds >= 0
    with database.session() as session:
        assert popular.count_and_keep(session, ttl=60) is None  # kept a minute: not due
        kept = popular.read_counted(session, ttl=60)
    assert (kept.due, kept.slow, kept.movies) == (False, False, movies)


def test_a_count_past_the_statement_timeout_is_made_aside_and_fails_no_page(
    make_app, seed, helpers, monkeypatch
):
    """At 20M ratings counting popular movies outlasted the statement timeout: every home
    page view waited for it and failed (503). Now a slow count runs in a thread of its own,
    with its own timeout, and the page is served meanwhile without the list."""
    counted = catalog.popular

    def slow(session, limit):  # as slow as a count over millions of ratings, for real
        session.execute(text("SELECT pg_sleep(0.6)"))
        return counted(session, limit)

    monkeypatch.setattr(catalog, "popular", slow)
    client = make_app(statement_timeout_ms=300).test_client()
    started = time.monotonic()
    first = client.get("/")
    assert first.status_code == 200 and helpers.titles(first) == []
    assert time.monotonic() - started < 0.6 + 0.3  # one timed-out try, not a wait for more
    deadline = time.monotonic() + 10
    while not helpers.titles(page := client.get("/")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert helpers.titles(page)[0] == "Heat"
