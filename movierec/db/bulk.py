"""Bulk loading: one transaction, COPY into TEMP staging tables, then upserts into the real ones;
and bulk reading, a COPY out (:func:`copy_out`, what training reads the ratings with).

Both the MovieLens importer and the synthetic generator (:mod:`movierec.data`) load this way.
Rows are keyed by ``(source, source_id)``, so loading the same data twice updates rows in
place instead of adding twins, and a failure anywhere before the commit leaves the database
as it was.
COPY needs the driver's own connection (psycopg 3), which is why this module works below
SQLAlchemy, in :mod:`movierec.db` (the one package that talks to the driver); it still gets
that connection, and its transaction, from :class:`Database`
(:func:`movierec.db.connect.session_connection`).

Movies, ratings and preferences are partitioned tables (migration 0004) whose parents have no
unique index, so no ``ON CONFLICT``: each upsert is an UPDATE of the rows that exist followed by
an INSERT of those that do not. A movie's ``(source, source_id)`` is found through
``movie_sources``. Loads of the same source take turns (a transaction-level advisory lock), so
two of them cannot both insert the same new row.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import psycopg
from psycopg import sql
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from movierec.db.connect import session_connection
from movierec.db.engines import Database
from movierec.db.history import bulk_change_set
from movierec.db.notifications import notify_everyone
from movierec.db.partitions.loading import DirectRoute, direct_foreign_inserts
from movierec.errors import BadInput, DatabaseUnavailable, first_line

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

_SOURCE_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('movierec.bulk:' || %s, 0))"

_UPDATE_MOVIES = """
UPDATE movies m
SET title = s.title, year = s.year, genres = s.genres, imdb_id = s.imdb_id, tmdb_id = s.tmdb_id
FROM stage_movies s JOIN movie_sources ms ON ms.source = %(source)s AND ms.source_id = s.source_id
WHERE m.id = ms.movie_id
  AND (m.title, m.year, m.genres, m.imdb_id, m.tmdb_id)
      IS DISTINCT FROM (s.title, s.year, s.genres, s.imdb_id, s.tmdb_id)
"""

# The trigger on movies adds the movie_sources rows.
_INSERT_MOVIES = """
INSERT INTO movies (title, year, genres, imdb_id, tmdb_id, source, source_id)
SELECT title, year, genres, imdb_id, tmdb_id, %(source)s::text, source_id
FROM stage_movies s
WHERE NOT EXISTS (SELECT 1 FROM movie_sources ms
                  WHERE ms.source = %(source)s::text AND ms.source_id = s.source_id)
ORDER BY source_id
"""

# Sets movierec.catalogue_load for the transaction when no movie of the source exists yet.
_FIRST_LOAD = """
SELECT set_config('movierec.catalogue_load',
                  CASE WHEN EXISTS (SELECT 1 FROM movie_sources WHERE source = %(source)s::text)
                       THEN 'off' ELSE 'on' END, true)
"""

# An imported user someone has since renamed keeps the new name: DO NOTHING, not DO UPDATE.
_UPSERT_USERS = """
INSERT INTO users (username, source, source_id)
SELECT %(prefix)s || source_id, %(source)s, source_id FROM stage_users ORDER BY source_id
ON CONFLICT (source, source_id) DO NOTHING
"""

# Whether any rating of the source's users exists: a first load skips the update and the
# anti-join (each costs a pass over the staged ratings).
_SOURCE_HAS_RATINGS = """
SELECT EXISTS (SELECT 1 FROM users u WHERE u.source = %(source)s
               AND EXISTS (SELECT 1 FROM ratings r WHERE r.user_id = u.id))
"""

_UPDATE_RATINGS = """
UPDATE ratings r SET rating = x.rating, rated_at = x.rated_at
FROM (SELECT u.id AS user_id, ms.movie_id, s.half_stars / 2.0 AS rating,
             to_timestamp(s.rated_epoch) AS rated_at
      FROM stage_ratings s
      JOIN users u ON u.source = %(source)s AND u.source_id = s.user_sid
      JOIN movie_sources ms ON ms.source = %(source)s AND ms.source_id = s.movie_sid) x
