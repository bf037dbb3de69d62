"""Importing MovieLens releases into a real PostgreSQL: parsing, counts, idempotence, refusal."""

from datetime import UTC, datetime

import pytest
from data_samples import EXPECTED, ML100K, ML_LATEST, table_counts
from sqlalchemy import text

from movierec.data import import_movielens
from movierec.data.movielens import parse
from movierec.errors import BadInput


def movie(database, source, source_id):
    with database.session(readonly=True) as s:
        return s.execute(
            text(
                "SELECT title, year, genres, imdb_id, tmdb_id FROM movies "
                "WHERE source = :source AND source_id = :id"
            ),
            {"source": source, "id": source_id},
        ).one()


def rating(database, source, user, movie_id):
    with database.session(readonly=True) as s:
        return s.execute(
            text(
                "SELECT u.username, r.rating, r.rated_at FROM ratings r "
                "JOIN users u ON u.id = r.user_id JOIN movies m ON m.id = r.movie_id "
                "WHERE u.source = :source AND u.source_id = :user AND m.source_id = :movie"
            ),
            {"source": source, "user": user, "movie": movie_id},
        ).one()


@pytest.mark.parametrize("name", ["ml-100k", "ml-1m", "ml-latest-small"])
def test_each_format_imports_with_the_right_counts(database, make_release, name):
    summary = import_movielens(database, make_release(name))
    movies, users, ratings = EXPECTED[name]
    assert (summary.source, summary.movies, summary.users, summary.ratings) == (
        name, movies, users, ratings,
    )  # fmt: skip
    assert table_counts(database) == {
        "movies": movies, "users": users, "ratings": ratings, "preferences": 0,
    }  # fmt: skip
    assert summary.seconds > 0


def test_ml100k_titles_genres_and_ratings(database, make_release):
    import_movielens(database, make_release("ml-100k"))
    assert movie(database, "ml-100k", 1) == (
        "Toy Story", 1995, ["Animation", "Children", "Comedy"], None, None,
    )  # fmt: skip
    assert movie(database, "ml-100k", 3)[:3] == ("Café au lait", 1993, ["Comedy", "Romance"])
    assert movie(database, "ml-100k", 267)[:3] == ("unknown", None, [])  # flagged "unknown" only
    assert rating(database, "ml-100k", 1, 1) == (
        "ml-100k-1", 5.0, datetime.fromtimestamp(874965758, UTC),
    )  # fmt: skip


def test_ml1m_maps_childrens_and_reads_latin1(database, make_release):
    import_movielens(database, make_release("ml-1m"))
    assert movie(database, "ml-1m", 2)[:3] == (
        "Jumanji", 1995, ["Adventure", "Children", "Fantasy"],
    )  # fmt: skip
    assert movie(database, "ml-1m", 3)[:2] == ("Café Society", 1995)
    assert rating(database, "ml-1m", 6040, 1)[:2] == ("ml-1m-6040", 1.0)


def test_csv_release_quotes_ranges_no_genres_and_links(database, make_release):
    import_movielens(database, make_release("ml-latest-small"))
    assert movie(database, "ml-latest-small", 1) == (
        "Toy Story", 1995, ["Adventure", "Animation", "Children", "Comedy", "Fantasy"],
        "tt0114709", 862,
    )  # fmt: skip
    assert movie(database, "ml-latest-small", 11) == (
        "American President, The", 1995, ["Comedy", "Drama", "Romance"], "tt0112346", 9087,
    )  # fmt: skip
    assert movie(database, "ml-latest-small", 171749) == (
        "Death Note: Desu nôto", 2006, [], "tt0877057", None,
    )  # fmt: skip
    assert movie(database, "ml-latest-small", 40697) == (
        "Babylon 5", None, ["Sci-Fi", "IMAX"], None, None,
    )  # fmt: skip
    assert movie(database, "ml-latest-small", 27008)[:2] == (
        "From Dusk Till Dawn 2: Texas Blood Money", 1999,
    )  # fmt: skip
    assert rating(database, "ml-latest-small", 1, 11)[1] == 0.5
    assert rating(database, "ml-latest-small", 7, 11)[1] == 4.5


