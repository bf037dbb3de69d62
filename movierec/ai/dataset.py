"""Ratings as NumPy arrays with id maps, read from the database or built from arrays.

Database ids are sparse 64-bit numbers; models want dense indices 0..n-1. :class:`RatingsData`
keeps both directions: ``user_ids[user_index[j]]`` is the database user of rating ``j``, and
:func:`~movierec.ai.ids.dense_index` maps database ids back. The ratings table is streamed
with a binary ``COPY ... TO STDOUT`` and parsed with ``np.frombuffer``: no Python object per
rating, so tens of millions of rows read in seconds with memory for the arrays only.

Movie metadata rides along when known (``genre_names``/``item_genres``/``item_years``): the
database loader fills it from the movies table, :func:`read_movielens` from ``u.item`` (ml-100k)
or ``movies.csv``/``movies.dat``. Collective EASE turns it into genre and decade rows; data
without it simply trains without those rows.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sqlalchemy import func, select, text
from surprise import Trainset

from movierec.ai.base import RATING_MAX, RATING_MIN
from movierec.db import GENRES, Database, Movie
from movierec.db.bulk import copy_out
from movierec.errors import BadInput

Progress = Callable[[int, int | None], None]

# Ratings are half stars; twice the rating is a small integer with a fixed-width binary form,
# unlike numeric, whose binary form is variable-length.
# The rating time travels as whole epoch seconds (int8), for time-ordered hold-outs.
RATINGS_COPY = (
    "COPY (SELECT user_id, movie_id, (rating * 2)::int2, "
    "coalesce(extract(epoch FROM rated_at), 0)::int8 FROM ratings) TO STDOUT (FORMAT BINARY)"
)
COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
COPY_TRAILER = b"\xff\xff"
# One tuple of (int8, int8, int2, int8): field count, then (length, value) per field, big-endian.
COPY_ROW = np.dtype(
    [("n", ">i2"), ("l1", ">i4"), ("u", ">i8"), ("l2", ">i4"), ("m", ">i8"), ("l3", ">i4"),
     ("r", ">i2"), ("l4", ">i4"), ("t", ">i8")]
)  # fmt: skip
CHUNK_ROWS = 262_144
GENRE_CHUNK_ROWS = 50_000


@dataclass(frozen=True)
class RatingsData:
    """One rating per row, in dense indices, plus the maps back to database ids.

    ``user_ids`` and ``movie_ids`` are sorted, so :func:`~movierec.ai.ids.dense_index` is a
    binary search.
    """

    user_index: np.ndarray  # int32, one per rating
    item_index: np.ndarray  # int32, one per rating
    ratings: np.ndarray  # float32, one per rating
    user_ids: np.ndarray  # int64, dense user index -> database id
    movie_ids: np.ndarray  # int64, dense item index -> database id
    timestamps: np.ndarray | None = None  # int64 epoch seconds, one per rating, when known
    genre_names: np.ndarray | None = None  # str, the columns of item_genres
    item_genres: np.ndarray | None = None  # bool (n_items, n_genres), when known
    item_years: np.ndarray | None = None  # int32 release year per dense item, 0 = unknown

    @property
    def n_ratings(self) -> int:
        return int(self.ratings.shape[0])

    @property
    def n_users(self) -> int:
        return int(self.user_ids.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.movie_ids.shape[0])

    def with_movie_info(
        self,
        genre_names: np.ndarray | None,
        item_genres: np.ndarray | None,
        item_years: np.ndarray | None,
    ) -> RatingsData:
        """A copy carrying movie metadata (per dense item). Raises :class:`BadInput` when a
        shape does not match."""
        if item_genres is not None:
            item_genres = np.asarray(item_genres, dtype=bool)
            names = genre_names if genre_names is not None else np.arange(item_genres.shape[1])
            if item_genres.shape != (self.n_items, len(names)):
                raise BadInput("item_genres must be (n_items, n_genres)")
        if item_years is not None:
            item_years = np.asarray(item_years, dtype=np.int32)
            if item_years.shape != (self.n_items,):
                raise BadInput("item_years must hold one year per movie")
        return dataclasses.replace(
            self,
            genre_names=None if genre_names is None else np.asarray(genre_names, dtype=np.str_),
            item_genres=item_genres,
            item_years=item_years,
        )

    def item_counts(self) -> np.ndarray:
        """Number of ratings per dense item (int64)."""
        return np.bincount(self.item_index, minlength=self.n_items).astype(np.int64)


def ratings_from_arrays(
    users: Sequence[int],
    movies: Sequence[int],
    ratings: Sequence[float],
    timestamps: Sequence[int] | None = None,
):
    """Build :class:`RatingsData` from parallel arrays of database ids, ratings and (optional)
    epoch-second timestamps.

    Raises :class:`BadInput` when the arrays differ in length or a rating is outside 0.5..5.
    """
    users = np.asarray(users, dtype=np.int64)
    movies = np.asarray(movies, dtype=np.int64)
    values = np.asarray(ratings, dtype=np.float32)
    stamps = None if timestamps is None else np.asarray(timestamps, dtype=np.int64)
    if not users.shape == movies.shape == values.shape or users.ndim != 1:
        raise BadInput("users, movies and ratings must be 1-d arrays of equal length")
    if stamps is not None and stamps.shape != users.shape:
        raise BadInput("timestamps must be as long as the ratings")
    if values.size and (values.min() < RATING_MIN or values.max() > RATING_MAX):
        raise BadInput(f"ratings must lie in {RATING_MIN}..{RATING_MAX}")
    user_ids, user_index = np.unique(users, return_inverse=True)
    movie_ids, item_index = np.unique(movies, return_inverse=True)
    return RatingsData(
        user_index=user_index.astype(np.int32),
        item_index=item_index.astype(np.int32),
        ratings=values,
        user_ids=user_ids,
        movie_ids=movie_ids,
        timestamps=stamps,
    )


def user_item_matrix(
    data: RatingsData, rows: np.ndarray | None = None, values: str = "binary"
) -> sp.csr_matrix:
    """A ``(n_users, n_items)`` CSR matrix of ``rows`` (all when None), float32.

    ``values`` is ``"binary"`` (1 per rating) or ``"rating"`` (the rating itself).
    """
    users = data.user_index if rows is None else data.user_index[rows]
    items = data.item_index if rows is None else data.item_index[rows]
    if values == "binary":
        cells = np.ones(users.shape[0], dtype=np.float32)
    else:
        cells = data.ratings if rows is None else data.ratings[rows]
    matrix = sp.csr_matrix(
        (cells.astype(np.float32), (users, items)), shape=(data.n_users, data.n_items)
    )
    matrix.sum_duplicates()
    return matrix


def read_movielens(path: Path | str) -> RatingsData:
    """Ratings from a MovieLens file: ml-100k ``u.data`` (tabs), ml-1m/10m ``ratings.dat``
    (``::``) or ml-latest/ml-25m ``ratings.csv`` (header line); a directory means the one of
    these it holds. Columns are user, movie, rating, timestamp.

    Raises :class:`BadInput` when no such file is found or it does not parse.
    """
    path = Path(path)
    data = _read_movielens_ratings(path)
    folder = path if path.is_dir() else path.parent
    try:
        info = _read_movielens_movies(folder, data.movie_ids)
    except (OSError, ValueError, IndexError, UnicodeDecodeError):
        info = None  # metadata is optional: without it, no genre/decade rows
    return data if info is None else data.with_movie_info(*info)


def _read_movielens_ratings(path: Path) -> RatingsData:
    if path.is_dir():
        found = [path / n for n in ("u.data", "ratings.dat", "ratings.csv") if (path / n).exists()]
        if not found:
            raise BadInput(f"{path} holds no u.data, ratings.dat or ratings.csv")
        path = found[0]
    try:
        if path.name.endswith(".csv"):
            table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
        elif path.name.endswith(".dat"):
            text_rows = path.read_text(encoding="latin-1").replace("::", "\t")
            table = np.loadtxt(io.StringIO(text_rows), dtype=np.float64, ndmin=2)
        else:
            table = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as exc:
        raise BadInput(f"cannot read MovieLens ratings from {path}: {exc}") from exc
    if table.shape[1] < 4:
        raise BadInput(f"{path}: expected user, movie, rating, timestamp columns")
    return ratings_from_arrays(
        table[:, 0].astype(np.int64),
        table[:, 1].astype(np.int64),
        table[:, 2],
        table[:, 3].astype(np.int64),
    )


YEAR_IN_TITLE = re.compile(r"\((\d{4})\)\s*$")


def _read_movielens_movies(folder: Path, movie_ids: np.ndarray):
    """``(genre_names, item_genres, item_years)`` from the movie file beside the ratings, or
    None when there is none. ml-100k's ``u.item`` (release date, 19 genre flags named by
    ``u.genre``), ml-1m's ``movies.dat`` and ml-latest's ``movies.csv`` (year in the title)."""
    years: dict[int, int] = {}
    if (folder / "u.item").exists():
        names = [
            line.split("|")[0]
            for line in (folder / "u.genre").read_text(encoding="latin-1").splitlines()
            if line.strip()
        ]
        flags: dict[int, list[str]] = {}
        for line in (folder / "u.item").read_text(encoding="latin-1").splitlines():
            if not line.strip():
                continue
            parts = line.split("|")
            movie = int(parts[0])
            flags[movie] = [n for n, f in zip(names, parts[5:], strict=False) if f.strip() == "1"]
            if parts[2].strip()[-4:].isdigit():
                years[movie] = int(parts[2].strip()[-4:])
        genre_names = names
    else:
        if (folder / "movies.csv").exists():
            with open(folder / "movies.csv", encoding="utf-8", newline="") as handle:
                rows = list(csv.reader(handle))[1:]
        elif (folder / "movies.dat").exists():
            text_rows = (folder / "movies.dat").read_text(encoding="latin-1").splitlines()
            rows = [line.split("::") for line in text_rows if line.strip()]
        else:
            return None
        flags = {}
        for movie, title, genres in ((int(r[0]), r[1], r[2]) for r in rows if len(r) >= 3):
            flags[movie] = [g for g in genres.split("|") if g and g != "(no genres listed)"]
            found = YEAR_IN_TITLE.search(title.strip())
            if found:
                years[movie] = int(found.group(1))
        genre_names = sorted({g for gs in flags.values() for g in gs})
    column = {name: j for j, name in enumerate(genre_names)}
    matrix = np.zeros((movie_ids.shape[0], len(genre_names)), dtype=bool)
    item_years = np.zeros(movie_ids.shape[0], dtype=np.int32)
    for row, movie in enumerate(movie_ids.tolist()):
        for genre in flags.get(movie, ()):
            matrix[row, column[genre]] = True
        item_years[row] = years.get(movie, 0)
    return np.array(genre_names, dtype=np.str_), matrix, item_years


def read_ratings(database: Database, progress: Progress | None = None) -> RatingsData:
    """Stream every rating out of the database into :class:`RatingsData`.

    Reads from a replica when one is configured. ``progress(rows_read, None)`` is called after
    each chunk. Raises :class:`DatabaseUnavailable` when the server cannot be reached or drops
    the connection, and :class:`BadInput` when the COPY stream is not what is expected.
    """
    with closing(copy_out(database, RATINGS_COPY)) as blocks:
        users, movies, halves, stamps = _copy_ratings(blocks, progress)
    return ratings_from_arrays(users, movies, halves.astype(np.float32) / 2, stamps)


def _copy_ratings(blocks: Iterable[bytes], progress: Progress | None):
    parts: list[np.ndarray] = []
    buffer = bytearray()
    rows = 0
    header_done = False
    for block in blocks:
        buffer += block
        if not header_done:
            header_done = _strip_header(buffer)
        if header_done and len(buffer) >= CHUNK_ROWS * COPY_ROW.itemsize:
            parts.append(_take_rows(buffer))
            rows += parts[-1].shape[0]
            if progress:
                progress(rows, None)
    if not header_done:
        raise BadInput("ratings COPY stream ended inside its header")
    parts.append(_take_rows(buffer))
    if bytes(buffer) != COPY_TRAILER:
        raise BadInput("ratings COPY stream did not end with the binary COPY trailer")
    if progress:
        progress(rows + parts[-1].shape[0], None)
    table = np.concatenate(parts) if parts else np.empty(0, dtype=COPY_ROW)
    return (
        table["u"].astype(np.int64),
        table["m"].astype(np.int64),
        table["r"].astype(np.int16),
        table["t"].astype(np.int64),
    )


def _strip_header(buffer: bytearray) -> bool:
    """Remove the binary COPY header from ``buffer`` once it is complete; False until then."""
    if len(buffer) < 19:
        return False
    if bytes(buffer[:11]) != COPY_SIGNATURE:
        raise BadInput("ratings COPY stream is not in PostgreSQL binary format")
    extension = int.from_bytes(buffer[15:19], "big")
    if len(buffer) < 19 + extension:
        return False
    del buffer[: 19 + extension]
    return True


def _take_rows(buffer: bytearray) -> np.ndarray:
    """Parse and remove every complete row at the front of ``buffer``."""
    n = len(buffer) // COPY_ROW.itemsize
    # The 2-byte trailer never completes a 44-byte row, so it stays in the buffer.
    table = np.frombuffer(bytes(buffer[: n * COPY_ROW.itemsize]), dtype=COPY_ROW)
    del buffer[: n * COPY_ROW.itemsize]
    ok = (table["n"] == 4) & (table["l1"] == 8) & (table["l2"] == 8) & (table["l3"] == 2)
    ok &= table["l4"] == 8
    if not ok.all():
        raise BadInput("ratings COPY stream has a row with unexpected fields or a NULL")
    return table


def read_movie_genres(database: Database, movie_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Genre names and a bool matrix ``(len(movie_ids), n_genres)`` for the given movies
    (see :func:`read_movie_info`). Raises :class:`DatabaseUnavailable`."""
    names, matrix, _ = read_movie_info(database, movie_ids)
    return names, matrix


