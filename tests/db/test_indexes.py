"""The indexes that many moderate queries need, used (EXPLAIN) on partitioned tables with
enough rows, and the statement timeout that stops an immoderate one."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import text

from movierec.db import Database
from movierec.db.errors import QueryTimeout
from movierec.errors import DatabaseUnavailable, MovierecError
from movierec.web import catalog
from movierec.web.catalog import SearchQuery

MOVIES, USERS, PER_USER = 20_000, 2_000, 30

SEED = (
    # Rows that only set the stage: no history, no per-row reference checks.
    "SET LOCAL session_replication_role = replica",
    "INSERT INTO users (id, username) SELECT i, 'u' || i FROM generate_series(1, :users) i",
    "INSERT INTO movies (id, title, year, genres) "
    "SELECT i, 'Film number ' || i, 1900 + i % 120, ARRAY['Drama'] "
    "FROM generate_series(1, :movies) i",
    "INSERT INTO movies (id, title, year) VALUES (:movies + 1, 'The Shining', 1980)",
    "INSERT INTO ratings (user_id, movie_id, rating) "
    "SELECT u, 1 + (u * 7919 + k * 104729) % :movies, 0.5 + (u + k) % 10 / 2.0 "
    "FROM generate_series(1, :users) u, generate_series(1, :per_user) k",
    "INSERT INTO searches (user_id, query) SELECT 1 + i % :users, 'heat' "
    "FROM generate_series(1, 20000) i",
)


@pytest.fixture
def loaded(database):
    with database.session() as s:
        for statement in SEED:
            s.execute(text(statement), {"users": USERS, "movies": MOVIES, "per_user": PER_USER})
    with database.primary.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE users, movies, ratings, searches"))
    return database


def explain(database, statement: str, **params) -> str:
    with database.session(readonly=True) as s:
        return "\n".join(s.execute(text("EXPLAIN " + statement), params).scalars())


def indexes_used(plan: str) -> set[str]:
    # "Index Scan using <index> on <table>", "Index Only Scan Backward using ...", "Bitmap
    # Index Scan on <index>": which one the planner picks moves with the table's statistics.
    return set(re.findall(r"Index (?:Only )?Scan (?:Backward )?using (\w+)", plan)) | set(
        re.findall(r"Bitmap Index Scan on (\w+)", plan)
    )


def test_title_search_uses_the_word_and_trigram_indexes_of_every_partition(loaded):
    # What the site's search asks (movierec.web.catalog.search): words, or typo-tolerant.
    plan = explain(
        loaded,
        "SELECT id FROM movies WHERE title_tsv @@ plainto_tsquery('simple', :q) "
        "OR title % :q OR :q <% title",
        q="shinning",
    )
    used = indexes_used(plan)
    assert {f"movies_title_tsv_idx_p{r}" for r in range(4)} <= used, plan
    assert {f"movies_title_trgm_idx_p{r}" for r in range(4)} <= used, plan
    assert "Seq Scan" not in plan
    with loaded.session(readonly=True) as s:
        found = s.execute(
            text("SELECT title FROM movies WHERE title % :q OR :q <% title"), {"q": "shinning"}
        ).scalars()
        assert list(found) == ["The Shining"]


def test_a_word_most_titles_have_is_ranked_by_walking_the_titles_by_trigrams_index(loaded):
    # "film" is in 20,000 titles: past catalog.MANY_WORD_MATCHES, search walks the covering
    # index of titles by number of trigrams (migration 0015) instead of scoring every match.
    with loaded.session(readonly=True) as s:
        page = catalog.search(s, SearchQuery(q="film"))
        # This transaction's scans of each partition's copy of the index.
        scans = s.execute(
            text(
                "SELECT c.relname, pg_stat_get_xact_numscans(c.oid) FROM pg_class c "
                "WHERE c.relname LIKE 'movies_title_trigrams_idx_p%' ORDER BY 1"
            )
        ).all()
    assert [name for name, _ in scans] == [f"movies_title_trigrams_idx_p{r}" for r in range(4)]
    assert all(count > 0 for _, count in scans), scans
    # The shortest titles with the word first: "Film number 1" .. "Film number 9".
    assert [m.title for m in page.movies[:9]] == [f"Film number {i}" for i in range(1, 10)]


def test_a_users_ratings_use_one_partitions_key(loaded):
    plan = explain(
        loaded, "SELECT movie_id, rating FROM ratings WHERE user_id = :u ORDER BY rated_at", u=42
    )
    used = indexes_used(plan)
    assert len(used) == 1 and re.fullmatch(r"ratings_p\d_pkey", used.pop()), plan
    assert len(set(re.findall(r"\bratings_p\d\b", plan))) == 1, plan  # no other partition


def test_a_movies_ratings_use_the_movie_index_of_each_partition(loaded):
    plan = explain(loaded, "SELECT count(*), avg(rating) FROM ratings WHERE movie_id = :m", m=1234)
    assert indexes_used(plan) == {f"ratings_movie_id_idx_p{r}" for r in range(4)}, plan


def test_a_users_recent_searches_use_the_user_time_index(loaded):
    plan = explain(
        loaded,
        "SELECT query FROM searches WHERE user_id = :u ORDER BY searched_at DESC LIMIT 20",
        u=42,
    )
    used = indexes_used(plan)
    assert len(used) == 1 and re.fullmatch(r"searches_user_time_idx_p\d", used.pop()), plan


def test_a_statement_past_the_timeout_fails_with_a_movierec_error(settings):
    from dataclasses import replace

    with Database(replace(settings, statement_timeout_ms=200)) as database:
        with pytest.raises(QueryTimeout, match="cancelled after 200 ms") as raised:
            with database.session() as s:
                s.execute(text("SELECT pg_sleep(2)"))
        assert isinstance(raised.value, MovierecError)
        assert isinstance(raised.value, DatabaseUnavailable)  # the web answers 503
        with database.session() as s:  # the pool's connections are still good
            assert s.execute(text("SELECT pg_sleep(0.05), 1")).one()[1] == 1


def test_a_repeated_statement_over_partitions_keeps_its_generic_plan(loaded):
    """psycopg prepares a statement run five times; PostgreSQL must then reuse one plan for
    it rather than plan each call anew (see GENERIC_PLANS in movierec.db.engines)."""
    mine = text("SELECT count(*) FROM ratings WHERE user_id = :u")
    with loaded.primary.connect() as conn:
        for user in range(1, 21):
            assert conn.execute(mine, {"u": user}).scalar_one() == PER_USER
        generic, custom = conn.execute(
            text(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
                "WHERE statement LIKE 'SELECT count(*) FROM ratings WHERE user_id = %'"
            )
        ).one()
    assert generic > 0 and custom == 0, (generic, custom)


def test_the_admin_page_counts_admins_from_their_index(loaded):
    # The admin page's "Admins" (movierec.web.admin): a scan of every user at a million users
    # (180 ms per view) until migration 0016's partial index.
    plan = explain(loaded, "SELECT count(*) FROM users WHERE is_admin")
    assert indexes_used(plan) == {"users_admins_idx"}, plan
