"""Which MovieLens release a directory holds, and under which source tag it is stored."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from movierec.errors import BadInput

# The pairs of files that identify each format, in the order they are looked for.
_LAYOUTS = (
    ("ml-100k", "u.item", "u.data", None),
    ("ml-1m", "movies.dat", "ratings.dat", None),
    ("ml-latest", "movies.csv", "ratings.csv", "links.csv"),
)
_LOOKED_FOR = "u.item + u.data (ml-100k), movies.dat + ratings.dat (ml-1m), " + (
    "movies.csv + ratings.csv (ml-latest, ml-latest-small, ml-25m, ml-32m)"
)
# A tag goes into users.source (32 characters) and into usernames "<tag>-<id>" (64).
_TAG = re.compile(r"^ml-[a-z0-9][a-z0-9._-]{0,22}$")


@dataclass(frozen=True)
class Release:
    """One MovieLens release on disk: its file format, source tag and files."""

    format: str  # "ml-100k", "ml-1m" or "ml-latest" (the CSV releases)
    source: str  # stored in movies.source / users.source, e.g. "ml-latest-small"
    movies: Path
    ratings: Path
    links: Path | None

    @property
    def files(self) -> tuple[Path, ...]:
        return tuple(p for p in (self.movies, self.links, self.ratings) if p is not None)


def detect_release(path: Path | str, source: str | None = None) -> Release:
    """Look at the files in ``path`` and say which MovieLens format they are.

    The source tag is ``source`` when given, else the directory's name when it looks like a
    release name (``ml-25m``), else the format's name. Raises :class:`BadInput` when ``path``
    is not a directory, holds none of the known file pairs or only half of one, or ``source``
    is not a usable tag.
    """
    directory = Path(path)
    if not directory.is_dir():
        raise BadInput(f"{directory}: not a directory (expected one of {_LOOKED_FOR})")
    for fmt, movies_name, ratings_name, links_name in _LAYOUTS:
        movies, ratings = directory / movies_name, directory / ratings_name
        if not movies.is_file() and not ratings.is_file():
            continue
        for present, missing in ((movies, ratings), (ratings, movies)):
            if not missing.is_file():
                raise BadInput(f"{directory}: found {present.name} but not {missing.name}")
        links = directory / links_name if links_name else None
        return Release(
            format=fmt,
            source=_source_tag(directory, fmt, source),
            movies=movies,
            ratings=ratings,
            links=links if links is not None and links.is_file() else None,
        )
    raise BadInput(f"{directory}: no MovieLens files found (looked for {_LOOKED_FOR})")


def _source_tag(directory: Path, fmt: str, explicit: str | None) -> str:
    if explicit is not None:
        if not _TAG.match(explicit):
            raise BadInput(
                f"source tag {explicit!r}: expected 'ml-' then up to 23 of a-z 0-9 . _ -"
            )
        return explicit
    name = directory.resolve().name.lower()
    return name if _TAG.match(name) else fmt
