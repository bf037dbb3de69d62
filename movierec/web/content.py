"""Content-based fit: how well a movie's own metadata (genres, decade, title words) matches
what a user's ratings say they like. For movies the ranking model cannot score yet: one
added after the model was trained has no factors, and one rated by a handful has factors
that mean little, so neither would be recommended until enough people find it anyway.

A user's :class:`Taste` is read from their ratings, each weighed by how far it lies above
or below their own mean (a 2 from someone who gives 2s says less than a 2 from someone who
gives 4s): per genre and per decade the mean of those weights, per title word the sum of
the positive ones (so "Toy Story 3" finds the people who loved "Toy Story"). Preferred
genres (the account page, the first visit) count as one star above the mean. Pure
functions: :mod:`movierec.web.new_movies` reads the rows.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

PREFERRED = 1.0  # a preferred genre weighs as a rating one star above the user's mean
DECADE_WEIGHT = 0.5
WORD_WEIGHT = 0.5
MAX_WORDS = 2.0  # title words can lift a movie this far, however many match
_WORD = re.compile(r"[^\W_]{3,}")
# Words that say nothing about a movie (the MovieLens titles' articles, in several languages).
STOPWORDS = frozenset(
    "the and of a an in on at to for with from les la le el los das der die und"
    " you your my me we part".split()
)


@dataclass(frozen=True)
class Taste:
    genres: dict[str, float] = field(default_factory=dict)
    decades: dict[int, float] = field(default_factory=dict)
    words: dict[str, float] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.genres or self.decades or self.words)


def title_words(title: str) -> set[str]:
    """The words of a title that may say what it is (no year, no article, 3+ characters)."""
    bare = re.sub(r"\(\d{4}\)\s*$", "", title).lower()
    return {w for w in _WORD.findall(bare) if w not in STOPWORDS and not w.isdigit()}


def taste_of(
    rated: Iterable[tuple[Sequence[str], int | None, str, float]],
    preferred: Sequence[str] = (),
) -> Taste:
    """The taste of a user from their ``(genres, year, title, stars)`` ratings and their
    preferred genres."""
    rows = list(rated)
    mean = sum(r[3] for r in rows) / len(rows) if rows else 3.0
    by_genre: dict[str, list[float]] = defaultdict(list)
    by_decade: dict[int, list[float]] = defaultdict(list)
    words: dict[str, float] = defaultdict(float)
    for genres, year, title, stars in rows:
        weight = stars - mean if len(rows) > 1 else stars - 3.0
        for g in genres:
            by_genre[g].append(weight)
        if year:
            by_decade[year // 10 * 10].append(weight)
        if weight > 0:
            for w in title_words(title):
                words[w] += weight
    for g in preferred:
        by_genre[g].append(PREFERRED)
    return Taste(
        {g: sum(v) / len(v) for g, v in by_genre.items()},
        {d: sum(v) / len(v) for d, v in by_decade.items()},
        dict(words),
    )


def fit(taste: Taste, genres: Sequence[str], year: int | None, title: str) -> float:
    """How well a movie fits ``taste``: the mean affinity of its genres, plus half its
    decade's, plus half its title words' (at most :data:`MAX_WORDS`). Above 0: the user's kind
    of movie; 0 when nothing is known either way."""
    score = sum(taste.genres.get(g, 0.0) for g in genres) / len(genres) if genres else 0.0
    if year:
        score += DECADE_WEIGHT * taste.decades.get(year // 10 * 10, 0.0)
    words = sum(taste.words.get(w, 0.0) for w in title_words(title))
    return score + WORD_WEIGHT * min(words, MAX_WORDS)
