"""``movierec users`` (issue 21, item 7): accounts from the command line, on a real
PostgreSQL, with the one-line errors of every command and passwords never in argv."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from movierec.cli.main import app
from movierec.db import Rating, User
from movierec.db.schema import ApiToken
from movierec.web.auth import Passwords

GOOD = "a long enough passphrase"


@pytest.fixture
def run(db_url, tmp_path, monkeypatch):
    monkeypatch.setenv("MOVIEREC_DATABASE_URL", db_url)
    monkeypatch.setenv("MOVIEREC_STATE_DIR", str(tmp_path / "state"))

    def invoke(*args: str, input: str | None = None):
        return CliRunner().invoke(app, list(args), input=input)

    return invoke


def _error(result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def _password_file(tmp_path, text: str = GOOD + "\n"):
    path = tmp_path / "pw"
    path.write_text(text)
    return str(path)


def test_create_an_admin_from_a_password_file_who_can_log_in(run, tmp_path, database):
    result = run(
        "users", "create", "root_ann", "--admin", "--password-file", _password_file(tmp_path)
    )
    assert result.exit_code == 0, result.output
    assert "created account" in result.stdout and "(admin)" in result.stdout
    with database.session() as s:
        user = s.scalar(select(User).where(User.username == "root_ann"))
        assert user.is_admin and user.locked_at is None
        Passwords().hasher.verify(user.password_hash, GOOD)  # the site would accept it
    assert GOOD not in result.output


def test_create_reads_a_hidden_prompt_twice(run):
    result = run("users", "create", "bea", input=f"{GOOD}\n{GOOD}\n")
    assert result.exit_code == 0, result.output
    assert GOOD not in result.stdout  # the prompt hides what is typed
    show = run("users", "show", "bea")
    assert "role: user" in show.stdout and "logins: password" in show.stdout


@pytest.mark.parametrize(
    ("username", "password", "said"),
    [
        ("no spaces", GOOD, "a username is 3 to 64"),
        ("x", GOOD, "a username is 3 to 64"),
        ("carl", "short", "at least 10 characters"),
        ("carl", "password123", "most common passwords"),
        ("carl", "carl carl carl 2024", "username in your password"),
    ],
)
def test_create_refuses_what_the_sign_up_form_refuses(run, tmp_path, username, password, said):
    line = _error(
        run("users", "create", username, "--password-file", _password_file(tmp_path, password))
    )
    assert said in line
    assert password not in line or password == GOOD


def test_a_taken_username_and_a_missing_file_are_one_line(run, tmp_path):
    pw = _password_file(tmp_path)
    assert run("users", "create", "dan", "--password-file", pw).exit_code == 0
    assert "is taken" in _error(run("users", "create", "dan", "--password-file", pw))
    assert "cannot read the password file" in _error(
        run("users", "create", "eve", "--password-file", str(tmp_path / "absent"))
    )


def test_list_show_grant_and_revoke(run, tmp_path):
    pw = _password_file(tmp_path)
    run("users", "create", "fay", "--password-file", pw)
    run("users", "create", "gil", "--password-file", pw)
    assert "fay is an admin now" in run("users", "grant-admin", "fay").stdout
    assert "was an admin already" in run("users", "grant-admin", "fay").stdout
    admins = run("users", "list", "--admins").stdout
    assert "fay" in admins and "gil" not in admins
    everyone = run("users", "list").stdout
    assert "fay" in everyone and "gil" in everyone
    assert "fay is no admin now" in run("users", "revoke-admin", "fay").stdout
    assert "no accounts" in run("users", "list", "--admins").stdout


def test_unknown_accounts_are_one_line_for_every_command(run):
    for command in ("show", "grant-admin", "revoke-admin", "lock", "unlock", "delete"):
        line = _error(run("users", command, "nobody", "--yes") if command == "delete"
                      else run("users", command, "nobody"))  # fmt: skip
        assert "no account 'nobody'" in line


def test_lock_ends_tokens_and_sessions_and_unlock_opens(run, tmp_path, database):
    run("users", "create", "hal", "--password-file", _password_file(tmp_path))
    with database.session() as s:
        hal = s.scalar(select(User).where(User.username == "hal"))
        s.add(ApiToken(user_id=hal.id, name="t", prefix="abc123", token_hash="0" * 64,
                       expires_at=func.now() + func.make_interval(0, 0, 0, 1)))  # fmt: skip
        generation = hal.session_generation
    assert "hal is locked" in run("users", "lock", "hal").stdout
    with database.session() as s:
        hal = s.get(User, hal.id)
        assert hal.locked_at is not None and hal.session_generation > generation
        assert s.scalar(select(func.count()).where(ApiToken.user_id == hal.id)) == 0
    assert "state: locked since" in run("users", "show", f"#{hal.id}").stdout
    assert "hal" in run("users", "list", "--locked").stdout
    assert "hal is unlocked" in run("users", "unlock", "hal").stdout
    assert "was not locked" in run("users", "unlock", "hal").stdout


def test_delete_asks_for_the_username_and_purges_the_account(run, tmp_path, database):
    run("users", "create", "ida", "--password-file", _password_file(tmp_path))
    with database.session() as s:
        ida = s.scalar(select(User.id).where(User.username == "ida"))
    line = _error(run("users", "delete", "ida", input="not-ida\n"))
    assert "nothing was deleted" in line
    result = run("users", "delete", "ida", input="ida\n")
    assert result.exit_code == 0, result.output
    assert "history rows purged" in result.stdout
    with database.session() as s:
        assert s.get(User, ida) is None
        assert s.scalar(select(func.count()).where(Rating.user_id == ida)) == 0
    assert "no account 'ida'" in _error(run("users", "show", "ida"))