def test_reimport_changes_nothing_and_sources_stay_apart(database, make_release):
    path = make_release("ml-latest-small")
    import_movielens(database, path)
    query = text(
        "SELECT m.id, m.title, u.id, r.rating, r.rated_at FROM ratings r "
        "JOIN movies m ON m.id = r.movie_id JOIN users u ON u.id = r.user_id ORDER BY 1, 3"
    )
    with database.session(readonly=True) as s:
        before = s.execute(query).all()
    again = import_movielens(database, path)
    with database.session(readonly=True) as s:
        assert s.execute(query).all() == before
    assert again.ratings == len(before) == table_counts(database)["ratings"]
    import_movielens(database, make_release("ml-1m"))
    assert table_counts(database)["movies"] == EXPECTED["ml-latest-small"][0] + EXPECTED["ml-1m"][0]


def test_import_is_one_bulk_change_set_not_row_history(database, make_release):
    import_movielens(database, make_release("ml-100k"))
    with database.session(readonly=True) as s:
        sets = s.execute(text("SELECT kind, details ->> 'source' FROM change_sets")).all()
        row_changes = s.scalar(text("SELECT count(*) FROM change_history WHERE op <> 'BULK'"))
    assert sets == [("bulk", "ml-100k")]
    assert row_changes == 0


def test_search_indexes_and_statistics_are_fresh_after_import(database, make_release):
    import_movielens(database, make_release("ml-100k"))
    with database.session(readonly=True) as s:
        found = s.scalars(
            text("SELECT title FROM movies WHERE title_tsv @@ plainto_tsquery('simple', 'story')")
        ).all()
        # movies is partitioned: VACUUM works on (and records) its partitions.
        vacuumed = s.scalar(
            text(
                "SELECT bool_and(last_vacuum IS NOT NULL) FROM pg_stat_user_tables WHERE relid IN "
                "(SELECT relid FROM pg_partition_tree('movies') WHERE isleaf)"
            )
        )
    assert found == ["Toy Story"]
    assert vacuumed


def test_progress_reports_bytes_up_to_the_total(database, make_release):
    path = make_release("ml-latest-small")
    calls = []
    import_movielens(database, path, progress=lambda done, total: calls.append((done, total)))
    total = sum(len(ML_LATEST[name]) for name in ("movies.csv", "links.csv", "ratings.csv"))
    assert calls[-1] == (total, total)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def _lines(content: bytes, line: int, new: bytes) -> bytes:
    """``content`` with line number ``line`` (1-based) replaced by ``new``."""
    lines = content.splitlines(keepends=True)
    lines[line - 1] = new + b"\n"
    return b"".join(lines)


def case(name, file, content, message, id):
    return pytest.param(name, file, content, message, id=id)


