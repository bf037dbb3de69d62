"""A locked account (``movierec users lock``, issue 21 item 7) has no way in: its open
sessions end at once, its API tokens stop working, and neither a password nor a provider
login opens it, until it is unlocked."""

from __future__ import annotations

from test_session_ends import make_token, works

from movierec.db import accounts


def test_lock_ends_the_open_session_and_tokens_and_refuses_logins(client, seed, helpers, database):
    helpers.log_in(client, "ann")
    token = make_token(client, helpers.password)
    assert client.get("/account").status_code == 200 and works(client.application, token)

    with database.session() as s:
        assert accounts.lock(s, seed.ann)

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
    with database.session() as s:
        accounts.lock(s, seed.ann)
    with client.session_transaction() as session:
        session["_generation"] = session["_generation"] + 1
    assert client.get("/account").status_code == 302