WHERE r.user_id = x.user_id AND r.movie_id = x.movie_id
  AND (r.rating, r.rated_at) IS DISTINCT FROM (x.rating, x.rated_at)
"""

_RATING_COLUMNS = sql.SQL("user_id, movie_id, rating, rated_at")

_STAGED_RATINGS = sql.SQL("""
SELECT u.id AS user_id, ms.movie_id, s.half_stars / 2.0 AS rating,
       to_timestamp(s.rated_epoch) AS rated_at
FROM stage_ratings s
JOIN users u ON u.source = %(source)s AND u.source_id = s.user_sid
JOIN movie_sources ms ON ms.source = %(source)s AND ms.source_id = s.movie_sid
""")

_NEW_STAGED_RATINGS = _STAGED_RATINGS + sql.SQL(
    "WHERE NOT EXISTS (SELECT 1 FROM ratings r WHERE r.user_id = u.id AND r.movie_id = ms.movie_id)"
)

_UPDATE_PREFERENCES = """
UPDATE preferences p SET genres = s.genres, updated_at = now()
FROM stage_preferences s JOIN users u ON u.source = %(source)s AND u.source_id = s.user_sid
WHERE p.user_id = u.id AND p.genres IS DISTINCT FROM s.genres
"""

_INSERT_PREFERENCES = """
INSERT INTO preferences (user_id, genres)
SELECT u.id, s.genres
FROM stage_preferences s JOIN users u ON u.source = %(source)s AND u.source_id = s.user_sid
WHERE NOT EXISTS (SELECT 1 FROM preferences p WHERE p.user_id = u.id)
"""

# Triggers a bulk load may set aside: the history's (a bulk change set stands for them), the
# truncate guard (no TRUNCATE here), the change notifications (one for everyone is sent) and
# the reference checks (movierec_ref_*: what foreign keys were; checked in bulk below).
_KNOWN_TRIGGERS = (
    "movierec_history",
    "movierec_history_update",
    "movierec_no_truncate",
    "movierec_notify",
)
_OTHER_TRIGGERS = """
SELECT count(*) FROM pg_trigger
WHERE tgrelid = ANY (ARRAY['ratings', 'preferences']::regclass[])
  AND NOT tgisinternal AND tgenabled <> 'D' AND tgname <> ALL (%s)
  AND tgname NOT LIKE 'movierec\\_ref\\_%%'
"""
_MAY_SKIP_TRIGGERS = """
SELECT current_setting('is_superuser') = 'on'
    OR has_parameter_privilege('session_replication_role', 'SET')
"""
_LOCK_PARENTS = (
    "SELECT count(*) FROM (SELECT 1 FROM users WHERE source = %s FOR KEY SHARE) AS locked",
    "SELECT count(*) FROM (SELECT 1 FROM movies m JOIN movie_sources ms ON ms.movie_id = m.id "
    "WHERE ms.source = %s FOR KEY SHARE OF m) AS locked",
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
    with session_connection(database) as conn, conn.cursor() as cur:
        # The configured statement timeout guards web requests; a bulk load of millions of
        # rows legitimately runs longer than it.
        cur.execute("SET LOCAL statement_timeout = 0")
        cur.execute(_SOURCE_LOCK, (source,))
        for ddl in _STAGING_DDL:
            cur.execute(ddl)
        details = {"source": source, "tables": list(tables)}
        with bulk_change_set(cur, description, details):
            yield cur
        notify_everyone(cur)


def copy_out(database: Database, statement: str) -> Iterator[bytes]:
    """The blocks of ``COPY (...) TO STDOUT`` ``statement``, as the server sends them, read
    in one transaction from a replica when one answers (else the primary).

    A full export may take minutes: the statement timeout, meant for page requests, is
    lifted for it. Raises :class:`DatabaseUnavailable` (while iterating) when the server
    cannot be reached or drops the connection.
    """
    with session_connection(database, readonly=True) as conn, conn.cursor() as cur:
        cur.execute("SET LOCAL statement_timeout = 0")
        with cur.copy(statement) as copy:
            yield from copy


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
    cur.execute("ANALYZE movies, users, movie_sources")


def upsert_movies(cur: psycopg.Cursor, source: str) -> None:
    """Update the source's movies and insert its new ones. A first load of the source is the
    catalogue, not new arrivals: it is not recorded in ``movie_arrivals`` (migration 0013),
    a later load's new movies are ("new this week" on the site)."""
    cur.execute(_UPDATE_MOVIES, {"source": source})
    cur.execute(_FIRST_LOAD, {"source": source})
    cur.execute(_INSERT_MOVIES, {"source": source})
    cur.execute("SELECT set_config('movierec.catalogue_load', 'off', true)")


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