def read_movie_info(
    database: Database, movie_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Genre names, a bool matrix ``(len(movie_ids), n_genres)`` and the release year of each
    movie (0 when unknown).

    Names are the schema's ``GENRES`` followed by any other genre found, sorted. The movies
    table is streamed with a server-side cursor in chunks, never held whole in Python objects.
    Raises :class:`DatabaseUnavailable`.
    """
    with database.session(readonly=True) as session:
        session.execute(text("SET LOCAL statement_timeout = 0"))
        found = session.scalars(select(func.unnest(Movie.genres)).distinct())
        names = np.array(list(GENRES) + sorted(set(found) - set(GENRES)), dtype=np.str_)
        column = {name: j for j, name in enumerate(names.tolist())}
        matrix = np.zeros((movie_ids.shape[0], names.shape[0]), dtype=bool)
        years = np.zeros(movie_ids.shape[0], dtype=np.int32)
        if movie_ids.size == 0:
            return names, matrix, years
        query = select(Movie.id, Movie.genres, Movie.year).where(
            (Movie.genres != []) | Movie.year.is_not(None)
        )
        result = session.execute(query.execution_options(yield_per=GENRE_CHUNK_ROWS))
        for chunk in result.partitions():
            ids = np.fromiter((row[0] for row in chunk), dtype=np.int64, count=len(chunk))
            pos = np.minimum(np.searchsorted(movie_ids, ids), movie_ids.size - 1)
            known = (movie_ids[pos] == ids).tolist()  # movies nobody rated are not in the model
            for row, is_known, (_, genres, year) in zip(pos.tolist(), known, chunk, strict=True):
                if is_known:
                    if genres:
                        matrix[row, [column[g] for g in genres]] = True
                    years[row] = year or 0
    return names, matrix, years


def to_trainset(data: RatingsData, rows: np.ndarray | None = None) -> Trainset:
    """A surprise :class:`~surprise.Trainset` over ``rows`` (all ratings when None).

    Inner ids are the dense indices of the whole data set, even for a subset, so factors of a
    model trained on a split line up with ``data``; users and items with no rating in ``rows``
    are absent from ``ur``/``ir`` and surprise treats them as unknown. Raw ids are database
    ids (ints). Built directly, because ``Dataset.load_from_df`` needs pandas.
    """
    users = data.user_index if rows is None else data.user_index[rows]
    items = data.item_index if rows is None else data.item_index[rows]
    values = data.ratings if rows is None else data.ratings[rows]
    ur = _grouped(users, items, values)
    ir = _grouped(items, users, values)
    return Trainset(
        ur=ur,
        ir=ir,
        n_users=data.n_users,
        n_items=data.n_items,
        n_ratings=int(values.shape[0]),
        rating_scale=(RATING_MIN, RATING_MAX),
        raw2inner_id_users={int(data.user_ids[u]): u for u in ur},
        raw2inner_id_items={int(data.movie_ids[i]): i for i in ir},
    )


def _grouped(keys: np.ndarray, others: np.ndarray, values: np.ndarray) -> defaultdict:
    """``{key: [(other, value), ...]}``, the shape of surprise's ``ur`` and ``ir``."""
    grouped: defaultdict = defaultdict(list)
    if keys.size == 0:
        return grouped
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    bounds = np.flatnonzero(np.diff(keys)) + 1
    starts, ends = np.r_[0, bounds].tolist(), np.r_[bounds, keys.size].tolist()
    others_list, values_list = others[order].tolist(), values[order].tolist()
    for start, end in zip(starts, ends, strict=True):
        pairs = zip(others_list[start:end], values_list[start:end], strict=True)
        grouped[int(keys[start])] = list(pairs)
    return grouped
