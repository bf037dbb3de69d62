"""The account page's security: passwords, linked providers, API tokens, sessions, deletion;
admin pages; the password policy."""

from __future__ import annotations

import re
import secrets
import time

import pytest
from sqlalchemy import func, select, text

from movierec.db import Identity, Preference, Rating, User
from movierec.db.schema import ApiToken, OAuthToken
from movierec.errors import BadInput
from movierec.web import counts
from movierec.web.auth import linking, sessions
from movierec.web.auth.policy import password_problems
from movierec.web.auth.providers import Profile

NEW = "a brand new passphrase"


def as_user(client, user_id: int, generation: int = 0, logged_in_ago: int = 0) -> None:
    """Log the test client in as a user without a password (as an OAuth login would),
    ``logged_in_ago`` seconds ago."""
    now = int(time.time())
    with client.session_transaction() as session:
        session["_user_id"] = str(user_id)
        session[sessions.GENERATION] = generation
        session[sessions.SESSION_ID] = secrets.token_urlsafe(24)
        session[sessions.LOGGED_IN_AT] = now - logged_in_ago
        session[sessions.SEEN_AT] = now


def test_an_account_made_by_a_provider_can_set_a_password_then_log_in_with_it(
    client, oauth_only, helpers
):
    as_user(client, oauth_only)
    page = client.get("/account").get_data(as_text=True)
    assert "Set a password" in page and "Current password" not in page

    answer = client.post("/account/password", data={"password": NEW, "confirm": NEW})
    assert answer.status_code == 302
    assert "Password set." in client.get("/account").get_data(as_text=True)
    client.post("/auth/logout")
    assert helpers.log_in(client, "carol", NEW).status_code == 302


def test_changing_a_password_needs_the_current_one_and_ends_other_sessions(
    client, seed, helpers, database
):
    helpers.log_in(client, "ann")
    elsewhere = client.application.test_client()
    helpers.log_in(elsewhere, "ann")

    wrong = {"current": "not it at all", "password": NEW, "confirm": NEW}
    client.post("/account/password", data=wrong)
    assert "current password is not right" in client.get("/account").get_data(as_text=True)

    right = {"current": helpers.password, "password": NEW, "confirm": NEW}
    client.post("/account/password", data=right)
    assert "Password changed." in client.get("/account").get_data(as_text=True)
    assert client.get("/account").status_code == 200  # this session goes on
    assert elsewhere.get("/account").status_code == 302  # the other one is over
    assert helpers.log_in(elsewhere, "ann", NEW).status_code == 302
    assert helpers.log_in(elsewhere, "ann", helpers.password).status_code == 200


WEAK = (
    ("short", "at least 10"),
    ("Password123!", "most common passwords"),
    ("ann-is-my-name-1", "username in your password"),
    ("aaaaaaaaaaaa", "repeated characters"),
    ("abcabcabcabc", "repeated characters"),
    ("zyxwvutsrqpo", "repeated characters"),
)


def test_weak_new_passwords_are_refused(client, seed, helpers):
    helpers.log_in(client, "ann")
    for password, message in WEAK:
        data = {"current": helpers.password, "password": password, "confirm": password}
        client.post("/account/password", data=data)
        assert message in client.get("/account").get_data(as_text=True), password
    client.post("/auth/logout")
    assert helpers.log_in(client, "ann").status_code == 302  # unchanged


def test_signup_refuses_common_and_personal_passwords(client):
    def signup(username, password):
        data = {"username": username, "password": password, "confirm": password}
        return client.post("/auth/signup", data=data).get_data(as_text=True)

    assert "most common passwords" in signup("dave", "qwertyuiop")
    assert "most common passwords" in signup("dave", "P@ssw0rd2024!")
    assert "username in your password" in signup("davidson", "DavidSon1984!")
    assert "repeated characters" in signup("dave", "1212121212")
    assert "Log out dave" in client.post(
        "/auth/signup",
        data={"username": "dave", "password": NEW, "confirm": NEW},
        follow_redirects=True,
    ).get_data(as_text=True)


@pytest.mark.parametrize(
    "password",
    ["correct horse battery", "a brand new passphrase", "Zq8#mT2!vL9x", "movies at midnight"],
)
def test_good_passwords_pass_the_policy(password):
    assert password_problems(password, "ann") == []