class DuplicatePairs(BadInput):
    """The staged ratings rate one movie twice by the same user."""


def upsert_ratings(cur: psycopg.Cursor, source: str) -> None:
    """Raises :class:`DuplicatePairs` if staging repeats a (user, movie) pair that is new.

    (A repeated pair that is already in the table updates it with one of the two values.)
    In bulk mode (:func:`foreign_keys_in_bulk`), rows of partitions on shard servers go
    straight to trigger-less foreign tables, in postgres_fdw batches
    (:func:`~movierec.db.partitions.loading.direct_foreign_inserts`).
    """
    params = {"source": source}
    cur.execute(_SOURCE_HAS_RATINGS, params)
    if not cur.fetchone()[0]:
        rows = _STAGED_RATINGS
    else:
        cur.execute(_UPDATE_RATINGS, params)
        rows = _NEW_STAGED_RATINGS
    try:
        with direct_foreign_inserts(cur.connection, "ratings") as routes:
            if not routes:
                insert = sql.SQL("INSERT INTO ratings ({}) {}").format(_RATING_COLUMNS, rows)
                cur.execute(insert, params)
            else:
                _insert_routed(cur, rows, params, routes)
    except psycopg.errors.UniqueViolation:
        raise DuplicatePairs("some user rates the same movie twice") from None


def _insert_routed(
    cur: psycopg.Cursor, rows: sql.Composable, params: dict, routes: list[DirectRoute]
) -> None:
    """Insert ``rows`` into ratings: a shard's share straight into its route, the rest
    through the parent (local partitions only, then)."""
    cur.execute(
        "CREATE TEMP TABLE stage_ratings_out (user_id bigint, movie_id bigint, "
        "rating numeric(2, 1), rated_at timestamptz) ON COMMIT DROP"
    )
    cur.execute(sql.SQL("INSERT INTO stage_ratings_out {}").format(rows), params)
    user = sql.Identifier("user_id")
    for route in routes:
        cur.execute(
            sql.SQL("INSERT INTO {} ({}) SELECT {} FROM stage_ratings_out WHERE {}").format(
                sql.Identifier(route.relation), _RATING_COLUMNS, _RATING_COLUMNS,
                route.condition(user),
            )
        )  # fmt: skip
    elsewhere = sql.SQL(" OR ").join(route.condition(user) for route in routes)
    cur.execute(
        sql.SQL("INSERT INTO ratings ({}) SELECT {} FROM stage_ratings_out WHERE NOT ({})").format(
            _RATING_COLUMNS, _RATING_COLUMNS, elsewhere
        )
    )


def upsert_preferences(cur: psycopg.Cursor, source: str) -> None:
    cur.execute(_UPDATE_PREFERENCES, {"source": source})
    cur.execute(_INSERT_PREFERENCES, {"source": source})


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
        raise DatabaseUnavailable(f"database unavailable: {first_line(exc)}") from exc
