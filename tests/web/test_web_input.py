"""Hostile input to the site, unauthenticated and logged in: every parameter is read by one
rule (movierec.wire.params), so odd digits, control characters and oversized values get a
clear 4xx, never a 500, and never a guess at a number that prints differently."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from movierec.db import NotInterested, User

SUPERSCRIPT_TWO = "%C2%B2"  # "²": str.isdigit() says yes, int() says no
SUPERSCRIPT_YEAR = "%C2%B9%E2%81%B9%E2%81%B9%E2%81%B0"  # "¹⁹⁹⁰"
FULLWIDTH_FIVE = "%EF%BC%95"  # "５": int() reads 5
ARABIC_ONE = "%D9%A1"  # "١": int() reads 1

API_400 = [
    (f"/api/search?q=x&year={SUPERSCRIPT_TWO}", "year must be a whole number"),
    (f"/api/search?q=x&year={SUPERSCRIPT_YEAR}", "year must be a whole number"),
    (f"/api/search?q=x&page={FULLWIDTH_FIVE}", "page must be a whole number"),
    (f"/api/search?q=x&page={ARABIC_ONE}", "page must be a whole number"),
    ("/api/search?q=a%00b", "q must not contain control characters"),
    ("/api/search?genre=%00", "unknown genre"),
    ("/api/search?q=" + "x" * 20_000, "q must be at most 200 characters"),
    ("/api/search?q=x&year=1990&page=abc", "page must be a whole number"),
]


@pytest.mark.parametrize(("url", "message"), API_400)
def test_bad_api_parameters_are_json_400(client, url, message):
    response = client.get(url)
    assert response.status_code == 400, url
    assert message in response.get_json()["error"]
    assert len(response.get_json()["error"]) < 300  # a huge value is never echoed whole


def test_every_problem_is_named_at_once(client):
    error = client.get(f"/api/search?q=%00&year={SUPERSCRIPT_TWO}").get_json()["error"]
    assert "q must not" in error and "year must be" in error


def test_logged_in_api_parameters(client, seed, helpers):
    helpers.log_in(client, "bob")
    for url, message in (
        (f"/api/ratings?page={SUPERSCRIPT_TWO}", "page must be a whole number"),
        (f"/api/recommendations?k={FULLWIDTH_FIVE}", "k must be a whole number"),
        (f"/api/recommendations?k={SUPERSCRIPT_TWO}", "k must be a whole number"),
        ("/api/recommendations?k=101", "k must be a whole number from 1 to 100"),
    ):
        response = client.get(url)
        assert response.status_code == 400, url
        assert message in response.get_json()["error"]


def test_admin_page_parameter(client, seed, helpers, database):
    with database.session() as s:
        s.get(User, seed.ann).is_admin = True
    helpers.log_in(client, "ann")
    response = client.get(f"/api/admin/users?page={SUPERSCRIPT_TWO}")
    assert response.status_code == 400 and "page must be" in response.get_json()["error"]
    assert client.get("/api/admin/users?page=1").status_code == 200


@pytest.mark.parametrize("digits", [ARABIC_ONE, SUPERSCRIPT_TWO, FULLWIDTH_FIVE, "0", "1" * 20])
def test_ids_in_paths_are_ascii_digits_only(client, seed, digits):
    assert client.get(f"/api/movies/{digits}").status_code == 404
    assert client.get(f"/movies/{digits}").status_code == 404
    assert client.get("/api/movies/1").status_code == 200


def test_search_page_explains_bad_input_with_a_400(client, seed):
    for url, message in (
        ("/search?q=a%00b", "q must not contain control characters"),
        (f"/search?year={SUPERSCRIPT_TWO}", "year must be a whole number"),
    ):
        response = client.get(url)
        assert response.status_code == 400, url
        assert message in response.get_data(as_text=True)


def test_pages_flash_bad_filters_and_pages(client, seed, helpers):
    helpers.log_in(client, "bob")
    for_you = client.get(f"/for-you?decade={SUPERSCRIPT_TWO}")
    assert for_you.status_code == 200 and "unknown decade" in for_you.get_data(as_text=True)
    account = client.get(f"/account?page={SUPERSCRIPT_TWO}")
    assert account.status_code == 200
    assert "showing the first page" in account.get_data(as_text=True)


def test_not_interested_takes_ascii_ids_only(client, seed, helpers, database):
    helpers.log_in(client, "bob")
    response = client.post("/for-you/not-interested", data={"movie_id": "\u0664"})  # "٤"
    assert response.status_code == 302
    with database.session() as s:
        assert s.scalar(select(func.count()).select_from(NotInterested)) == 0
