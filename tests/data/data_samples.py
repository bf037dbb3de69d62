"""Tiny MovieLens releases in each file format, and a row counter, shared by the data tests.

The contents are made up in the MovieLens layouts; no MovieLens data is copied into the
repository. (A module of its own, not conftest.py, so tests can import it by a unique name.)
"""

from __future__ import annotations

from sqlalchemy import text

ML100K = {
    "u.item": (
        "1|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Toy%20Story%20(1995)"
        "|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
        "2|GoldenEye (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?GoldenEye%20(1995)"
        "|0|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0|1|0|0\n"
        "3|Café au lait (1993)|01-Jan-1993||"
        "|0|0|0|0|0|1|0|0|0|0|0|0|0|0|1|0|0|0|0\n"
        "267|unknown||||1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
    ).encode("latin-1"),
    "u.data": (
        b"1\t1\t5\t874965758\n"
        b"1\t2\t3\t876893171\n"
        b"2\t1\t4\t878542960\n"
        b"2\t3\t1\t876893119\n"
        b"3\t267\t2\t889751712\n"
        b"3\t2\t4\t875071561\n"
    ),
    "u.genre": b"unknown|0\nAction|1\n",  # present in real releases; the importer ignores it
}

ML1M = {
    "movies.dat": (
        "1::Toy Story (1995)::Animation|Children's|Comedy\n"
        "2::Jumanji (1995)::Adventure|Children's|Fantasy\n"
        "3::Café Society (1995)::Drama\n"
    ).encode("latin-1"),
    "ratings.dat": (
        b"1::1::5::978300760\n1::3::3::978302109\n2::2::4::978301968\n6040::1::1::956703977\n"
    ),
}

ML_LATEST = {
    "movies.csv": (
        "movieId,title,genres\n"
        "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n"
        '11,"American President, The (1995)",Comedy|Drama|Romance\n'
        "171749,Death Note: Desu nôto (2006–2007),(no genres listed)\n"
        "40697,Babylon 5,Sci-Fi|IMAX\n"
        "27008,From Dusk Till Dawn 2: Texas Blood Money (1999) ,Comedy|Crime|Horror\n"
    ).encode(),
    "links.csv": (b"movieId,imdbId,tmdbId\n1,0114709,862\n11,0112346,9087\n171749,0877057,\n"),
    "ratings.csv": (
        b"userId,movieId,rating,timestamp\n"
        b"1,1,4.0,964982703\n"
        b"1,11,0.5,964981247\n"
        b"2,171749,3.5,1445714994\n"
        b"2,40697,5.0,1445714996\n"
        b"7,27008,2.5,1445715207\n"
        b"7,1,1.0,1445715208\n"
        b"7,11,4.5,1445715209\n"
    ),
}

RELEASES = {"ml-100k": ML100K, "ml-1m": ML1M, "ml-latest-small": ML_LATEST}
EXPECTED = {  # (movies, users, ratings) in each tiny release
    "ml-100k": (4, 3, 6),
    "ml-1m": (3, 3, 4),
    "ml-latest-small": (5, 3, 7),
}

COUNT_ROWS = text(
    "SELECT (SELECT count(*) FROM movies), (SELECT count(*) FROM users), "
    "(SELECT count(*) FROM ratings), (SELECT count(*) FROM preferences)"
)


def table_counts(database) -> dict[str, int]:
    """Rows in each table a data load writes."""
    with database.session(readonly=True) as s:
        row = s.execute(COUNT_ROWS).one()
    return dict(zip(("movies", "users", "ratings", "preferences"), row, strict=True))
