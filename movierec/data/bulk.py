"""Bulk loading: one transaction, COPY into TEMP staging tables, then upserts into the real ones.

Both the MovieLens importer and the synthetic generator load this way. Rows are keyed by
``(source, source_id)``, so loading the same data twice updates rows in place instead of
adding twins, and a failure anywhere before the commit leaves the database as it was.
COPY needs the driver's own connection (psycopg 3), which is why this module works below
SQLAlchemy; it still gets that connection, and its transaction, from :class:`Database`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import psycopg
from psycopg import sql
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from movierec.db import Database
from movierec.db.history import bulk_change_set
from movierec.errors import BadInput, DatabaseUnavailable

_STAGING_DDL = (
    """CREATE TEMP TABLE stage_movies (
        source_id bigint NOT NULL, title text NOT NULL, year smallint,
        genres text[] NOT NULL, imdb_id text, tmdb_id integer) ON COMMIT DROP""",
    "CREATE TEMP TABLE stage_users (source_id bigint NOT NULL) ON COMMIT DROP",
    """CREATE TEMP TABLE stage_ratings (
        user_sid bigint NOT NULL, movie_sid bigint NOT NULL,
        half_stars smallint NOT NULL, rated_epoch bigint NOT NULL) ON COMMIT DROP""",
    """CREATE TEMP TABLE stage_preferences (
        user_sid bigint NOT NULL, genres text[] NOT NULL) ON COMMIT DROP""",
)

_UPSERT_MOVIES = """
INSERT INTO movies (title, year, genres, imdb_id, tmdb_id, source, source_id)
SELECT title, year, genres, imdb_id, tmdb_id, %(source)s, source_id
FROM stage_movies ORDER BY source_id
ON CONFLICT (source, source_id) DO UPDATE
SET title = EXCLUDED.title, year = EXCLUDED.year, genres = EXCLUDED.genres,
    imdb_id = EXCLUDED.imdb_id, tmdb_id = EXCLUDED.tmdb_id
WHERE (movies.title, movies.year, movies.genres, movies.imdb_id, movies.tmdb_id)
    IS DISTINCT FROM (EXCLUDED.title, EXCLUDED.year, EXCLUDED.genres, EXCLUDED.imdb_id,
                      EXCLUDED.tmdb_id)
"""

# An imported user someone has since renamed keeps the new name: DO NOTHING, not DO UPDATE.
_UPSERT_USERS = """
INSERT INTO users (username, source, source_id)
SELECT %(prefix)s || source_id, %(source)s, source_id FROM stage_users ORDER BY source_id
ON CONFLICT (source, source_id) DO NOTHING
"""

_UPSERT_RATINGS = """
INSERT INTO ratings (user_id, movie_id, rating, rated_at)
SELECT u.id, m.id, s.half_stars / 2.0, to_timestamp(s.rated_epoch)
FROM stage_ratings s
JOIN users u ON u.source = %(source)s AND u.source_id = s.user_sid
JOIN movies m ON m.source = %(source)s AND m.source_id = s.movie_sid
ON CONFLICT (user_id, movie_id) DO UPDATE
SET rating = EXCLUDED.rating, rated_at = EXCLUDED.rated_at
WHERE (ratings.rating, ratings.rated_at) IS DISTINCT FROM (EXCLUDED.rating, EXCLUDED.rated_at)
"""

_UPSERT_PREFERENCES = """
INSERT INTO preferences (user_id, genres)
SELECT u.id, s.genres
FROM stage_preferences s JOIN users u ON u.source = %(source)s AND u.source_id = s.user_sid
ON CONFLICT (user_id) DO UPDATE SET genres = EXCLUDED.genres, updated_at = now()
WHERE preferences.genres IS DISTINCT FROM EXCLUDED.genres
"""

# Triggers a bulk load may set aside: the history's (a bulk change set stands for them) and the
# truncate guard (no TRUNCATE here). Foreign-key triggers are internal and checked in bulk.
_KNOWN_TRIGGERS = ("movierec_history", "movierec_history_update", "movierec_no_truncate")
_OTHER_TRIGGERS = """
SELECT count(*) FROM pg_trigger
WHERE tgrelid = ANY (ARRAY['ratings', 'preferences']::regclass[])
  AND NOT tgisinternal AND tgenabled <> 'D' AND tgname <> ALL (%s)
