"""Recognising a MovieLens release on disk, and parsing its titles (no database)."""

import pytest

from movierec.data import detect_release
from movierec.data.movielens.titles import parse_genre_list, split_title_year
from movierec.errors import BadInput


@pytest.mark.parametrize(
    ("name", "fmt", "links"),
    [
        ("ml-100k", "ml-100k", False),
        ("ml-1m", "ml-1m", False),
        ("ml-latest-small", "ml-latest", True),
    ],
)
def test_each_format_is_recognised_and_tagged_by_its_directory(make_release, name, fmt, links):
    release = detect_release(make_release(name))
    assert (release.format, release.source) == (fmt, name)
    assert (release.links is not None) == links


def test_a_directory_without_a_release_name_is_tagged_by_format(make_release):
    assert detect_release(make_release("ml-latest-small", directory="downloads")).source == (
        "ml-latest"
    )
    assert detect_release(make_release("ml-1m", directory="ML-1M")).source == "ml-1m"


def test_links_are_optional(make_release):
    assert detect_release(make_release("ml-latest-small", drop=("links.csv",))).links is None


def test_explicit_source_tag_is_checked(make_release):
    path = make_release("ml-100k")
    assert detect_release(path, source="ml-100k-b").source == "ml-100k-b"
    with pytest.raises(BadInput, match="source tag 'my data'"):
        detect_release(path, source="my data")


def test_missing_directory_names_what_was_looked_for(tmp_path):
    with pytest.raises(BadInput, match=r"not a directory .*u\.item \+ u\.data.*ratings\.csv"):
        detect_release(tmp_path / "nowhere")


def test_unknown_layout_names_what_was_looked_for(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(BadInput, match=r"no MovieLens files found \(looked for u\.item"):
        detect_release(tmp_path)


def test_half_a_pair_is_reported(make_release):
    with pytest.raises(BadInput, match="found u.data but not u.item"):
        detect_release(make_release("ml-100k", drop=("u.item",)))


@pytest.mark.parametrize(
    ("raw", "title", "year"),
    [
        ("Toy Story (1995)", "Toy Story", 1995),
        ("Scream of Stone (Schrei aus Stein) (1991)", "Scream of Stone (Schrei aus Stein)", 1991),
        ("Death Note: Desu nôto (2006–2007)", "Death Note: Desu nôto", 2006),
        ("From Dusk Till Dawn 2 (1999) ", "From Dusk Till Dawn 2", 1999),
        ("Babylon 5", "Babylon 5", None),
        ("1917 (2019)", "1917", 2019),
        ("(1995)", "(1995)", None),
    ],
)  # fmt: skip
def test_title_and_year_are_split(raw, title, year):
    assert split_title_year(raw) == (title, year)


def test_genres_are_normalised():
    assert parse_genre_list("Animation|Children's|Comedy") == (
        ["Animation", "Children", "Comedy"],
        None,
    )
    assert parse_genre_list("(no genres listed)") == ([], None)
    assert parse_genre_list("Drama|Cartoon")[1] == "Cartoon"
