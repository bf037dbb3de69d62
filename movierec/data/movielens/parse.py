"""Streaming, validating parsers for the MovieLens files.

Every malformed line stops the import with :class:`BadInput` naming the file, the line
number and what was expected there. Movies and links are small and parsed into memory;
ratings (up to tens of millions of lines) are parsed as bytes and handed on in NumPy chunks.
"""

from __future__ import annotations

import csv
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from movierec.data.movielens.release import Release
from movierec.data.movielens.titles import parse_genre_list, split_title_year
from movierec.data.results import Progress
from movierec.errors import BadInput

# The 19 flags at the end of a u.item line, in the order u.genre lists them. "unknown" is
# not a genre the schema knows: a movie flagged only with it gets no genres.
ML100K_GENRES = (
    None, "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)  # fmt: skip
_ENCODINGS = {"ml-100k": "latin-1", "ml-1m": "latin-1", "ml-latest": "utf-8"}
_MAX_ID = 2**63 - 1
_MAX_TMDB_ID = 2**31 - 1
_MAX_EPOCH = 32503680000  # 3000-01-01: anything later is a corrupt timestamp, not a rating
_CHUNK_ROWS = 1 << 19
_PROGRESS_EVERY = 1 << 16  # lines between progress reports (a power of two)

# Every spelling of a half star the releases use, to skip float() on the hot path.
_HALF_STARS = {
    **{str(h / 2).encode(): h for h in range(1, 11)},
    **{str(h // 2).encode(): h for h in range(2, 11, 2)},
}

MovieRow = list  # [source_id, title, year, genres, imdb_id, tmdb_id], the staging columns
WriteRatings = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], None]


@dataclass(frozen=True)
class _RatingsLayout:
    separator: bytes
    described: str
    fields: str
    header: bytes | None


_RATINGS_LAYOUTS = {
    "ml-100k": _RatingsLayout(b"\t", "tab-separated", "user item rating timestamp", None),
    "ml-1m": _RatingsLayout(b"::", "::-separated", "UserID::MovieID::Rating::Timestamp", None),
    "ml-latest": _RatingsLayout(
        b",", "comma-separated", "userId,movieId,rating,timestamp",
        b"userId,movieId,rating,timestamp",
    ),
}  # fmt: skip


class ByteProgress:
    """Reports bytes read across all of a release's files to a ``progress(done, total)``."""

    def __init__(self, release: Release, progress: Progress):
        self.total = sum(p.stat().st_size for p in release.files)
        self.done = 0
        self.progress = progress

    def at(self, position_in_file: int) -> None:
        self.progress(self.done + position_in_file, self.total)

    def finished(self, path: Path) -> None:
        self.done += path.stat().st_size
        self.progress(self.done, self.total)


def parse_movies(release: Release, progress: ByteProgress) -> dict[int, MovieRow]:
    """The release's movies by MovieLens id, links not yet applied. Raises :class:`BadInput`."""
    name = release.movies.name
    lines = _text_lines(release.movies, _ENCODINGS[release.format], progress)
    if release.format == "ml-latest":
        csv_rows = _csv_rows(lines, name, "movieId,title,genres")
        rows = ((n, _movie_csv(fields, name, n)) for n, fields in csv_rows)
    elif release.format == "ml-1m":
        rows = ((n, _movie_1m(line, name, n)) for n, line in lines if line)
    else:
        rows = ((n, _movie_100k(line, name, n)) for n, line in lines if line)
    movies: dict[int, MovieRow] = {}
    first_line: dict[int, int] = {}
    for number, fields in rows:
        movie_id = fields[0]
        if movie_id in movies:
            raise BadInput(
                f"{name} line {number}: movie id {movie_id} "
                f"already appeared on line {first_line[movie_id]}"
            )
        movies[movie_id] = [*fields, None, None]
        first_line[movie_id] = number
    return movies


def apply_links(release: Release, movies: dict[int, MovieRow], progress: ByteProgress) -> int:
    """Set imdb_id / tmdb_id from links.csv when the release has one; return links applied.

    Raises :class:`BadInput` on a malformed line or a movie id not in the movies file.
    """
    if release.links is None:
        return 0
    name = release.links.name
    lines = _text_lines(release.links, _ENCODINGS[release.format], progress)
    applied = 0
    for number, fields in _csv_rows(lines, name, "movieId,imdbId,tmdbId"):
        if len(fields) != 3:
            raise BadInput(
                f"{name} line {number}: expected 3 comma-separated fields "
                f"movieId,imdbId,tmdbId, got {len(fields)}"
            )
        movie_id = _whole(fields[0], name, number, "movie id", _MAX_ID)
        if movie_id not in movies:
            raise BadInput(
                f"{name} line {number}: movie id {movie_id} is not in {release.movies.name}"
            )
        imdb = _optional_whole(fields[1], name, number, "imdbId", 10**9)
        tmdb = _optional_whole(fields[2], name, number, "tmdbId", _MAX_TMDB_ID)
        movies[movie_id][4] = None if imdb is None else f"tt{imdb:07d}"
        movies[movie_id][5] = tmdb
        applied += 1
    return applied


def stream_ratings(
    release: Release, movie_ids: dict[int, object], write: WriteRatings, progress: ByteProgress
) -> tuple[int, np.ndarray]:
    """Validate the ratings file and pass it to ``write`` in NumPy chunks.

    ``write(user_ids, movie_ids, half_stars, epochs)`` receives int64/int64/int16/int64
    arrays. Returns the number of ratings and the sorted distinct user ids. Raises
    :class:`BadInput` at the first malformed line or a movie id not in ``movie_ids``.
    """
    path, layout = release.ratings, _RATINGS_LAYOUTS[release.format]
    name, separator = path.name, layout.separator
    users, movies, halves, epochs = array("q"), array("q"), array("h"), array("q")
    add_user, add_movie, add_half, add_epoch = (
        users.append, movies.append, halves.append, epochs.append,
    )  # fmt: skip
    user_chunks: list[np.ndarray] = []
    count = 0

    def flush() -> None:
        user_array = np.frombuffer(users, dtype=np.int64)
        write(
            user_array,
            np.frombuffer(movies, dtype=np.int64),
            np.frombuffer(halves, dtype=np.int16),
            np.frombuffer(epochs, dtype=np.int64),
        )
        user_chunks.append(np.unique(user_array))

    with path.open("rb") as fh:
        first_line = 1
        if layout.header is not None:
            _check_header(fh.readline(), layout.header, name)
            first_line = 2
        for number, raw in enumerate(fh, first_line):
            fields = raw.split(separator)
            if len(fields) != 4:
                if not raw.strip():
                    continue
                raise BadInput(
                    f"{name} line {number}: expected 4 {layout.described} fields "
                    f"{layout.fields}, got {len(fields)}"
                )
            try:
                user, movie, epoch = int(fields[0]), int(fields[1]), int(fields[3])
            except ValueError:
                _explain_bad_ids(fields, name, number)
                raise  # _explain_bad_ids always raises; this keeps linters sure of it
            half = _HALF_STARS.get(fields[2])
            if half is None:
                half = _half_stars(fields[2], name, number)
            if movie not in movie_ids:
                raise BadInput(
                    f"{name} line {number}: movie id {movie} is not in {release.movies.name}"
                )
            if not (0 < user <= _MAX_ID and 0 <= epoch <= _MAX_EPOCH):
                _explain_bad_ids(fields, name, number)
            add_user(user)
            add_movie(movie)
            add_half(half)
            add_epoch(epoch)
            if len(users) >= _CHUNK_ROWS:
                count += len(users)
                flush()
                for buffer in (users, movies, halves, epochs):
                    del buffer[:]
            if not number & (_PROGRESS_EVERY - 1):
                progress.at(fh.tell())
    if users:
        count += len(users)
        flush()
    progress.finished(path)
    distinct = np.unique(np.concatenate(user_chunks)) if user_chunks else np.zeros(0, np.int64)
    return count, distinct


def _text_lines(path: Path, encoding: str, progress: ByteProgress) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` decoded one line at a time, so a bad byte has a line number."""
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, 1):
            try:
                line = raw.decode(encoding)
            except UnicodeDecodeError as exc:
                raise BadInput(
                    f"{path.name} line {number}: not valid {encoding.upper()} "
                    f"(byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
                ) from None
            if not number & (_PROGRESS_EVERY - 1):
                progress.at(fh.tell())
            yield number, line.rstrip("\r\n")
    progress.finished(path)


def _csv_rows(
    lines: Iterator[tuple[int, str]], name: str, header: str
) -> Iterator[tuple[int, list[str]]]:
    """Rows of a CSV file with ``header``, each with the number of the line it starts on (a
    quoted field may run over several); blank lines are skipped."""
    numbers = [0, 0]  # the line read last, the last line of the previous record

    def text_only() -> Iterator[str]:
        for number, line in lines:
            numbers[0] = number
            yield line

    reader = csv.reader(text_only(), strict=True)
    try:
        first = next(reader, None)
        if first is None or ",".join(first) != header:
            got = "an empty file" if first is None else repr(",".join(first))
            raise BadInput(f"{name} line 1: expected the header {header}, got {got}")
        numbers[1] = numbers[0]
        for fields in reader:
            start, numbers[1] = numbers[1] + 1, numbers[0]
            if fields:
                yield start, fields
    except csv.Error as exc:
        start, end = numbers[1] + 1, numbers[0]
        runs = f"; its quoted field runs on to line {end}" if end > start else ""
        raise BadInput(f"{name} line {start}: not valid CSV ({exc}{runs})") from None


def _movie_100k(line: str, name: str, number: int) -> list:
    fields = line.split("|")
    if len(fields) != 24:
        raise BadInput(
            f"{name} line {number}: expected 24 |-separated fields "
            f"id|title|release date|video release date|IMDb URL|19 genre flags, got {len(fields)}"
        )
    movie_id = _whole(fields[0], name, number, "movie id", _MAX_ID)
    flags = fields[5:]
    bad = next((flag for flag in flags if flag not in ("0", "1")), None)
    if bad is not None:
        raise BadInput(f"{name} line {number}: genre flags must be 0 or 1, got {bad!r}")
    genres = [g for g, flag in zip(ML100K_GENRES, flags, strict=True) if flag == "1" and g]
    title, year = split_title_year(fields[1])
    if year is None and fields[2][-4:].isdigit():
        year = int(fields[2][-4:])  # "01-Jan-1995": the release date, when the title has none
    return [movie_id, title, year, genres]


def _movie_1m(line: str, name: str, number: int) -> list:
    fields = line.split("::")
    if len(fields) != 3:
        raise BadInput(
            f"{name} line {number}: expected 3 ::-separated fields "
            f"MovieID::Title::Genres, got {len(fields)}"
        )
    return _movie_fields(fields, name, number)


def _movie_csv(fields: list[str], name: str, number: int) -> list:
    if len(fields) != 3:
        raise BadInput(
            f"{name} line {number}: expected 3 comma-separated fields "
            f"movieId,title,genres, got {len(fields)}"
        )
    return _movie_fields(fields, name, number)


def _movie_fields(fields: list[str], name: str, number: int) -> list:
    movie_id = _whole(fields[0], name, number, "movie id", _MAX_ID)
    genres, unknown = parse_genre_list(fields[2])
    if unknown is not None:
        raise BadInput(f"{name} line {number}: unknown genre {unknown!r}")
    title, year = split_title_year(fields[1])
    return [movie_id, title, year, genres]


def _whole(text: str, name: str, number: int, what: str, maximum: int) -> int:
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) <= maximum:
        raise BadInput(f"{name} line {number}: {what} {text!r} is not a positive whole number")
    return int(text)


def _optional_whole(text: str, name: str, number: int, what: str, maximum: int) -> int | None:
    return None if text == "" else _whole(text, name, number, what, maximum)


def _check_header(raw: bytes, expected: bytes, name: str) -> None:
    if raw.rstrip(b"\r\n") != expected:
        got = "an empty file" if not raw else repr(raw.rstrip(b"\r\n").decode("utf-8", "replace"))
        raise BadInput(f"{name} line 1: expected the header {expected.decode()}, got {got}")


def _half_stars(raw: bytes, name: str, number: int) -> int:
    """The rating in half stars (1..10), for spellings the fast lookup does not know."""
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.5 <= value <= 5 or value * 2 != int(value * 2):
        text = raw.decode("utf-8", "replace").strip()
        raise BadInput(f"{name} line {number}: rating {text!r} is not a half star from 0.5 to 5")
    return int(value * 2)


def _explain_bad_ids(fields: list[bytes], name: str, number: int) -> None:
    """Raise :class:`BadInput` naming the first bad field among user, movie and timestamp."""
    checks = ((0, "user id", _MAX_ID, 1), (1, "movie id", _MAX_ID, 1))
    for index, what, maximum, minimum in checks:
        text = fields[index].decode("utf-8", "replace").strip()
        if not (text.isascii() and text.isdigit() and minimum <= int(text) <= maximum):
            raise BadInput(f"{name} line {number}: {what} {text!r} is not a positive whole number")
    text = fields[3].decode("utf-8", "replace").strip()
    if not (text.isascii() and text.isdigit() and int(text) <= _MAX_EPOCH):
        raise BadInput(f"{name} line {number}: timestamp {text!r} is not whole seconds since 1970")
    raise BadInput(f"{name} line {number}: malformed rating line")
