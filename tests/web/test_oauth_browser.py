"""End to end: headless Chromium, the site on a real socket, two real OpenID Connect providers.

The site has the generic provider ("Test OP", slot ``oidc``) and a second provider in the
``google`` slot (``google_issuer`` points at it). Every step is what a person does: click, type,
consent. Screenshots of the login and account pages go to docs/screenshots/.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from sqlalchemy import func, select
from support.browser import artifacts_dir
from support.oidc import OIDCProvider

from movierec.db import Identity, User
from movierec.db.schema import OAuthToken

# README's screenshots are refreshed only on request (MOVIEREC_UPDATE_SCREENSHOTS=1), so that a
# test run leaves the checkout clean; otherwise they go with the other test artifacts.
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
SCREENSHOTS = (
    DOCS_SCREENSHOTS
    if os.environ.get("MOVIEREC_UPDATE_SCREENSHOTS") == "1"
    else artifacts_dir() / "screenshots"
)
NEW_PASSWORD = "popcorn at midnight 42"


def sign_in_at_provider(page, provider: OIDCProvider, login: str) -> None:
    """Drive the provider's dev login and consent pages, as a person would."""
    page.wait_for_url(f"{provider.issuer}/interaction/**")
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", "any password at all")
    page.click("button:has-text('Sign-in')")
    page.wait_for_url(f"{provider.issuer}/interaction/**")
    assert "Authorize" in page.inner_text("h1")
    page.click("button:has-text('Continue')")


def log_in_with(page, site, title: str, provider, login: str) -> None:
    page.goto(f"{site.url}/auth/login")
    page.click(f"button:has-text('Log in with {title}')")
    sign_in_at_provider(page, provider, login)


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1100, "height": 800})
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_log_in_link_set_password_log_out_and_back_in(page, site, providers, database):
    page.goto(f"{site.url}/auth/login")
    assert page.locator("button.provider").all_inner_texts() == [
        "Log in with Google",
        "Log in with Test OP",
    ]
    screenshot(page, "login")

    # First login at the provider creates the account, named as the provider names her.
    page.click("button:has-text('Log in with Test OP')")
    sign_in_at_provider(page, providers.oidc, "alice")
    page.wait_for_url(f"{site.url}/welcome")  # a new account: the first visit's steps
    assert page.inner_text("header nav button") == "Log out Test alice"
    assert "Welcome, Test alice!" in page.inner_text("main")

    # Link the second provider from the account page.
    page.goto(f"{site.url}/account")
    assert page.inner_text("h1") == "Test alice"
    page.click("button:has-text('Link Google')")
    sign_in_at_provider(page, providers.google, "alice.g")
    page.wait_for_url(f"{site.url}/account")
    assert "Google is linked" in page.inner_text("main")
    assert page.locator("ul.linked .provider-name").all_inner_texts() == ["Test OP", "Google"]

    # Set a password (she has none: the provider made the account).
    page.fill("#password input[name=password]", NEW_PASSWORD)
    page.fill("#password input[name=confirm]", NEW_PASSWORD)
    page.click("#password button[type=submit]")
    assert "Password set." in page.inner_text("main")
    page.fill("#tokens input[name=name]", "laptop script")
    page.fill("#tokens input[name=password]", NEW_PASSWORD)  # a token asks for it
    page.click("#tokens button:has-text('Create token')")
    assert re.fullmatch(r"mrt_[0-9a-f]{12}_[\w-]{43}", page.inner_text("#new-token"))
    page.goto(f"{site.url}/account")  # the token is not shown again, only its start
    assert page.locator("#new-token").count() == 0
    assert "laptop script" in page.inner_text("#tokens")
    screenshot(page, "account")

    with database.session() as s:
        alice = s.scalar(select(User).where(User.username == "alice"))
        assert (alice.display_name, alice.email) == ("Test alice", "alice@example.test")
        assert alice.password_hash.startswith("$argon2id$")
        linked = s.execute(
            select(Identity.provider, Identity.subject).where(Identity.user_id == alice.id)
        ).all()
        assert sorted(linked) == [("google", "alice.g"), ("oidc", "alice")]
        stored = s.scalars(select(OAuthToken).where(OAuthToken.user_id == alice.id)).all()
        assert sorted(t.provider for t in stored) == ["google", "oidc"]
        assert all(t.token["access_token"] for t in stored)

    page.click("header nav button:has-text('Log out')")
    page.wait_for_url(f"{site.url}/")
    assert page.locator("header nav a:has-text('Log in')").count() == 1

    page.goto(f"{site.url}/auth/login")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", NEW_PASSWORD)
    page.click("form.card button:has-text('Log in')")
    page.wait_for_url(f"{site.url}/")
    assert page.inner_text("header nav button") == "Log out Test alice"


