"""Property: a MovieLens release with one random malformed line imports nothing and says where.

Hypothesis breaks a valid line of a tiny release (any format, any file) the ways real files
break: a field swapped for junk (Unicode digits, signs, huge numbers, NUL and other control
bytes, stray separators, bytes that are not the file's encoding), a field too few or too many,
or a line of random bytes; and inserts it anywhere. Then the import either succeeds (the line
happened to be a valid one) or raises BadInput naming the file and, for a line-level problem,
that line; and then the database is exactly as before: the earlier import intact, no row and
no change set of this one.
"""

from __future__ import annotations

import re

from data_samples import RELEASES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from movierec.data import import_movielens
from movierec.errors import BadInput

SEPARATORS = {".item": b"|", ".data": b"\t", ".dat": b"::", ".csv": b","}
HEADERS = {"movies.csv", "links.csv", "ratings.csv"}  # their line 1 is a header
JUNK = st.one_of(
    st.sampled_from(
        [
            b"",
            b"-1",
            b"0",
            b"+5",
            b" 7",
            b"1e3",
            b"4.3",
            b"NaN",
            b"inf",
            b"9" * 25,
            "²".encode(),
            "¹⁹⁹⁰".encode(),
            "５".encode(),
            "١".encode(),
            b"\x00",
            b"a\x00b",
            b"\xff\xfe",
            b"\xe9",
            b'"',
            b'"unclosed',
            b"x|y",
            b"1::2",
            b"3\t4",
            b"1,2",
            b"(1995)",
        ]
    ),  # fmt: skip
    st.binary(max_size=12),
    st.text(max_size=12).map(str.encode),
)
SNAPSHOT = text(
    "SELECT (SELECT count(*) FROM movies), (SELECT count(*) FROM users), "
    "(SELECT count(*) FROM ratings), (SELECT count(*) FROM change_sets), "
    "(SELECT coalesce(sum(hashtext(title || coalesce(year::text, ''))), 0) FROM movies)"
)


@st.composite
def broken_releases(draw):
    """``(release name, files, broken file name, inserted line number)``."""
    name = draw(st.sampled_from(sorted(RELEASES)))
    files = dict(RELEASES[name])
    file = draw(st.sampled_from(sorted(f for f in files if f != "u.genre")))
    lines = files[file].splitlines(keepends=True)
    first = 1 if file in HEADERS else 0
    base = draw(st.sampled_from(lines[first:])).rstrip(b"\r\n")
    separator = next(sep for ext, sep in SEPARATORS.items() if file.endswith(ext))
    fields = base.split(separator)
    how = draw(st.sampled_from(["swap", "drop", "add", "random"]))
    if how == "swap":
        fields[draw(st.integers(0, len(fields) - 1))] = draw(JUNK)
    elif how == "drop":
        del fields[draw(st.integers(0, len(fields) - 1))]
    elif how == "add":
        fields.insert(draw(st.integers(0, len(fields))), draw(JUNK))
    line = draw(st.binary(min_size=1, max_size=40)) if how == "random" else separator.join(fields)
    line = line.replace(b"\n", b" ").replace(b"\r", b" ")  # one line, whatever it holds
    position = draw(st.integers(first, len(lines)))
    lines.insert(position, line + b"\n")
    files[file] = b"".join(lines)
    return name, files, file, position + 1


def _snapshot(database) -> tuple:
    with database.session(readonly=True) as s:
        return tuple(s.execute(SNAPSHOT).one())


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(broken=broken_releases())
def test_a_malformed_line_imports_nothing_and_says_where(database, make_release, broken):
    if _snapshot(database)[0] == 0:  # once per database: data an import must not disturb
        import_movielens(database, make_release("ml-1m"), source="ml-earlier")
    name, files, file, number = broken
    before = _snapshot(database)
    path = make_release(name, replace=files, directory=f"{name}-broken")
    try:
        import_movielens(database, path)
    except BadInput as exc:
        message = str(exc)
        assert message.startswith(f"{file} line ") or message.startswith(f"{file}:"), message
        said = re.match(rf"{re.escape(file)} line (\d+):", message)
        if said and int(said[1]) != number:
            # Another line is named only when it clashes with the inserted one.
            assert f"line {number}" in message or "already appeared" in message, message
        assert _snapshot(database) == before
