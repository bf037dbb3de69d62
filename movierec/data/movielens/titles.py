"""Turning MovieLens titles and genre names into what the ``movies`` table stores."""

from __future__ import annotations

import re

from movierec.db.schema import GENRES

# "Heat (1995)", "Death Note (2006–2007)" (a series: keep the first year), and a stray space
# after the parenthesis, which ml-latest has on a few hundred titles.
_TITLE_YEAR = re.compile(r"^(?P<title>.*?)\s*\((?P<year>\d{4})(?:\s*[-–]\s*(?:\d{4})?)?\)\s*$")

# Older releases spell one genre differently from the schema's list.
_GENRE_ALIASES = {"Children's": "Children"}
_NO_GENRES = "(no genres listed)"
_KNOWN_GENRES = frozenset(GENRES)


def split_title_year(raw: str) -> tuple[str, int | None]:
    """``"Heat (1995)"`` -> ``("Heat", 1995)``; a title without a year keeps ``None``."""
    match = _TITLE_YEAR.match(raw)
    if match is None or not match.group("title"):
        return raw.strip(), None
    return match.group("title"), int(match.group("year"))


def normalise_genre(name: str) -> str | None:
    """The schema's spelling of a MovieLens genre, or ``None`` when it is not one we know."""
    name = _GENRE_ALIASES.get(name, name)
    return name if name in _KNOWN_GENRES else None


def parse_genre_list(field: str) -> tuple[list[str], str | None]:
    """Split ``"Action|Children's"`` into schema genres; also return the first unknown name.

    ``"(no genres listed)"`` and an empty field give no genres.
    """
    if field in ("", _NO_GENRES):
        return [], None
    genres: list[str] = []
    for name in field.split("|"):
        genre = normalise_genre(name)
        if genre is None:
            return genres, name
        if genre not in genres:
            genres.append(genre)
    return genres, None
