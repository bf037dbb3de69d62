"""The pages that gained stars, pages and orders, in headless Chromium at a phone's width
(390 px) and a laptop's (1280 px): nothing wider than the screen, the star badges shown, the
forms' tab order the reading order, the pager worked from the keyboard.

Screenshots go to the test artifacts directory; with MOVIEREC_SCREENSHOTS=docs/screenshots
(a path from the repository root) they are written there, as committed and shown in the
README.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.browser import save_screenshot

from movierec.db import Movie

ROOT = Path(__file__).resolve().parents[2]
WIDTHS = {"phone": (390, 844), "laptop": (1280, 800)}


@pytest.fixture
def site(make_app, live_site, seed, ai, database):
    """The site as deployed (CSRF on) with 40 more movies, ann's picks and stars."""
    with database.session() as s:
        s.add_all(
            Movie(id=100 + i, title=f"A Long Night in Film City, Part {i}", year=1959 + i,
                  genres=["Drama", "Sci-Fi"])
            for i in range(1, 41)
        )  # fmt: skip
    picks = [seed.alien, seed.toy, seed.shining, *range(101, 141)]
    ai.recommendations[seed.ann] = [(m, 1.0 - n / 100) for n, m in enumerate(picks)]
    ai.stars[seed.ann] = {m: 2.0 + (m % 7) / 2.5 for m in picks}
    ai.similar[seed.alien] = [(seed.shining, 0.9), (seed.toy, 0.7), (101, 0.5)]
    live_site.app = make_app(WTF_CSRF_ENABLED=True, TESTING=False)
    yield live_site
    live_site.app = None


def shots_dir() -> Path | None:
    wanted = os.environ.get("MOVIEREC_SCREENSHOTS")
    return (ROOT / wanted) if wanted else None


def fits_the_screen(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


@pytest.mark.parametrize("device", list(WIDTHS))
def test_pages_at_a_phone_and_a_laptop_width(page, site, seed, helpers, device):
    width, height = WIDTHS[device]
    page.set_viewport_size({"width": width, "height": height})
    page.goto(f"{site.url}/auth/login")
    page.fill("input[name=username]", "ann")
    page.fill("input[name=password]", helpers.password)
    page.click("button:has-text('Log in')")
    page.wait_for_url(f"{site.url}/")

    page.goto(f"{site.url}/for-you")
    assert page.locator(".predicted").first.is_visible()
    assert fits_the_screen(page), "for you is wider than the screen"
    save_screenshot(page, f"for-you-{width}", shots_dir())
    # The pager from the keyboard: focus "Next", press Enter.
    page.focus("a[rel=next]")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{site.url}/for-you?page=2")
    assert "Page 2" in page.inner_text(".pager")

    page.goto(f"{site.url}/search?genre=Sci-Fi&sort=newest")
    # The stars come after the page (static/stars.js): each place left for them filled.
    page.wait_for_selector("ul.movies .predicted")
    page.wait_for_function("document.querySelectorAll('[data-stars-for]').length === 0")
    assert page.locator("ul.movies .predicted").count() == page.locator("ul.movies li").count()
    assert fits_the_screen(page), "search is wider than the screen"
    # The tab order is the reading order, each control named by its label.
    page.focus("#search-q")
    order = []
    for _ in range(4):
        page.keyboard.press("Tab")
        order.append(page.evaluate("document.activeElement.id || document.activeElement.type"))
    assert order == ["search-genre", "search-year", "search-sort", "submit"]
    assert page.get_by_label("Order").input_value() == "newest"
    save_screenshot(page, f"search-{width}", shots_dir())

    page.goto(f"{site.url}/movies/{seed.alien}")
    assert page.locator(".prediction .predicted").is_visible()
    assert fits_the_screen(page), "the movie page is wider than the screen"
    save_screenshot(page, f"movie-{width}", shots_dir())
