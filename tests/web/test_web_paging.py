"""Pages and orders of "for you" and search: more than the first page, in the user's order,
parsed by the wire's parameters (a bad page is a 400 page, never a 500 or a silent page 1)."""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from sqlalchemy import delete

from movierec.db import Movie
from movierec.db.schema import MovieArrival
from movierec.wire import site


@pytest.fixture
def many(database, seed):
    """60 more movies (ids 101..160, years 1950..2009) for pages to page through: part of the
    catalogue, not new arrivals (the "New this week" slot is test_new_movies.py's)."""
    with database.session() as s:
        s.add_all(
            Movie(id=100 + i, title=f"Film {i:03d}", year=1949 + i, genres=["Drama"])
            for i in range(1, 61)
        )
        s.flush()
        s.execute(delete(MovieArrival))
    return list(range(101, 161))


def recommend_calls(ai) -> list[str]:
    return [unquote(c) for c in ai.calls if c.startswith("/recommend")]


def test_for_you_has_more_than_one_page(client, seed, ai, helpers, many):
    ai.recommendations[seed.ann] = [(m, 1.0 - m / 1000) for m in many]
    helpers.log_in(client, "ann")
    first = client.get("/for-you")
    assert helpers.titles(first) == [f"Film {i:03d}" for i in range(1, 25)]
    assert 'href="/for-you?page=2" rel="next"' in first.get_data(as_text=True)
    second = client.get("/for-you?page=2")
    assert second.status_code == 200
    assert helpers.titles(second) == [f"Film {i:03d}" for i in range(25, 49)]
    html = second.get_data(as_text=True)
    assert 'href="/for-you?page=1" rel="prev"' in html and 'aria-current="page">Page 2' in html
    assert recommend_calls(ai)[-1] == f"/recommend?user={seed.ann}&k=48&stars=1"
    third = client.get("/for-you?page=3")
    assert helpers.titles(third) == [f"Film {i:03d}" for i in range(49, 61)]
    assert 'rel="next"' not in third.get_data(as_text=True)  # 60 movies: the last page


def test_for_you_in_the_users_order_with_a_filter_keeps_both_across_pages(
    client, seed, ai, helpers, many
):
    ai.recommendations[seed.ann] = [(m, 1.0) for m in many]
    ai.stars[seed.ann] = {m: 1.0 + (m % 7) / 2 for m in many}
    helpers.log_in(client, "ann")
    page = client.get("/for-you?sort=newest&genre=Drama")
    assert helpers.titles(page)[:3] == ["Film 060", "Film 059", "Film 058"]
    assert 'href="/for-you?page=2&amp;genre=Drama&amp;sort=newest"' in page.get_data(as_text=True)
    by_stars = client.get("/for-you?sort=stars")
    shown = helpers.titles(by_stars)
    stars = [ai.stars[seed.ann][100 + int(t.split()[1])] for t in shown]
    assert stars == sorted(stars, reverse=True) and len(shown) == 24
    assert recommend_calls(ai)[-1] == f"/recommend?user={seed.ann}&k=100&stars=1"


@pytest.mark.parametrize(
    "query", ["page=0", "page=5", "page=x", "page=²", "page=-1", "sort=best!", "sort=year"]
)
def test_a_bad_page_or_order_of_for_you_is_a_400_page(client, seed, ai, helpers, query):
    helpers.log_in(client, "ann")
    answer = client.get(f"/for-you?{query}")
    assert answer.status_code == 400
    assert "page" in answer.get_data(as_text=True) or "sort" in answer.get_data(as_text=True)


def test_search_pages_and_orders(client, many, helpers):
    first = client.get("/search?genre=Drama&sort=newest")
    assert (
        helpers.titles(first)[:2] == ["Film 060", "Film 059"] and len(helpers.titles(first)) == 20
    )
    html = first.get_data(as_text=True)
    assert 'href="/search?page=2&amp;genre=Drama&amp;sort=newest" rel="next"' in html
    assert '<option value="newest" selected>' in html
    # 61 dramas, 20 a page: the fourth has the oldest alone; The Godfather (1972) is on the
    # second, after Film 023 of the same year.
    assert "The Godfather" in helpers.titles(client.get("/search?genre=Drama&sort=newest&page=2"))
    last = client.get("/search?genre=Drama&sort=newest&page=4")
    assert helpers.titles(last) == ["Film 001"] and 'rel="next"' not in last.get_data(as_text=True)
    oldest = client.get("/search?genre=Drama&sort=oldest")
    assert helpers.titles(oldest)[:2] == ["Film 001", "Film 002"]


@pytest.mark.parametrize("query", ["page=0", f"page={site.MAX_SEARCH_PAGE + 1}", "sort=up"])
def test_a_bad_search_page_or_order_is_a_400_page(client, seed, query):
    answer = client.get(f"/search?q=alien&{query}")
    assert answer.status_code == 400 and "not understood" in answer.get_data(as_text=True)


def test_every_form_control_has_a_label(client, seed, helpers):
    helpers.log_in(client, "ann")
    for path in ("/search?q=alien", "/for-you"):
        html = client.get(path).get_data(as_text=True)
        for control in ("search-q", "search-genre", "search-year", "search-sort")[
            : 4 if path.startswith("/search") else 0
        ] or ("filter-genre", "filter-decade", "filter-sort"):
            assert f'<label for="{control}">' in html and f'id="{control}"' in html, path
