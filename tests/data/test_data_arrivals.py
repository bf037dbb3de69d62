"""A data set's first load is the catalogue, not new movies; the movies a later release adds
are new arrivals (migration 0013, the site's "New this week", issue 21 item 3)."""

from data_samples import ML100K
from sqlalchemy import select
from typer.testing import CliRunner

from movierec.cli.main import app
from movierec.db import Movie
from movierec.db.schema import MovieArrival

NEW_MOVIE = "4|Heat (1995)|01-Jan-1995|||0|1|0|0|0|0|1|0|0|0|0|0|0|0|0|0|1|0|0\n"


def test_only_a_later_releases_new_movies_arrive(db_url, database, make_release):
    env = {"MOVIEREC_DATABASE_URL": db_url}
    first = CliRunner().invoke(
        app, ["data", "import", "movielens", str(make_release("ml-100k"))], env=env
    )
    assert first.exit_code == 0, first.output
    with database.session() as s:
        assert s.scalars(select(MovieArrival.movie_id)).all() == []

    newer = make_release(
        "ml-100k", replace={"u.item": ML100K["u.item"] + NEW_MOVIE.encode()}, directory="newer"
    )
    again = CliRunner().invoke(app, ["data", "import", "movielens", str(newer)], env=env)
    assert again.exit_code == 0, again.output
    with database.session() as s:
        arrived = s.scalars(
            select(Movie.title).join(MovieArrival, MovieArrival.movie_id == Movie.id)
        ).all()
    assert arrived == ["Heat"]
