"""What makes a password acceptable: length, and none of the patterns breached lists are full of.

The checks are offline and cheap: a small built-in list of the most common passwords (compared
after undoing the usual disguises: case, l33t digits, a number or a "!" tacked on), the
username inside the password, and passwords made of one short piece repeated or of a run along
the keyboard or the alphabet.
"""

from __future__ import annotations

import re

MIN_LENGTH = 10
# Long enough for any passphrase, short enough that hashing it cannot be used to burn CPU.
MAX_LENGTH = 256

# The most common passwords of the public breach corpora (their bases: "password1!" and
# "P@ssw0rd2024" are caught through normalisation).
COMMON = frozenset(
    """
    123456 123456789 12345678 1234567890 12345 1234567 password qwerty qwertyuiop abc123
    111111 123123 000000 iloveyou 1q2w3e4r 1q2w3e4r5t qwerty123 qwe123 1qaz2wsx zaq12wsx
    dragon monkey letmein football baseball welcome welcome1 admin administrator login
    master sunshine shadow princess starwars whatever trustno1 passw0rd password1 superman
    batman michael jennifer jordan hunter ranger harley buster soccer hockey killer george
    charlie andrew thomas robert daniel ashley bailey access flower hello freedom secret
    summer winter spring autumn computer internet samsung google apple microsoft linkedin
    facebook myspace pokemon naruto chocolate cheese cookie pepper ginger maggie lovely
    loveme iloveu mustang ferrari corvette yankees cowboys liverpool chelsea arsenal
    changeme default guest test tester testing demo root toor user qazwsx asdfgh asdfghjkl
    zxcvbn zxcvbnm 987654321 654321 666666 888888 121212 112233 159753 147258369 aa123456
    abcd1234 a1b2c3d4 q1w2e3r4 1234qwer qwer1234 password123 letmein123 monkey123 dragon123
    correcthorsebatterystaple opensesame letmeinplease nothing anything someone somebody
    movierec movies movie cinema netflix
    """.split()
)
_LEET = str.maketrans({"@": "a", "4": "a", "0": "o", "1": "i", "!": "i", "3": "e", "$": "s",
                       "5": "s", "7": "t", "+": "t", "|": "l"})  # fmt: skip
_ROWS = ("1234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm", "abcdefghijklmnopqrstuvwxyz")


def password_problems(password: str, username: str | None = None) -> list[str]:
    """Why ``password`` is refused, as sentences for the person choosing it; [] when fine."""
    if len(password) < MIN_LENGTH:
        return [f"Use at least {MIN_LENGTH} characters."]
    if len(password) > MAX_LENGTH:
        return [f"Use at most {MAX_LENGTH} characters."]
    problems = []
    lowered = password.lower()
    if username and len(username) >= 3 and _squash(username) in _squash(lowered):
        problems.append("Do not put your username in your password.")
    if _is_common(lowered):
        problems.append("That is one of the most common passwords; choose another.")
    elif _is_repetitive(lowered):
        problems.append("Avoid repeated characters and runs like 'aaaa…' or 'abcabc…'.")
    return problems


def _squash(text: str) -> str:
    return re.sub(r"[^0-9a-z]", "", text.lower())


def _is_common(lowered: str) -> bool:
    squashed = re.sub(r"[\s_.-]", "", lowered)
    # "password2024!", "!!qwerty": the base with digits or symbols tacked on either end.
    base = re.sub(r"^[\d\W_]+|[\d\W_]+$", "", squashed)
    candidates = {lowered, squashed, base}
    candidates |= {word.translate(_LEET) for word in candidates}  # "p@ssw0rd"
    return any(c in COMMON for c in candidates if c)


def _is_repetitive(lowered: str) -> bool:
    if len(set(lowered)) < 4:
        return True
    # One piece of up to a third of the length, repeated ("abcabcabcabc", "1212121212").
    if re.fullmatch(rf"(.{{1,{max(1, len(lowered) // 3)}}}?)\1+", lowered):
        return True
    # Mostly a run along one row of the keyboard or the alphabet, either direction.
    squashed = _squash(lowered)
    for row in _ROWS:
        for line in (row, row[::-1]):
            longest = max(
                (n for i in range(len(line)) for n in range(4, len(line) - i + 1)
                 if line[i : i + n] in squashed),
                default=0,
            )  # fmt: skip
            if longest >= max(6, len(squashed) - 2):
                return True
    return False
