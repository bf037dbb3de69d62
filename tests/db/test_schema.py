"""The migrated schema on a real PostgreSQL: tables, constraints, search indexes."""

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from movierec.db import Movie, Rating, User
from movierec.db.migrate import current_tables


def test_migration_creates_every_table(db_url):
    assert set(current_tables(db_url)) >= {
        "users", "identities", "movies", "ratings", "searches", "preferences", "alembic_version",
    }  # fmt: skip


def test_rating_must_be_half_stars_between_half_and_five(database):
    with database.session() as s:
        s.add_all([User(id=1, username="ann"), Movie(id=1, title="Heat", year=1995)])
    for bad in (0.0, 5.5, 3.3):
        with pytest.raises(IntegrityError), database.session() as s:
            s.add(Rating(user_id=1, movie_id=1, rating=bad))
    with database.session() as s:
        s.add(Rating(user_id=1, movie_id=1, rating=4.5))
    with database.session(readonly=True) as s:
        assert s.scalar(select(Rating.rating)) == 4.5


def test_title_search_uses_full_text_index(database):
    with database.session() as s:
        s.execute(
            text(
                "INSERT INTO movies (title, year) "
                "SELECT 'Film number ' || i, 2000 FROM generate_series(1, 20000) AS i"
            )
        )
        s.add(Movie(title="The Shining", year=1980))
    # VACUUM moves freshly inserted entries out of the GIN pending list, as autovacuum (or the
    # importer) would; the planner prices a full pending list as a scan of it.
    with database.primary.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE movies"))
    with database.session(readonly=True) as s:
        plan = s.execute(
            text("EXPLAIN SELECT id FROM movies WHERE title_tsv @@ plainto_tsquery('simple', :q)"),
            {"q": "shining"},
        ).scalars()
        assert "movies_title_tsv_idx" in "\n".join(plan)
