"""Import one MovieLens release into the database, all or nothing."""

from __future__ import annotations

import time
from pathlib import Path

from movierec.data.movielens.parse import (
    ByteProgress,
    apply_links,
    parse_movies,
    stream_ratings,
)
from movierec.data.movielens.release import detect_release
from movierec.data.results import ImportSummary, Progress, no_progress
from movierec.db import Database, bulk
from movierec.errors import BadInput


def import_movielens(
    database: Database,
    path: Path | str,
    progress: Progress | None = None,
    source: str | None = None,
) -> ImportSummary:
    """Load the MovieLens release in directory ``path`` (ml-100k, ml-1m or a CSV release).

    Movies and users are stored with ``source`` (default: the release's name, see
    :func:`~movierec.data.movielens.release.detect_release`) and their MovieLens ids, so
    importing the same release again changes nothing. ``progress(done, total)`` is called with
    bytes read. Everything happens in one transaction: on any error nothing is loaded.

    Raises :class:`BadInput` for a missing directory, an unknown layout or a malformed line
    (file, line number and what was expected), and :class:`DatabaseUnavailable`.
    """
    started = time.perf_counter()
    release = detect_release(path, source)
    bytes_read = ByteProgress(release, progress or no_progress)
    movies = parse_movies(release, bytes_read)
    apply_links(release, movies, bytes_read)
    description = f"import {release.source} from {Path(path).resolve()}"
    tables = ("movies", "users", "ratings")
    with bulk.bulk_transaction(database, description, release.source, tables) as cur:
        bulk.copy_movies(cur, movies.values())
        with bulk.ratings_copy(cur) as write:
            ratings, user_ids = stream_ratings(release, movies, write, bytes_read)
        bulk.copy_users(cur, user_ids)
        bulk.analyze_staging(cur)
        bulk.upsert_movies(cur, release.source)
        bulk.upsert_users(cur, release.source, username_prefix=f"{release.source}-")
        bulk.analyze_targets(cur)
        try:
            with bulk.foreign_keys_in_bulk(cur, release.source):
                bulk.upsert_ratings(cur, release.source)
        except bulk.DuplicatePairs:
            raise BadInput(
                f"{release.ratings.name}: some user rates the same movie on two lines"
            ) from None
    bulk.refresh_statistics(database)
    return ImportSummary(
        source=release.source,
        movies=len(movies),
        users=len(user_ids),
        ratings=ratings,
        seconds=time.perf_counter() - started,
    )
