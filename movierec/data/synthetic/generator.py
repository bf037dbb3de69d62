"""Write a synthetic catalogue to the database, all in one transaction."""

from __future__ import annotations

import time

import numpy as np

from movierec.data.results import GenerateSummary, Progress, no_progress
from movierec.data.synthetic.catalogue import Catalogue, sample_catalogue
from movierec.db import Database, bulk

SOURCE = "synthetic"
USERNAME_PREFIX = "user"  # user 42 of the catalogue is "user42"
_COPY_CHUNK = 1 << 20
_STEPS = 6


def generate_catalogue(
    database: Database,
    movies: int,
    users: int,
    ratings: int,
    seed: int = 0,
    progress: Progress | None = None,
) -> GenerateSummary:
    """Draw a catalogue (see :mod:`movierec.data.synthetic.catalogue`) and load it.

    Movies and users are stored with source ``'synthetic'`` and their 1-based numbers as
    ``source_id``, so running again with the same arguments and seed leaves the database as it
    was. ``progress(step, steps)`` follows the stages. Raises :class:`BadInput` for impossible
    counts and :class:`DatabaseUnavailable`.
    """
    started = time.perf_counter()
    report = progress or no_progress
    report(0, _STEPS)
    catalogue = sample_catalogue(movies, users, ratings, seed)
    report(1, _STEPS)
    description = f"generate {movies} movies, {users} users, {ratings} ratings (seed {seed})"
    tables = ("movies", "users", "ratings", "preferences")
    with bulk.bulk_transaction(database, description, SOURCE, tables) as cur:
        bulk.copy_movies(cur, _movie_rows(catalogue))
        bulk.copy_users(cur, np.arange(1, users + 1, dtype=np.int64))
        bulk.copy_preferences(
            cur, ((user + 1, genres) for user, genres in catalogue.preferences.items())
        )
        report(2, _STEPS)
        with bulk.ratings_copy(cur) as write:
            for start in range(0, ratings, _COPY_CHUNK):
                part = slice(start, start + _COPY_CHUNK)
                write(
                    catalogue.rating_user[part] + 1,
                    catalogue.rating_movie[part] + 1,
                    catalogue.half_stars[part],
                    catalogue.rated_epoch[part],
                )
        bulk.analyze_staging(cur)
        report(3, _STEPS)
        bulk.upsert_movies(cur, SOURCE)
        bulk.upsert_users(cur, SOURCE, USERNAME_PREFIX)
        bulk.analyze_targets(cur)
        report(4, _STEPS)
        with bulk.foreign_keys_in_bulk(cur, SOURCE):
            bulk.upsert_ratings(cur, SOURCE)
            bulk.upsert_preferences(cur, SOURCE)
    report(5, _STEPS)
    bulk.refresh_statistics(database)
    report(_STEPS, _STEPS)
    return GenerateSummary(
        movies=movies,
        users=users,
        ratings=ratings,
        preferences=len(catalogue.preferences),
        seconds=time.perf_counter() - started,
    )


def _movie_rows(catalogue: Catalogue):
    years = catalogue.years.tolist()
    for movie, title in enumerate(catalogue.titles):
        yield (movie + 1, title, years[movie], catalogue.movie_genres(movie), None, None)
