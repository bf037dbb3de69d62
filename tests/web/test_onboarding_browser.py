"""The first visit in a real headless Chromium (issue 21, item 2): sign up, tick genres, rate
from the dropdowns, land on a "for you" that asked the recommender anew. The rating page's
screenshot goes to docs/screenshots/onboarding.png (with MOVIEREC_UPDATE_SCREENSHOTS=1)."""

from __future__ import annotations

from sqlalchemy import select
from test_oauth_browser import screenshot
from test_onboarding import crowd  # noqa: F401  (the fixture)

from movierec.db import Preference, Rating, User


def test_sign_up_pick_genres_rate_and_see_for_you(page, live_site, make_app, crowd, ai, database):  # noqa: F811
    live_site.app = make_app(WTF_CSRF_ENABLED=True, TESTING=False)
    try:
        site = live_site.url
        page.goto(f"{site}/auth/signup")
        page.fill("input[name=username]", "newcomer")
        page.fill("input[name=password]", "popcorn at midnight 42")
        page.fill("input[name=confirm]", "popcorn at midnight 42")
        page.click("button:has-text('Create account')")
        page.wait_for_url(f"{site}/welcome")
        assert "Step 1 of 2" in page.inner_text("main")

        page.get_by_label("Drama").check()
        page.get_by_label("Comedy").check()
        page.click("button:has-text('Next: rate movies')")
        page.wait_for_url(f"{site}/welcome/rate")
        selects = page.locator("ol.to-rate select")
        assert selects.count() == 12  # a dozen, the two genres taking turns
        labels = page.locator("ol.to-rate label").all_inner_texts()
        assert all(label.startswith("Movie ") for label in labels)
        # Each dropdown is named by its movie's title (a label for screen readers).
        first = labels[0].split(" (")[0]
        page.get_by_label(first).select_option("4.5")
        page.locator("ol.to-rate select").nth(1).select_option("2.0")
        screenshot(page, "onboarding")

        page.click("button:has-text('Done: show my recommendations')")
        page.wait_for_url(f"{site}/for-you")
        assert "your 2 new ratings" in page.inner_text("main")
        with database.session() as s:
            user = s.scalar(select(User.id).where(User.username == "newcomer"))
            genres = s.scalar(select(Preference.genres).where(Preference.user_id == user))
            assert sorted(genres) == ["Comedy", "Drama"]
            stars = sorted(s.scalars(select(Rating.rating).where(Rating.user_id == user)))
        assert stars == [2.0, 4.5]
        assert sorted(ai.contexts[user]["stars"]) == [2.0, 4.5]  # sent to be folded in
    finally:
        live_site.app = None
