"""Password guessing is throttled without locking the owner out (issue 19, items 8 and 9).

Item 8: 30 failures from 30 addresses used to lock the real owner out. Now they slow the
account for unknown devices and addresses only: the owner's browser (its known-device
cookie) and an address she logged in from before still get in with her password.

Item 9: limits were per worker and counted after the attempt, so 48 parallel failures ran 26
password checks against a limit of 10. Now every attempt is counted before its password is
checked, in Redis, shared by the workers: tried with real gunicorn workers and real Redis.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import requests
from test_auth_attacks import redis_url  # noqa: F401 (a fixture: a private redis-server)

from movierec.web.auth.throttle import DEVICE_COOKIE

CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def attempt(client, password: str, address: str, username: str = "ann"):
    return client.post(
        "/auth/login",
        data={"username": username, "password": password},
        environ_base={"REMOTE_ADDR": address},
    )


def test_thirty_failures_from_thirty_addresses_do_not_lock_the_owner_out(make_app, seed, helpers):
    app = make_app(login_free_failures=5, login_delay_max=300)
    owner = app.test_client()
    assert attempt(owner, helpers.password, "192.0.2.10").status_code == 302  # her laptop
    assert owner.get_cookie(DEVICE_COOKIE) is not None
    owner.post("/auth/logout")

    attacker = app.test_client()
    codes = [attempt(attacker, f"guess {n}", f"10.0.0.{n}").status_code for n in range(30)]
    checked = codes.count(200)  # the form again: a password was checked
    assert checked <= 6 and codes.count(429) == 30 - checked, codes

    # A stranger's browser from a stranger's address waits, even with her password.
    refused = attempt(app.test_client(), helpers.password, "203.0.113.9")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) <= 300
    # Any browser from an address she logged in from before gets in with her password...
    assert attempt(app.test_client(), helpers.password, "192.0.2.10").status_code == 302
    # ...and so does her browser from an address never seen (a café), once the attacker
    # has slowed the account again.
    for n in range(30, 40):
        attempt(attacker, f"guess {n}", f"10.0.0.{n}")
    assert attempt(app.test_client(), helpers.password, "203.0.113.9").status_code == 429
    assert attempt(owner, helpers.password, "198.51.100.7").status_code == 302


def test_a_forged_device_cookie_is_no_key(make_app, seed, helpers):
    app = make_app(login_free_failures=1, login_delay_max=300)
    attacker = app.test_client()
    attacker.set_cookie(DEVICE_COOKIE, '["ann"]')
    codes = [attempt(attacker, f"guess {n}", f"10.0.0.{n}").status_code for n in range(5)]
    assert codes.count(429) >= 3, codes


def _parallel_failures(base: str, count: int, addresses: bool) -> list[int]:
    with requests.Session() as browser:
        token = CSRF.search(browser.get(f"{base}/auth/login", timeout=10).text).group(1)
        cookies = browser.cookies.get_dict()

    def one(n: int) -> int:
        headers = {"X-Forwarded-For": f"10.1.{n // 200}.{n % 200}"} if addresses else {}
        form = {"username": "ann", "password": f"guess {n}", "csrf_token": token}
        answer = requests.post(
            f"{base}/auth/login", data=form, cookies=cookies, headers=headers, timeout=60
        )
        return answer.status_code

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))


def test_parallel_failures_on_several_workers_run_no_more_checks_than_the_limits(
    serve_web,
    seed,
    redis_url,  # noqa: F811 (the fixture)
):
    limits = {
        "MOVIEREC_RATELIMIT_STORAGE_URI": redis_url,
        "MOVIEREC_RATELIMIT_LOGIN": "10 per minute",
        "MOVIEREC_LOGIN_FREE_FAILURES": "5",
        "MOVIEREC_WEB_PROXY_COUNT": "1",  # X-Forwarded-For names the attacker's addresses
    }
    base = f"http://127.0.0.1:{serve_web(workers=3, **limits)}"

    # From one address: its limit of 10 holds across the workers.
    codes = _parallel_failures(base, 48, addresses=False)
    assert set(codes) <= {200, 429} and codes.count(200) <= 10, codes

    # From 48 addresses at once: the account's free failures, and about one more.
    base_other = f"http://127.0.0.1:{serve_web(workers=3, **limits)}"
    requests.get(f"{base_other}/healthz", timeout=5)
    codes = _parallel_failures(base_other, 48, addresses=True)
    assert set(codes) <= {200, 429} and codes.count(200) <= 5 + 2, codes


def test_a_stolen_session_cannot_guess_the_password_on_the_account_forms(make_app, seed, helpers):
    """The token and password-change forms ask for the password: each guess there is counted
    like a login attempt, before the check (before, they ran unlimited password checks for
    whoever held the session)."""
    app = make_app(ratelimit_login="6 per hour", login_free_failures=3)
    thief = app.test_client()
    assert attempt(thief, helpers.password, "10.9.9.9").status_code == 302  # the session
    codes = []
    for n in range(8):
        form = {"name": f"t{n}", "password": f"guess {n}"}
        answer = thief.post("/account/tokens", data=form, environ_base={"REMOTE_ADDR": "10.9.9.9"})
        codes.append(answer.status_code)
    for n in range(4):
        new = "a new password 123"
        form = {"current": f"guess {n}", "password": new, "confirm": new}
        answer = thief.post(
            "/account/password", data=form, environ_base={"REMOTE_ADDR": "10.9.9.9"}
        )
        codes.append(answer.status_code)
    assert codes.count(429) >= 6, codes  # 6 attempts an hour from one address, logins included
    assert 429 in codes[:8] and set(codes[8:]) == {429}, codes