U_DATA, U_ITEM = ML100K["u.data"], ML100K["u.item"]
MOVIES_CSV, RATINGS_CSV = ML_LATEST["movies.csv"], ML_LATEST["ratings.csv"]
MALFORMED = [
    case("ml-100k", "u.data", _lines(U_DATA, 3, b"2\t1\t4"),
         "u.data line 3: expected 4 tab-separated fields user item rating timestamp, got 3",
         id="field-count"),
    case("ml-100k", "u.data", _lines(U_DATA, 2, b"1\t2\t5\tyesterday"),
         "u.data line 2: timestamp 'yesterday' is not whole seconds since 1970",
         id="timestamp"),
    case("ml-100k", "u.data", _lines(U_DATA, 4, b"x\t3\t1\t876893119"),
         "u.data line 4: user id 'x' is not a positive whole number", id="user-id"),
    case("ml-100k", "u.item", U_ITEM.replace(b"|1|0|0\n", b"|2|0|0\n", 1),
         "u.item line 2: genre flags must be 0 or 1, got '2'", id="genre-flag"),
    case("ml-1m", "ratings.dat", b"1::1::6::978300760\n",
         "ratings.dat line 1: rating '6' is not a half star from 0.5 to 5", id="rating-range"),
    case("ml-1m", "movies.dat", b"1::Heat (1995)\n",
         "movies.dat line 1: expected 3 ::-separated fields MovieID::Title::Genres, got 2",
         id="movies-field-count"),
    case("ml-latest-small", "ratings.csv", _lines(RATINGS_CSV, 3, b"1,11,4.3,964981247"),
         "ratings.csv line 3: rating '4.3' is not a half star from 0.5 to 5", id="half-star"),
    case("ml-latest-small", "ratings.csv", _lines(RATINGS_CSV, 4, b"2,999,3.0,1445714994"),
         "ratings.csv line 4: movie id 999 is not in movies.csv", id="unknown-movie"),
    case("ml-latest-small", "ratings.csv", _lines(RATINGS_CSV, 1, b"user,movie,rating,ts"),
         "ratings.csv line 1: expected the header userId,movieId,rating,timestamp, got 'user,",
         id="header"),
    case("ml-latest-small", "movies.csv", _lines(MOVIES_CSV, 3, b'11,"Caf\xe9",Drama'),
         r"movies.csv line 3: not valid UTF-8 \(byte 0xe9 at column 8\)", id="encoding"),
    case("ml-latest-small", "movies.csv", _lines(MOVIES_CSV, 2, b'1,"Toy Story,Comedy'),
         "movies.csv line 2: not valid CSV .*runs on to line", id="unclosed-quote"),
    case("ml-latest-small", "movies.csv", _lines(MOVIES_CSV, 5, b"40697,Babylon 5,Cartoon"),
         "movies.csv line 5: unknown genre 'Cartoon'", id="genre-name"),
    case("ml-latest-small", "movies.csv", _lines(MOVIES_CSV, 4, b"1,Toy Story 2 (1999),Comedy"),
         "movies.csv line 4: movie id 1 already appeared on line 2", id="duplicate-movie"),
    case("ml-latest-small", "links.csv", _lines(ML_LATEST["links.csv"], 2, b"99,0114709,862"),
         "links.csv line 2: movie id 99 is not in movies.csv", id="link-to-nothing"),
    case("ml-latest-small", "ratings.csv", RATINGS_CSV + b"1,1,3.0,964982703\n",
         "ratings.csv: some user rates the same movie on two lines", id="duplicate-rating"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "file", "content", "message"), MALFORMED)
def test_malformed_file_loads_nothing(database, make_release, name, file, content, message):
    path = make_release(name, replace={file: content})
    with pytest.raises(BadInput, match=message):
        import_movielens(database, path)
    assert set(table_counts(database).values()) == {0}


def test_error_after_rows_were_copied_leaves_earlier_data_alone(
    database, make_release, monkeypatch
):
    import_movielens(database, make_release("ml-1m"))
    before = table_counts(database)
    monkeypatch.setattr(parse, "_CHUNK_ROWS", 2)  # rows reach COPY before the bad line
    bad = ML_LATEST["ratings.csv"] + b"7,40697,9.0,1445715210\n"
    path = make_release("ml-latest-small", replace={"ratings.csv": bad})
    with pytest.raises(BadInput, match="ratings.csv line 9: rating '9.0'"):
        import_movielens(database, path)
    assert table_counts(database) == before


def test_real_ml100k(database, movielens_dir):
    path = movielens_dir / "ml-100k"
    if not path.is_dir():
        pytest.skip(f"optional MovieLens release not found at {path}")
    summary = import_movielens(database, path)
    assert (summary.ratings, summary.users, summary.movies) == (100000, 943, 1682)
    assert table_counts(database) == {
        "movies": 1682, "users": 943, "ratings": 100000, "preferences": 0,
    }  # fmt: skip
    assert movie(database, "ml-100k", 1)[:2] == ("Toy Story", 1995)
