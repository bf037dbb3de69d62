"""Predicted stars beside movies ("you'd rate it ≈ 4.1"): one recommender call per page, kept
as the user's lists are, gone with a new rating, and never in the way when the recommender is
down. The stand-in answers /predictions per the wire contract; the real server's fold-in is
tests/ai/test_ai_contract.py's."""

from __future__ import annotations

import re

from movierec.web import cache

BADGE = "you'd rate it ≈ {:.1f} ★"


def predictions_calls(ai) -> list[str]:
    return [c for c in ai.calls if c.startswith("/predictions")]


def test_the_movie_page_shows_the_movies_and_its_similar_movies_stars_in_one_call(
    client, seed, ai, helpers
):
    ai.similar[seed.alien] = [(seed.shining, 0.9), (seed.toy, 0.8)]
    ai.stars[seed.ann] = {seed.alien: 4.14, seed.shining: 3.26, seed.toy: 2.0}
    helpers.log_in(client, "ann")
    page = client.get(f"/movies/{seed.alien}").get_data(as_text=True)
    for stars in (4.1, 3.3, 2.0):
        assert BADGE.format(stars) in page
    assert "We predict you would rate it 4.1 out of 5 stars" in page  # read aloud
    assert len(predictions_calls(ai)) == 1
    client.get(f"/movies/{seed.alien}")
    client.get(f"/movies/{seed.shining}")  # the same user's stars, kept: no call
    assert len(predictions_calls(ai)) == 1


def test_a_new_rating_drops_the_kept_stars_and_its_movie_shows_none(client, seed, ai, helpers):
    ai.stars[seed.ann] = {seed.alien: 4.14}
    helpers.log_in(client, "ann")
    assert BADGE.format(4.1) in client.get(f"/movies/{seed.alien}").get_data(as_text=True)
    assert client.post(f"/movies/{seed.alien}/rating", data={"rating": "2.0"}).status_code == 302
    ai.stars[seed.ann] = {}  # the recommender leaves rated movies out
    page = client.get(f"/movies/{seed.alien}").get_data(as_text=True)
    assert "You rated it <strong>2</strong>" in page and "you'd rate it" not in page
    assert len(predictions_calls(ai)) == 2


def test_search_results_leave_the_stars_to_the_pages_script(client, seed, ai, helpers):
    """The results are everyone's; the user's stars would cost each user's first search a
    recommender call: the page leaves a place for each and asks after it (static/stars.js)."""
    ai.stars[seed.ann] = {seed.shining: 3.5, seed.alien: 4.5}
    anonymous = client.get("/search?genre=Horror").get_data(as_text=True)
    assert "data-stars-for" not in anonymous and "stars.js" not in anonymous
    helpers.log_in(client, "ann")
    page = client.get("/search?genre=Horror").get_data(as_text=True)
    assert "you'd rate it" not in page and predictions_calls(ai) == []
    slots = sorted(int(m) for m in re.findall(r'data-stars-for="(\d+)"', page))
    assert slots == sorted([seed.alien, seed.shining]) and 'src="/static/stars.js"' in page
    answer = client.get(f"/stars?movies={seed.alien},{seed.shining}")
    assert answer.headers["Cache-Control"] == "private, no-store"
    badges = answer.get_json()["badges"]
    assert BADGE.format(4.5) in badges[str(seed.alien)]
    assert BADGE.format(3.5) in badges[str(seed.shining)]
    assert len(predictions_calls(ai)) == 1  # one call for the list
    client.get(f"/stars?movies={seed.alien}")
    assert len(predictions_calls(ai)) == 1  # kept


def test_the_stars_of_a_page_need_a_login_and_well_formed_ids(client, seed, ai, helpers):
    assert client.get(f"/stars?movies={seed.alien}").status_code == 302  # to the login page
    helpers.log_in(client, "ann")
    for bad in ("", "?movies=", "?movies=x", "?movies=" + ",".join(["1"] * 101)):
        answer = client.get(f"/stars{bad}")
        assert answer.status_code == 400, bad
    assert predictions_calls(ai) == []


def test_with_the_recommender_down_a_pages_stars_are_none(client, seed, ai, helpers):
    helpers.log_in(client, "ann")
    ai.status = 503
    answer = client.get(f"/stars?movies={seed.alien}")
    assert answer.status_code == 200 and answer.get_json() == {"badges": {}}


def test_for_you_stars_come_with_the_list(client, seed, ai, helpers):
    ai.recommendations[seed.ann] = [(seed.alien, 0.9), (seed.toy, 0.8)]
    ai.stars[seed.ann] = {seed.alien: 4.24}
    helpers.log_in(client, "ann")
    page = client.get("/for-you").get_data(as_text=True)
    assert BADGE.format(4.2) in page
    assert predictions_calls(ai) == []  # with /recommend's stars=1: one call for the list


def test_with_the_recommender_down_pages_render_without_stars(client, seed, ai, helpers, app):
    helpers.log_in(client, "ann")
    ai.status = 503
    for path in (f"/movies/{seed.alien}", "/search?q=alien", "/for-you"):
        answer = client.get(path)
        assert answer.status_code == 200, path
        assert "you'd rate it" not in answer.get_data(as_text=True)
    with app.app_context():
        assert cache.caches().predictions.peek((seed.ann, 0)) is None  # nothing kept


def test_kept_stars_are_asked_again_after_ten_minutes(app, seed, ai, helpers):
    """A rating model promoted alone does not change the version /health reports (the
    ranking model's): the kept stars then live at most the cache's TTL."""
    now = [1000.0]
    app.extensions[cache.EXTENSION] = cache.WebCaches.sized(64, clock=lambda: now[0])
    client = app.test_client()
    ai.stars[seed.ann] = {seed.alien: 4.14}
    helpers.log_in(client, "ann")
    client.get(f"/movies/{seed.alien}")
    now[0] += 599
    client.get(f"/movies/{seed.alien}")
    assert len(predictions_calls(ai)) == 1
    ai.stars[seed.ann] = {seed.alien: 2.0}
    now[0] += 2
    page = client.get(f"/movies/{seed.alien}").get_data(as_text=True)
    assert len(predictions_calls(ai)) == 2 and BADGE.format(2.0) in page


def test_stars_grown_by_later_pages_still_expire_ten_minutes_after_they_were_asked(
    app, seed, ai, helpers
):
    """Each page of the user's adds its movies' stars to the kept ones: that must not keep
    them alive past the TTL, or a user who keeps browsing never sees a new rating model's."""
    now = [1000.0]
    app.extensions[cache.EXTENSION] = cache.WebCaches.sized(64, clock=lambda: now[0])
    client = app.test_client()
    ai.stars[seed.ann] = {seed.alien: 4.14, seed.toy: 3.0}
    helpers.log_in(client, "ann")
    client.get(f"/movies/{seed.alien}")
    for step in range(3):  # pages of other movies within the ten minutes
        now[0] += 150
        client.get(f"/movies/{seed.toy if step % 2 == 0 else seed.shining}")
    calls = len(predictions_calls(ai))
    ai.stars[seed.ann] = {seed.alien: 2.0}
    now[0] += 151  # 601 s after Alien's stars were asked for
    page = client.get(f"/movies/{seed.alien}").get_data(as_text=True)
    assert len(predictions_calls(ai)) == calls + 1 and BADGE.format(2.0) in page
