"""Synthetic movie titles: "The Silent River", "Chasing the Moon", "Anna's Garden"."""

from __future__ import annotations

from string import Formatter

import numpy as np

from movierec.data.synthetic.words import ADJECTIVES, GERUNDS, NAMES, NOUNS, PLACES

# (pattern, relative frequency); each placeholder draws from its word list.
_PATTERNS = (
    ("The {adj} {noun}", 3),
    ("{adj} {noun}", 1),
    ("The {noun} of {place}", 2),
    ("{gerund} the {noun}", 2),
    ("{name}'s {noun}", 1),
    ("{noun} and {noun2}", 1),
    ("One {noun} for {name}", 1),
    ("The {adj} {noun} of {place}", 3),
    ("{name}'s {adj} {noun}", 2),
    ("{gerund} the {adj} {noun}", 2),
    ("The {noun} of the {adj} {noun2}", 2),
)
_SUBTITLE_SHARE = 0.15  # "The Last Train: Chasing the Moon", widens the space of titles
_WORDS: dict[str, tuple[str, ...]] = {
    "adj": ADJECTIVES,
    "noun": NOUNS,
    "noun2": NOUNS,
    "place": PLACES,
    "name": NAMES,
    "gerund": GERUNDS,
}
_WORD_ARRAYS = {key: np.array(words, dtype=object) for key, words in _WORDS.items()}


def compose_titles(rng: np.random.Generator, count: int) -> list[str]:
    """``count`` distinct titles; a title drawn twice becomes a sequel ("... 2")."""
    weights = np.array([w for _, w in _PATTERNS], dtype=float)
    main = _fill_patterns(rng, rng.choice(len(_PATTERNS), size=count, p=weights / weights.sum()))
    subtitled = np.flatnonzero(rng.random(count) < _SUBTITLE_SHARE)
    subtitles = _fill_patterns(rng, rng.integers(0, len(_PATTERNS), size=subtitled.size))
    for row, subtitle in zip(subtitled.tolist(), subtitles, strict=True):
        main[row] = f"{main[row]}: {subtitle}"
    titles: list[str] = []
    seen: dict[str, int] = {}
    for title in main:
        copies = seen.get(title, 0) + 1
        seen[title] = copies
        titles.append(title if copies == 1 else f"{title} {copies}")
    return titles


def _fill_patterns(rng: np.random.Generator, pattern_of: np.ndarray) -> list[str]:
    """One title per entry of ``pattern_of`` (an index into the patterns), words at random."""
    out = np.empty(pattern_of.size, dtype=object)
    for index, (pattern, _) in enumerate(_PATTERNS):
        rows = np.flatnonzero(pattern_of == index)
        keys = [field for _, field, _, _ in Formatter().parse(pattern) if field]
        positional = pattern
        for key in keys:
            positional = positional.replace("{" + key + "}", "{}", 1)
        columns = [
            _WORD_ARRAYS[key][rng.integers(0, len(_WORDS[key]), size=rows.size)] for key in keys
        ]
        out[rows] = [positional.format(*words) for words in zip(*columns, strict=True)]
    return out.tolist()
