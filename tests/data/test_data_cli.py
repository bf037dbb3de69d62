"""``movierec data generate`` and ``movierec data import movielens`` through typer's runner."""

from data_samples import table_counts
from typer.testing import CliRunner

from movierec.cli.main import app

runner = CliRunner()


def invoke(db_url, *args):
    return runner.invoke(app, ["data", *args], env={"MOVIEREC_DATABASE_URL": db_url})


def test_generate_prints_a_summary(db_url, database):
    result = invoke(db_url, "generate", "--movies", "50", "--users", "20", "--ratings", "300")
    assert result.exit_code == 0, result.output
    assert "generated 50 movies, 20 users, 300 ratings" in result.stdout
    assert table_counts(database)["ratings"] == 300


def test_generate_refuses_impossible_counts_in_one_line(db_url):
    result = invoke(db_url, "generate", "--movies", "5", "--users", "2", "--ratings", "11")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "error: synthetic catalogue: 11 ratings cannot be distinct with 5 movies and 2 users "
        "(at most 10)"
    )


def test_import_prints_a_summary(db_url, database, make_release):
    result = invoke(db_url, "import", "movielens", str(make_release("ml-100k")))
    assert result.exit_code == 0, result.output
    assert "imported ml-100k: 4 movies, 3 users, 6 ratings" in result.stdout
    assert table_counts(database)["ratings"] == 6


def test_malformed_import_exits_1_with_one_line(db_url, database, make_release):
    path = make_release("ml-1m", replace={"ratings.dat": b"1::1::5::978300760\n1::2\n"})
    result = invoke(db_url, "import", "movielens", str(path))
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "error: ratings.dat line 2: expected 4 ::-separated fields "
        "UserID::MovieID::Rating::Timestamp, got 2"
    )
    assert set(table_counts(database).values()) == {0}


def test_import_of_a_missing_directory_exits_1(db_url, tmp_path):
    result = invoke(db_url, "import", "movielens", str(tmp_path / "nowhere"))
    assert result.exit_code == 1
    assert "nowhere: not a directory" in result.stderr