def test_forged_state_on_the_callback_is_refused(page, site, providers, database):
    """The state coming back is not the one this browser's sign-in holds: refused, and the
    code is never redeemed (no account, no token)."""

    def forge_state(route):
        response = route.fetch(max_redirects=0)
        location = response.headers["location"]
        forged = re.sub(r"([?&]state=)", r"\1forged-", location)
        route.fulfill(response=response, headers={**response.headers, "location": forged})

    page.route(f"{site.url}/auth/oauth/oidc", forge_state)
    callback = re.compile(re.escape(site.redirect_uri("oidc")) + r"\?.*")
    with page.expect_response(callback) as answer:
        log_in_with(page, site, "Test OP", providers.oidc, "mallory")

    assert "state=forged-" in answer.value.url
    assert answer.value.status == 403
    assert "not for a sign-in started here" in page.inner_text("main")
    assert page.locator("header nav a:has-text('Log in')").count() == 1
    with database.session() as s:
        assert s.scalar(select(func.count()).select_from(User)) == 0
        assert s.scalar(select(func.count()).select_from(OAuthToken)) == 0


def test_replayed_callback_is_refused(page, browser, site, providers):
    callbacks = []
    page.on(
        "request",
        lambda r: callbacks.append(r.url) if "/auth/oauth/oidc/authorized" in r.url else None,
    )
    log_in_with(page, site, "Test OP", providers.oidc, "alice")
    page.wait_for_url(f"{site.url}/welcome")
    assert len(callbacks) == 1

    # Again in the same browser: its sign-in was used up.
    again = page.goto(callbacks[0])
    assert again.status == 400
    assert "already used or has expired" in page.inner_text("main")

    # In someone else's browser (a leaked callback URL): no sign-in of theirs to match.
    other = browser.new_context()
    try:
        stolen = other.new_page()
        answer = stolen.goto(callbacks[0])
        assert answer.status == 400
        stolen.goto(f"{site.url}/account")
        assert stolen.url.startswith(f"{site.url}/auth/login")
    finally:
        other.close()


def test_verified_email_of_an_existing_account_does_not_take_it_over(
    page, site, providers, database, helpers
):
    with database.session() as s:
        s.add(User(username="alice-local", email="Alice@Example.test", password_hash="x"))

    log_in_with(page, site, "Test OP", providers.oidc, "alice")

    page.wait_for_url(f"{site.url}/auth/login")
    assert "An account with the email address alice@example.test exists already" in (
        page.inner_text("main")
    )
    assert page.locator("header nav a:has-text('Log in')").count() == 1
    with database.session() as s:
        assert s.scalars(select(User.username)).all() == ["alice-local"]
        assert s.scalar(select(func.count()).select_from(Identity)) == 0


def test_a_name_from_the_provider_is_shown_as_text(page, site, providers):
    """XSS through the provider's ``name`` claim ("Test <login>"): it must stay text."""
    login = '<img src=x onerror="document.title=1">'
    log_in_with(page, site, "Test OP", providers.oidc, login)
    page.wait_for_url(f"{site.url}/welcome")
    assert page.inner_text("header nav button") == f"Log out Test {login}"
    page.goto(f"{site.url}/account")
    assert page.inner_text("h1") == f"Test {login}"
    assert page.locator("main img, header img").count() == 0
    assert "&lt;img" in page.content()