"""
_MAY_SKIP_TRIGGERS = """
SELECT current_setting('is_superuser') = 'on'
    OR has_parameter_privilege('session_replication_role', 'SET')
"""
_LOCK_PARENTS = (
    "SELECT count(*) FROM (SELECT 1 FROM users WHERE source = %s FOR KEY SHARE) AS locked",
    "SELECT count(*) FROM (SELECT 1 FROM movies WHERE source = %s FOR KEY SHARE) AS locked",
)

_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, no header extension
_BINARY_TRAILER = b"\xff\xff"


@contextmanager
def bulk_transaction(
    database: Database, description: str, source: str, tables: Sequence[str]
) -> Iterator[psycopg.Cursor]:
    """A psycopg cursor inside one transaction on the primary with staging tables ready.

    The load is recorded in the change history as one bulk change set (``description``,
    ``source``, the ``tables`` it writes) instead of row by row. Commits when the block
    ends, rolls everything back when it raises. Raises :class:`DatabaseUnavailable` when the
    server cannot be reached or goes away.
    """
    try:
        with database.session() as session:
            driver_conn = session.connection().connection.driver_connection
            with driver_conn.cursor() as cur:
                # The configured statement timeout guards web requests; a bulk load of
                # millions of rows legitimately runs longer than it.
                cur.execute("SET LOCAL statement_timeout = 0")
                for ddl in _STAGING_DDL:
                    cur.execute(ddl)
                details = {"source": source, "tables": list(tables)}
                with bulk_change_set(cur, description, details):
                    yield cur
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"database unavailable: {_first_line(exc)}") from exc


def copy_movies(cur: psycopg.Cursor, rows: Iterable[tuple]) -> None:
    """COPY ``(source_id, title, year, genres, imdb_id, tmdb_id)`` rows into staging."""
    statement = "COPY stage_movies (source_id, title, year, genres, imdb_id, tmdb_id) FROM STDIN"
    with cur.copy(statement) as copy:
        copy.set_types(["int8", "text", "int2", "text[]", "text", "int4"])
        for row in rows:
            copy.write_row(row)


def copy_preferences(cur: psycopg.Cursor, rows: Iterable[tuple[int, list[str]]]) -> None:
    """COPY ``(user source_id, genres)`` rows into staging."""
    with cur.copy("COPY stage_preferences (user_sid, genres) FROM STDIN") as copy:
        copy.set_types(["int8", "text[]"])
        for row in rows:
            copy.write_row(row)


def copy_users(cur: psycopg.Cursor, source_ids: np.ndarray) -> None:
    """COPY user source ids into staging."""
    with int_columns_copy(cur, "stage_users", ("source_id",)) as write:
        write(np.asarray(source_ids, dtype=np.int64))


@contextmanager
def ratings_copy(cur: psycopg.Cursor) -> Iterator:
    """Yield ``write(user_sids, movie_sids, half_stars, epochs)`` taking NumPy arrays."""
    columns = ("user_sid", "movie_sid", "half_stars", "rated_epoch")
    with int_columns_copy(cur, "stage_ratings", columns) as write:
        yield write


@contextmanager
def int_columns_copy(cur: psycopg.Cursor, table: str, columns: Sequence[str]) -> Iterator:
    """A binary COPY into ``table`` fed with whole NumPy columns (int16 / int64) at a time.

    Building the binary rows with one vectorised NumPy assignment per column is what keeps a
    million ratings to a fraction of a second on the client side.
    """
    names = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(table), names
    )
    with cur.copy(statement) as copy:
        copy.write(_BINARY_HEADER)

        def write(*arrays: np.ndarray) -> None:
            copy.write(binary_rows(arrays))

        yield write
        copy.write(_BINARY_TRAILER)


def binary_rows(columns: Sequence[np.ndarray]) -> bytes:
    """PostgreSQL binary COPY tuples for equally long int16/int64 ``columns`` (no header)."""
    fields: list[tuple[str, str]] = [("count", ">i2")]
    for k, column in enumerate(columns):
        if column.dtype not in (np.int16, np.int64):
            raise TypeError(f"binary COPY column {k} has dtype {column.dtype}, not int16/int64")
        fields += [(f"len{k}", ">i4"), (f"val{k}", f">i{column.dtype.itemsize}")]
    rows = np.empty(len(columns[0]) if columns else 0, dtype=fields)
    rows["count"] = len(columns)
    for k, column in enumerate(columns):
        rows[f"len{k}"] = column.dtype.itemsize
        rows[f"val{k}"] = column
    return rows.tobytes()


def analyze_staging(cur: psycopg.Cursor) -> None:
    """Give the planner row counts for the TEMP tables (autovacuum never visits them)."""
    cur.execute("ANALYZE stage_movies, stage_users, stage_ratings, stage_preferences")


def analyze_targets(cur: psycopg.Cursor) -> None:
    """Refresh movies/users statistics so the ratings upsert joins them by hash, not by loop."""
    cur.execute("ANALYZE movies, users")


def upsert_movies(cur: psycopg.Cursor, source: str) -> None:
    cur.execute(_UPSERT_MOVIES, {"source": source})


def upsert_users(cur: psycopg.Cursor, source: str, username_prefix: str) -> None:
    """Raises :class:`BadInput` when a new user's name belongs to someone else already."""
    try:
        cur.execute(_UPSERT_USERS, {"source": source, "prefix": username_prefix})
    except psycopg.errors.UniqueViolation as exc:
        detail = exc.diag.message_detail or "a username is taken"
        raise BadInput(f"cannot add the {source} users: {detail}") from None


