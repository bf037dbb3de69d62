"""Title search over a large catalogue (issue 23 §2): the site's search statement as it was
and as it is, timed per query class on the same data, query by query in turn.

    .venv/bin/python bench/bench_title_search.py [--movies 100000,1000000] [--queries 200]

For each ``--movies`` size: a private PostgreSQL (LocalPostgres, as the tests start one, one
server for every size), a database migrated to ``BEFORE_REVISION`` (the title indexes the
search had: GIN tsvector and GIN trigram), then ``N`` synthetic titles (the generator's,
:func:`movierec.data.sample_catalogue`; movies only, no ratings) plus ``RARE_TITLES`` titles
with a made-up word each, COPYed in with the tables' triggers off (a catalogue, not edits),
then migrated to head (timed: the new index's build). Per query class (two words, misspelt
words, one common word, a rare word, genre + word, a common word sorted newest first),
``--queries`` distinct queries, each searched in its own read-only session of
:class:`movierec.db.Database` (the site's engine: prepared statements, generic plans) by
``before_search`` (a copy of the statement before migration 0015: it reads none of 0015's
index) and by :func:`movierec.web.catalog.search`, alternately, so that both meet the same
load of a shared machine; p50/p99 of each, and how many pages (ids, has_next) differed.
Ends with EXPLAIN (ANALYZE, BUFFERS) of each side's slowest class by p99 (its slowest query,
prepared, generic plan, as the site runs it) and a rich table; ``--markdown`` prints the
table as markdown too.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from psycopg import sql
from rich.console import Console
from rich.table import Table
from sqlalchemy import Text, func, literal, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from movierec.config import load_settings
from movierec.data import sample_catalogue
from movierec.data.synthetic.words import ADJECTIVES, NOUNS
from movierec.db import Database, LocalPostgres, Movie, upgrade
from movierec.db.schema import GENRES
from movierec.web import catalog
from movierec.web.catalog import PAGE_SIZE, SearchPage, SearchQuery

BEFORE_REVISION = "0014"  # the last revision with the search's old indexes
RARE_TITLES = 300  # titles with a word of their own (the "rare word" class searches them)
WARMUP = 20  # queries of each class run untimed first: prepared statements, caches
Search = Callable[[Session, SearchQuery], SearchPage]


def titles(count: int, seed: int) -> tuple[list[tuple], list[str]]:
    """``count`` generated movies as (id, title, year, genres) rows, then the rare ones; and
    the rare words, one per rare title."""
    catalogue = sample_catalogue(count, 1, 0, seed=seed)
    years = catalogue.years.tolist()
    rows = [
        (i + 1, title, years[i], catalogue.movie_genres(i))
        for i, title in enumerate(catalogue.titles)
    ]
    rng = random.Random(seed)
    words = [made_up_word(rng) for _ in range(RARE_TITLES)]
    for word in words:
        title = f"The {rng.choice(ADJECTIVES)} {word}"
        rows.append((len(rows) + 1, title, rng.randrange(1920, 2026), ["Drama"]))
    return rows, words


def made_up_word(rng: random.Random) -> str:
    """A pronounceable word no generated title has (the word lists are English words)."""
    syllables = ("zu", "qua", "vex", "lor", "nim", "tra", "kel", "dor", "yx", "bri", "mo")
    return "".join(rng.choice(syllables) for _ in range(3)).capitalize()


def load(server: LocalPostgres, dbname: str, rows: list[tuple]) -> float:
    """COPY ``rows`` into movies with triggers off (``session_replication_role = replica``:
    no change history, no arrivals, as a data set's first load); seconds, ANALYZE included."""
    started = time.perf_counter()
    with server.connect(dbname) as conn, conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute("SET LOCAL maintenance_work_mem = '512MB'")
        statement = "COPY movies (id, title, year, genres, source, source_id) FROM STDIN"
        with conn.cursor().copy(statement) as copy:
            copy.set_types(["int8", "text", "int2", "text[]", "text", "int8"])
            for movie_id, title, year, genres in rows:
                copy.write_row((movie_id, title, year, genres, "bench", movie_id))
        conn.execute("SELECT setval('movies_id_seq', %s)", (len(rows),))
    with server.connect(dbname) as conn:
        conn.execute("VACUUM ANALYZE movies")
    return time.perf_counter() - started


def typo(word: str, rng: random.Random) -> str:
    """``word`` with two neighbouring letters after the first swapped (as bench_scale)."""
    i = rng.randrange(1, len(word) - 1)
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def query_classes(count: int, rare: list[str], seed: int) -> dict[str, list[SearchQuery]]:
    """``count`` distinct queries per class, the same for every run with ``seed``."""
    rng = random.Random(seed)
    pairs = [(a, n) for a in ADJECTIVES for n in NOUNS]
    rng.shuffle(pairs)
    nouns = list(NOUNS)
    rng.shuffle(nouns)
    common = [nouns[i % len(nouns)] for i in range(count)]
    return {
        "two words": [SearchQuery(q=f"{a} {n}".lower()) for a, n in pairs[:count]],
        "misspelt words": [
            SearchQuery(q=f"{typo(a, rng)} {typo(n, rng)}".lower()) for a, n in pairs[:count]
        ],
        "one common word": [SearchQuery(q=word) for word in common],
        "a rare word": [SearchQuery(q=rare[i % len(rare)].lower()) for i in range(count)],
        "genre + word": [
            SearchQuery(q=word, genre=rng.choice(GENRES[:8])) for word in reversed(common)
        ],
        "common word, newest first": [SearchQuery(q=word, sort="newest") for word in common],
    }


def timed(database: Database, search: Search, query: SearchQuery) -> tuple[float, list, bool]:
    """Milliseconds of one search in its own read-only session, and its page (ids, next)."""
    started = time.perf_counter()
    with database.session(readonly=True) as session:
        page = search(session, query)
    return (time.perf_counter() - started) * 1000, [m.id for m in page.movies], page.has_next


def time_class(database: Database, queries: list[SearchQuery]) -> dict:
    """Each query searched before and after, alternately (which goes first alternates too),
    so that both sides meet the same load on a shared machine; the times of each side and
    how many pages differed."""
    for query in queries[:WARMUP]:  # prepared statements (generic plans), caches
        for search in (before_search, catalog.search):
            timed(database, search, query)
    found: dict = {"before": [], "after": [], "different": 0}
    for i, query in enumerate(queries):
        sides = [("before", before_search), ("after", catalog.search)]
        pages = {}
        for side, search in sides if i % 2 == 0 else reversed(sides):
            ms, *pages[side] = timed(database, search, query)
            found[side].append(ms)
        found["different"] += pages["before"] != pages["after"]
    return found


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- the search as it was (catalog.search before migration 0015), for the "before" side ------


def before_statement(query: SearchQuery):
    """The statement catalog.search ran before: every title matching the words or a trigram
    scored and sorted, then LIMIT."""
    stmt = select(*catalog._COLUMNS)
    if query.sort in catalog._ORDERS:
        stmt = stmt.order_by(*catalog._ORDERS[query.sort])
    if query.q:
        words = func.plainto_tsquery("simple", query.q)
        word_match = Movie.title_tsv.bool_op("@@")(words)
        typo_match = Movie.title.bool_op("%")(query.q) | literal(query.q, Text).bool_op("<%")(
            Movie.title
        )
        stmt = stmt.where(word_match | typo_match).order_by(
            word_match.desc(),
            func.word_similarity(query.q, Movie.title).desc(),
            func.similarity(Movie.title, query.q).desc(),
        )
    if query.genre:
        stmt = stmt.where(Movie.genres.contains([query.genre]))
    if query.year:
        stmt = stmt.where(Movie.year == query.year)
    if not query.q and query.sort not in catalog._ORDERS:
        stmt = stmt.order_by(Movie.title)
    return stmt.order_by(Movie.id).offset((query.page - 1) * PAGE_SIZE).limit(PAGE_SIZE + 1)


def before_search(session: Session, query: SearchQuery) -> SearchPage:
    rows = [catalog._item(row) for row in session.execute(before_statement(query))]
    return SearchPage(query, tuple(rows[:PAGE_SIZE]), has_next=len(rows) > PAGE_SIZE)


# -- EXPLAIN of a statement as the site runs it: prepared, generic plan ----------------------

_PARAM = re.compile(r"%\((\w+)\)s")


def explain(server: LocalPostgres, dbname: str, stmt) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of ``stmt`` PREPAREd with its values as parameters and run
    with ``plan_cache_mode = force_generic_plan`` (the site's engines set it)."""
    compiled = stmt.compile(dialect=postgresql.psycopg.dialect())
    names: list[str] = []

    def number(match: re.Match) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    text = _PARAM.sub(number, str(compiled)).replace("%%", "%")  # pyformat's escaped %
    values = [compiled.params[name] for name in names]
    types = ", ".join(_pg_type(value) for value in values)
    with server.connect(dbname) as conn:
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute(f"PREPARE bench_search ({types}) AS {text}")
        # The values inline: EXPLAIN EXECUTE takes no parameters of its own.
        arguments = sql.SQL(", ").join(sql.Literal(value) for value in values)
        plan = conn.execute(
            sql.SQL("EXPLAIN (ANALYZE, BUFFERS) EXECUTE bench_search ({})").format(arguments)
        ).fetchall()
    return "\n".join(line for (line,) in plan)


def _pg_type(value) -> str:
    if isinstance(value, list):
        return "text[]"
    return "bigint" if isinstance(value, int) else "text"


# -- the run ---------------------------------------------------------------------------------


def run_size(server: LocalPostgres, movies: int, args, say: Callable[[str], None]) -> dict:
    dbname = f"search_{movies}"
    server.drop_database(dbname)
    upgrade(server.create_database(dbname), BEFORE_REVISION)
    rows, rare = titles(movies, args.seed)
    say(f"{movies:,} titles: drawn; loading")
    loaded = load(server, dbname, rows)
    say(f"{movies:,} titles: loaded in {loaded:,.1f} s")
    classes = query_classes(args.queries, rare, args.seed)
    database = Database(load_settings(environ={}, toml_path=None,
                                      overrides={"database_url": server.url(dbname)}))  # fmt: skip
    try:
        started = time.perf_counter()
        upgrade(server.url(dbname))
        migrated = time.perf_counter() - started
        say(f"{movies:,} titles: migrated to head in {migrated:,.1f} s")
        runs = {}
        for name, queries in classes.items():
            runs[name] = time_class(database, queries)
            say(f"{movies:,} titles: {name} measured")
    finally:
        database.dispose()
    before = {name: run["before"] for name, run in runs.items()}
    after = {name: run["after"] for name, run in runs.items()}
    plans = {
        side: explain(server, dbname, statement(_slowest(times, classes)))
        for side, times, statement in (
            ("before", before, before_statement),
            ("after", after, catalog.search_statement),
        )
    }
    return {"movies": len(rows), "load": loaded, "migrate": migrated,
            "before": before, "after": after, "plans": plans,
            "different": {name: run["different"] for name, run in runs.items()},
            "slowest": {side: _slowest_name(t) for side, t in (("before", before),
                                                                ("after", after))}}  # fmt: skip


def _slowest_name(times: dict[str, list[float]]) -> str:
    return max(times, key=lambda name: percentile(times[name], 0.99))


def _slowest(times: dict[str, list[float]], classes: dict) -> SearchQuery:
    """The slowest query of the slowest class (by p99)."""
    name = _slowest_name(times)
    return classes[name][max(range(len(times[name])), key=times[name].__getitem__)]


def report(results: list[dict], args) -> Table:
    table = Table(title=f"Title search, {args.queries} queries per class, one at a time")
    for column in ("titles", "class", "before p50", "before p99", "after p50", "after p99",
                   "p99 before/after", "pages not the same"):  # fmt: skip
        table.add_column(column, justify="left" if column in ("titles", "class") else "right")
    for found in results:
        for name in found["before"]:
            b, a = found["before"][name], found["after"][name]
            table.add_row(
                f"{found['movies']:,}", name,
                f"{statistics.median(b):,.1f} ms", f"{percentile(b, 0.99):,.1f} ms",
                f"{statistics.median(a):,.1f} ms", f"{percentile(a, 0.99):,.1f} ms",
                f"{percentile(b, 0.99) / percentile(a, 0.99):,.1f}x",
                f"{found['different'][name]} of {len(b)}",
            )  # fmt: skip
    return table


def markdown(table: Table) -> str:
    headers = [str(column.header) for column in table.columns]
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---" if c.justify == "left" else "---:" for c in table.columns)
             + "|"]  # fmt: skip
    cells = [list(column.cells) for column in table.columns]
    for row in zip(*cells, strict=True):
        lines.append("| " + " | ".join(str(cell) for cell in row) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--movies", default="100000,1000000",
                        help="comma-separated catalogue sizes")  # fmt: skip
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    console = Console(width=160)  # the table on one line a row, in a terminal or a file
    started = time.perf_counter()

    def say(text: str) -> None:
        console.print(f"[dim]{time.perf_counter() - started:7.1f} s[/] {text}")

    root = Path(tempfile.mkdtemp(prefix="movierec-bench-search-"))
    os.chmod(root, 0o755)  # the postgres OS user must enter it when we run as root
    server = LocalPostgres(root / "pg")
    results = []
    try:
        server.start()
        for movies in (int(size) for size in args.movies.split(",")):
            results.append(run_size(server, movies, args, say))
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    for found in results:
        for side in ("before", "after"):
            console.rule(f"{found['movies']:,} titles, {side}: EXPLAIN (ANALYZE, BUFFERS) of "
                         f"the slowest query of '{found['slowest'][side]}'")  # fmt: skip
            print(found["plans"][side])  # plain: rich would wrap the plan's lines
        console.print(f"{found['movies']:,} titles: loaded in {found['load']:,.1f} s, "
                      f"migrated to head in {found['migrate']:,.1f} s")  # fmt: skip
    table = report(results, args)
    console.print(table)
    if args.markdown:
        print(markdown(table))


if __name__ == "__main__":
    main()
