"""What an account may be called and which passwords it may have, read once for the sign-up
form's rules and the admin's ``movierec users create``: the CLI refuses what the site would."""

from __future__ import annotations

import re

from movierec.errors import BadInput
from movierec.web.auth.policy import password_problems

USERNAME = re.compile(r"[A-Za-z0-9_.-]{3,64}")
USERNAME_RULE = "3 to 64 letters, digits, '.', '_' or '-'"


def read_username(value: str) -> str:
    """``value`` as a new account's username. Raises :class:`BadInput` naming the rule."""
    name = value.strip()
    if not USERNAME.fullmatch(name):
        raise BadInput(f"a username is {USERNAME_RULE}, not {name[:70]!r}")
    return name


def read_new_password(password: str, username: str) -> str:
    """``password`` when the site's policy accepts it for ``username`` (a final newline, as a
    file has, is not part of it). Raises :class:`BadInput` saying why not, never echoing it."""
    password = password.removesuffix("\n").removesuffix("\r")
    problems = password_problems(password, username)
    if problems:
        raise BadInput("the password is refused: " + " ".join(problems))
    return password
