"""Title search's relevance order found in parts (catalog._best_matches) against the statement
that scores and sorts every match (catalog._in_order, what search ran before migration 0015):
the same rows in the same order, on every path (few word matches, the walk of titles by
trigrams, the walk giving way to scoring, typo matches), and the exact title first for a word
that many longer titles have."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import text

from movierec.data.synthetic.titles import compose_titles
from movierec.web import catalog
from movierec.web.catalog import PAGE_SIZE, SearchQuery

CATALOGUE = 3_000


def load(database, titles: list[str], genres: list[list[str]] | None = None) -> None:
    """Movies 1..n with ``titles`` in that order (triggers off: a catalogue, not edits)."""
    genres = genres or [["Drama"] if i % 3 else ["Comedy"] for i in range(len(titles))]
    with database.session() as s:
        s.execute(text("SET LOCAL session_replication_role = replica"))
        s.execute(
            text(
                "INSERT INTO movies (id, title, year, genres) "
                "SELECT i, t, 1950 + i % 70, g::text[] "
                "FROM unnest(CAST(:titles AS text[]), CAST(:genres AS text[])) "
                "WITH ORDINALITY AS u(t, g, i)"
            ),
            {"titles": titles, "genres": ["{" + ",".join(g) + "}" for g in genres]},
        )
    with database.primary.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE movies"))


def exhaustive(database, query: SearchQuery) -> tuple[list[int], bool]:
    """The page as the statement that scores every match gives it."""
    stmt = catalog._in_order(query)
    stmt = stmt.offset((query.page - 1) * PAGE_SIZE).limit(PAGE_SIZE + 1)
    with database.session(readonly=True) as s:
        ids = list(s.execute(stmt).scalars())
    return ids[:PAGE_SIZE], len(ids) > PAGE_SIZE


def searched(database, query: SearchQuery) -> tuple[list[int], bool]:
    with database.session(readonly=True) as s:
        page = catalog.search(s, query)
    return [m.id for m in page.movies], page.has_next


def titles_of(database, ids: list[int]) -> list[str]:
    with database.session(readonly=True) as s:
        rows = s.execute(text("SELECT id, title FROM movies WHERE id = ANY(:i)"), {"i": ids})
        found = {movie: title for movie, title in rows}
    return [found[i] for i in ids]


@pytest.fixture
def synthetic(database):
    load(database, compose_titles(np.random.default_rng(7), CATALOGUE))
    return database


QUERIES = [
    SearchQuery(q="river"),  # a common word
    SearchQuery(q="the"),  # in most titles
    SearchQuery(q="of vienna"),  # words many titles have, rarely side by side with few trigrams
    SearchQuery(q="silent river"),  # two words
    SearchQuery(q="slient rivr"),  # misspelt
    SearchQuery(q="shadw"),  # one misspelt word
    SearchQuery(q="river", genre="Comedy"),
    SearchQuery(q="river", year=1990),
    SearchQuery(q="river", page=3),
    SearchQuery(q="the", page=7),
    SearchQuery(q="zebra"),  # nothing close
]


@pytest.mark.parametrize(
    ("many", "walk"),
    [(catalog.MANY_WORD_MATCHES, catalog.WALK_LIMIT), (10, catalog.WALK_LIMIT), (10, 40)],
    ids=["as-shipped", "walk", "walk-gives-way"],
)
def test_every_path_gives_the_pages_of_the_exhaustive_ranking(synthetic, monkeypatch, many, walk):
    monkeypatch.setattr(catalog, "MANY_WORD_MATCHES", many)
    monkeypatch.setattr(catalog, "WALK_LIMIT", walk)
    for query in QUERIES:
        expected = exhaustive(synthetic, query)
        assert searched(synthetic, query) == expected, query
    # Not vacuous: the common word fills pages, a misspelling finds the word it meant.
    assert exhaustive(synthetic, SearchQuery(q="river"))[1]
    assert exhaustive(synthetic, SearchQuery(q="the", page=7))[1]
    assert "Shadow" in " ".join(titles_of(synthetic, searched(synthetic, QUERIES[5])[0]))


def test_a_common_word_gives_the_exact_title_first_past_any_cap(database, monkeypatch):
    # 300 long titles with the word come first by id (and on disk); the title that is just
    # the word comes last. A search that ranked only the first N word matches it reads
    # (any cap below 300) would miss it; the walk by trigrams finds it first.
    monkeypatch.setattr(catalog, "MANY_WORD_MATCHES", 50)
    long = [f"The Forgotten Garden of River Street {i}" for i in range(300)]
    load(database, [*long, "Red River", "River"])
    ids, has_next = searched(database, SearchQuery(q="river"))
    assert titles_of(database, ids[:2]) == ["River", "Red River"]
    assert has_next
    assert (ids, has_next) == exhaustive(database, SearchQuery(q="river"))


def test_pages_follow_each_other_without_gaps_or_repeats(synthetic, monkeypatch):
    monkeypatch.setattr(catalog, "MANY_WORD_MATCHES", 10)
    pages = [searched(synthetic, SearchQuery(q="the", page=p))[0] for p in (1, 2, 3)]
    seen = [movie for page in pages for movie in page]
    assert len(seen) == len(set(seen)) == 3 * PAGE_SIZE
    expected = []
    for p in (1, 2, 3):
        expected += exhaustive(synthetic, SearchQuery(q="the", page=p))[0]
    assert seen == expected


def test_typos_fill_the_page_after_the_word_matches(database):
    load(database, ["The Shining", "Shining Star", "The Shinning Path", "Whining"])
    ids, _ = searched(database, SearchQuery(q="shining"))
    titles = titles_of(database, ids)
    # Word matches first (shortest first), then a misspelt title close by its words.
    assert titles[:2] == ["The Shining", "Shining Star"]
    assert "The Shinning Path" in titles[2:]
    assert (ids, False) == exhaustive(database, SearchQuery(q="shining"))