def test_the_last_way_to_log_in_cannot_be_unlinked(client, oauth_only, database):
    as_user(client, oauth_only)
    assert "disabled" in client.get("/account").get_data(as_text=True)
    client.post("/account/identities/oidc/unlink")
    assert "only way to log in" in client.get("/account").get_data(as_text=True)

    client.post("/account/password", data={"password": NEW, "confirm": NEW})
    client.post("/account/identities/oidc/unlink")
    assert "is unlinked" in client.get("/account").get_data(as_text=True)
    with database.session() as s:
        assert s.scalar(select(func.count()).select_from(Identity)) == 0
        assert s.scalar(select(func.count()).select_from(OAuthToken)) == 0  # its token too


def test_an_identity_links_to_one_account_and_an_account_to_one_identity_per_provider(
    seed, database
):
    alice = Profile("a-1", "Alice", "alice", "alice@example.test", True)
    with database.session() as s:
        linking.link(s, seed.ann, "oidc", alice)
    with database.session() as s:
        with pytest.raises(BadInput, match="already linked to another"):
            linking.link(s, seed.bob, "oidc", alice)
        with pytest.raises(BadInput, match="already linked to yours"):
            linking.link(s, seed.ann, "oidc", alice)
        with pytest.raises(BadInput, match="unlink it first"):
            linking.link(s, seed.ann, "oidc", Profile("a-2", None, None, None, False))
        linking.link(s, seed.ann, "google", Profile("g-1", None, None, None, False))
    with database.session() as s:
        assert linking.identity_owner(s, "oidc", "a-1").id == seed.ann
        assert [i.provider for i in linking.identities_of(s, seed.ann)] == ["oidc", "google"]


def test_accounts_made_by_a_provider_get_a_free_username(database):
    with database.session() as s:
        s.add(User(username="alice"))
    names = []
    for subject, hint, email in (
        ("1", "alice", None),
        ("2", None, "alice@x.test"),
        ("3", "<>", None),
    ):
        with database.session() as s:
            user = linking.create_account(s, "oidc", Profile(subject, "A", hint, email, True))
            names.append((user.username, user.email))
    assert names == [("alice-2", None), ("alice-3", "alice@x.test"), ("oidc-user", None)]


def test_api_tokens_are_shown_once_stored_hashed_and_revocable(client, seed, helpers, database):
    helpers.log_in(client, "ann")
    page = client.post(
        "/account/tokens", data={"name": "my laptop", "password": helpers.password}
    ).get_data(as_text=True)
    token = re.search(r'<code id="new-token">([^<]+)</code>', page).group(1)
    assert "new-token" not in client.get("/account").get_data(as_text=True)
    with database.session() as s:
        row = s.scalar(select(ApiToken))
        assert row.name == "my laptop" and token.startswith(f"mrt_{row.prefix}_")
        assert token not in (row.token_hash, row.prefix) and len(row.token_hash) == 64
        assert row.last_used_at is None

    script = client.application.test_client()  # no cookies at all
    bearer = {"Authorization": f"Bearer {token}"}
    answer = script.get("/api/ratings", headers=bearer)
    assert answer.status_code == 200
    assert len(answer.get_json()["ratings"]) == 2
    with database.session() as s:
        assert s.scalar(select(ApiToken.last_used_at)) is not None

    client.post(f"/account/tokens/{row.id}/revoke")
    refused = script.get("/api/ratings", headers=bearer)
    assert refused.status_code == 401
    assert refused.get_json() == {"error": "invalid or revoked API token"}
    assert script.get("/api/movies/1", headers=bearer).status_code == 401


def test_tokens_are_revoked_only_by_their_owner(client, seed, helpers, database):
    helpers.log_in(client, "ann")
    client.post("/account/tokens", data={"name": "ann's", "password": helpers.password})
    with database.session() as s:
        token_id = s.scalar(select(ApiToken.id))
    client.post("/auth/logout")
    helpers.log_in(client, "bob")
    client.post(f"/account/tokens/{token_id}/revoke")
    assert "No such token." in client.get("/account").get_data(as_text=True)
    with database.session() as s:
        assert s.scalar(select(func.count()).select_from(ApiToken)) == 1


