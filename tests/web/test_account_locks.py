"""A locked account (``movierec users lock``, issue 21 item 7) has no way in: its open
sessions end at once, its API tokens stop working, and neither a password nor a provider
login opens it, until it is unlocked."""

from __future__ import annotations

from sqlalchemy import select
from support.browser import new_page
from test_cache import listening, wait_until
from test_oauth_browser import log_in_with
from test_session_ends import make_token, works

from movierec.db import User, accounts


def test_lock_ends_the_open_session_and_tokens_and_refuses_logins(client, seed, helpers, database):
    helpers.log_in(client, "ann")
    token = make_token(client, helpers.password)
    assert client.get("/account").status_code == 200 and works(client.application, token)
    log = listening(client.application)
    stamp = log.now()

    with database.session() as s:
        assert accounts.lock(s, seed.ann)
    # The worker's cached session is refused once the change notification arrives (as for
    # "log out everywhere" from another worker: movierec.web.auth.sessions).
    wait_until(lambda: not log.fresh(seed.ann, stamp))

    assert client.get("/account").status_code == 302  # to the login page
    assert not works(client.application, token)
    page = helpers.log_in(client, "ann")
    assert "This account is locked" in page.get_data(as_text=True)
    assert client.get("/account").status_code == 302
    # A wrong password is told nothing about the lock.
    wrong = helpers.log_in(client, "ann", "not her password")
    assert "locked" not in wrong.get_data(as_text=True)

    with database.session() as s:
        assert accounts.unlock(s, seed.ann)
    helpers.log_in(client, "ann")
    assert client.get("/account").status_code == 200


def test_a_session_made_before_the_lock_is_refused_even_with_a_matching_generation(
    client, seed, helpers, database
):
    """The loader checks the lock itself, not only the generation the lock raised."""
    helpers.log_in(client, "ann")
    log = listening(client.application)
    stamp = log.now()
    with database.session() as s:
        accounts.lock(s, seed.ann)
    wait_until(lambda: not log.fresh(seed.ann, stamp))
    with client.session_transaction() as session:
        session["_generation"] = session["_generation"] + 1
    assert client.get("/account").status_code == 302


def test_a_provider_login_to_a_locked_account_is_refused(page, browser, site, providers, database):
    log_in_with(page, site, "Test OP", providers.oidc, "alice")
    page.wait_for_url(f"{site.url}/welcome")  # her account is made
    with database.session() as s:
        alice = s.scalar(select(User.id))  # the only account
        accounts.lock(s, alice)
    page.goto(f"{site.url}/account")
    assert page.url.startswith(f"{site.url}/auth/login")  # her session ended

    with new_page(browser) as again:  # another browser: a full sign-in at the provider
        log_in_with(again, site, "Test OP", providers.oidc, "alice")
        again.wait_for_url(f"{site.url}/auth/login")
        assert "This account is locked" in again.inner_text("main")
        assert again.locator("header nav a:has-text('Log in')").count() == 1