@contextmanager
def foreign_keys_in_bulk(cur: psycopg.Cursor, source: str) -> Iterator[bool]:
    """Within the block, check the ratings' and preferences' parents once, not per row.

    Per-row foreign-key triggers are most of the cost of inserting a rating (about 12 of
    20 µs). The upserts take user and movie ids from joins with their tables, so what the
    triggers would add is the guard against concurrent deletes; locking the source's users
    and movies FOR KEY SHARE, as the triggers would, gives that for all rows at once. Only
    done when the role may set ``session_replication_role`` and no trigger beyond the known
    ones would be skipped with them; yields whether it was.
    """
    cur.execute(_OTHER_TRIGGERS, (list(_KNOWN_TRIGGERS),))
    unknown = cur.fetchone()[0]
    cur.execute(_MAY_SKIP_TRIGGERS)
    if unknown or not cur.fetchone()[0]:
        yield False
        return
    for statement in _LOCK_PARENTS:
        cur.execute(statement, (source,))
    cur.execute("SET LOCAL session_replication_role = replica")
    yield True
    cur.execute("SET LOCAL session_replication_role = origin")


def upsert_ratings(cur: psycopg.Cursor, source: str) -> None:
    """Raises :class:`psycopg.errors.CardinalityViolation` if staging repeats a pair."""
    cur.execute(_UPSERT_RATINGS, {"source": source})


def upsert_preferences(cur: psycopg.Cursor, source: str) -> None:
    cur.execute(_UPSERT_PREFERENCES, {"source": source})


def refresh_statistics(database: Database) -> None:
    """VACUUM ANALYZE movies and ANALYZE the other loaded tables, outside any transaction.

    VACUUM moves fresh entries out of the GIN pending lists, so title search uses its
    indexes at once. Raises :class:`DatabaseUnavailable` when the server cannot be reached.
    """
    try:
        engine = database.primary.execution_options(isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("SET statement_timeout = 0"))
            try:
                conn.execute(text("VACUUM (ANALYZE) movies"))
                conn.execute(text("ANALYZE users, ratings, preferences"))
            finally:
                # The connection goes back to the pool; hand it back with the usual limit.
                conn.execute(text("RESET statement_timeout"))
    except OperationalError as exc:
        raise DatabaseUnavailable(f"database unavailable: {_first_line(exc.orig)}") from exc


def _first_line(exc: BaseException | None) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