def test_deleting_the_account_deletes_its_data_and_forgets_it(client, seed, helpers, database):
    helpers.log_in(client, "ann")
    client.post("/account/genres", data={"genres": ["Drama"]})
    client.post("/account/tokens", data={"name": "t", "password": helpers.password})
    assert client.post("/account/delete", data={"confirm": "not ann"}).status_code == 302
    assert client.get("/account").status_code == 200  # wrong confirmation: still there

    response = client.post("/account/delete", data={"confirm": "ann"}, follow_redirects=True)
    assert "are deleted" in response.get_data(as_text=True)
    assert client.get("/account").status_code == 302
    assert helpers.log_in(client, "ann").status_code == 200  # gone
    with database.session() as s:
        assert s.get(User, seed.ann) is None
        for model in (Rating, Preference, ApiToken):
            assert s.scalar(select(func.count()).where(model.user_id == seed.ann)) == 0
        assert s.scalar(select(func.count()).where(Rating.user_id == seed.bob)) == 3
        # Forgotten: no history row of hers is left, one marker says who deleted what.
        left = s.scalar(
            text("SELECT count(*) FROM change_history WHERE account_id = :u"), {"u": seed.ann}
        )
        forgotten = s.execute(
            text("SELECT table_name, row_key, actor FROM change_history WHERE op = 'FORGET'")
        ).all()
    assert left == 0
    assert forgotten == [("users", {"id": seed.ann}, f"user:{seed.ann}")]


def test_the_admin_page_estimates_a_large_table_instead_of_counting_it(
    client, seed, helpers, database, monkeypatch
):
    """count(*) over 20M ratings (half on shards) cost seconds per admin page view: above
    EXACT_BELOW rows the page shows the planner's estimate, as of the last ANALYZE."""
    monkeypatch.setattr(counts, "EXACT_BELOW", 3)
    with database.session() as s:
        s.get_one(User, seed.ann).is_admin = True
        s.execute(text("ANALYZE ratings"))
        s.add(Rating(user_id=seed.ann, movie_id=seed.alien, rating=3.0))  # not analyzed
    helpers.log_in(client, "ann")
    page = client.get("/admin").get_data(as_text=True)
    assert re.search(r'<td id="rating-count"><abbr [^>]*>≈ 5</abbr></td>', page)
    assert '<td id="user-count">2</td>' in page  # below the line: counted


def test_the_user_list_estimates_its_total_and_pages_without_counting(
    client, seed, helpers, database, monkeypatch
):
    """count(*) over a million users cost 287 ms per page of the list: above EXACT_BELOW
    the total is the planner's estimate, and whether a next page exists comes from one row
    more than a page."""
    from movierec.web import admin

    monkeypatch.setattr(counts, "EXACT_BELOW", 2)
    monkeypatch.setattr(admin, "USERS_PAGE", 1)
    with database.session() as s:
        s.get_one(User, seed.ann).is_admin = True
        s.execute(text("ANALYZE users"))
    helpers.log_in(client, "ann")
    first, second = (client.get(f"/api/admin/users?page={n}").get_json() for n in (1, 2))
    assert (first["total"], first["total_estimated"]) == (2, True)
    assert [u["username"] for u in first["users"]] == ["ann"] and first["has_next"] is True
    assert [u["username"] for u in second["users"]] == ["bob"] and second["has_next"] is False


def test_admin_pages_need_the_admin_role(client, seed, helpers, database):
    assert client.get("/api/admin/users").status_code == 401
    assert client.get("/admin").status_code == 302  # to the login page
    helpers.log_in(client, "bob")
    assert client.get("/admin").status_code == 403
    assert client.get("/api/admin/users").get_json() == {"error": "This page is for admins."}
    assert "Admin</a>" not in client.get("/").get_data(as_text=True)

    with database.session() as s:
        s.get_one(User, seed.ann).is_admin = True
    client.post("/auth/logout")
    helpers.log_in(client, "ann")
    page = client.get("/admin").get_data(as_text=True)
    assert '<td id="user-count">2</td>' in page
    assert '<td id="rating-count">5</td>' in page  # small tables are counted
    listing = client.get("/api/admin/users").get_json()
    assert (listing["total"], listing["total_estimated"], listing["has_next"]) == (2, False, False)
    assert [u["username"] for u in listing["users"]] == ["ann", "bob"]
    assert listing["users"][0]["is_admin"] is True
    assert listing["users"][1] | {"created_at": None} == {
        "id": seed.bob,
        "username": "bob",
        "display_name": None,
        "email": None,
        "is_admin": False,
        "has_password": True,
        "providers": [],
        "created_at": None,
    }
    assert "password_hash" not in str(listing)
