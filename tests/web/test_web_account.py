"""The account page: own ratings, recent searches, preferred genres."""

from __future__ import annotations

from sqlalchemy import select

from movierec.db import Preference


def test_account_page_lists_own_ratings_and_searches(client, seed, helpers):
    helpers.log_in(client, "ann")
    client.get("/search?q=alien&genre=Horror", headers={"Sec-Fetch-Site": "same-origin"})
    response = client.get("/account")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert sorted(helpers.titles(response)) == ["Heat", "The Godfather"]  # not bob's
    assert "<td>5 ★</td>" in page and "<td>4 ★</td>" in page
    assert "alien · Horror" in page


def test_preferred_genres_are_saved_and_shown_checked(client, seed, helpers, database):
    helpers.log_in(client, "ann")
    response = client.post(
        "/account/genres", data={"genres": ["Horror", "Sci-Fi"]}, follow_redirects=True
    )
    page = response.get_data(as_text=True)
    assert "Preferred genres saved." in page
    assert 'checked id="genres-15" name="genres" type="checkbox" value="Sci-Fi"' in page
    assert 'id="genres-0" name="genres" type="checkbox" value="Action"' in page  # unchecked

    client.post("/account/genres", data={"genres": ["Drama"]})
    with database.session() as s:
        assert s.scalar(select(Preference.genres).where(Preference.user_id == seed.ann)) == [
            "Drama"
        ]


def test_unknown_genres_are_refused(client, seed, helpers, database):
    helpers.log_in(client, "ann")
    response = client.post("/account/genres", data={"genres": ["Spaghetti"]}, follow_redirects=True)
    assert "Those genres were not understood." in response.get_data(as_text=True)
    with database.session() as s:
        assert s.scalar(select(Preference)) is None


def test_account_needs_a_login(client):
    assert client.get("/account").headers["Location"] == "/auth/login?next=/account"


def test_the_account_page_is_one_blueprint(app):
    """Every /account route, its security actions too, is the account blueprint's: the page
    and its actions were two blueprints that imported each other."""
    owners = {
        rule.endpoint.partition(".")[0]
        for rule in app.url_map.iter_rules()
        if rule.rule == "/account" or rule.rule.startswith("/account/")
    }
    assert owners == {"account"}
    assert "account.create_token" in app.view_functions
