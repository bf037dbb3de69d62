"""Which movies a new user is asked to rate first: the informative ones.

A first visit learns most from movies that many people have seen (the user is likely to know
them) and that people disagree about (the user's rating says something about them). Rashid
et al., "Getting to Know You: Learning New User Preferences in Recommender Systems" (IUI
2002), the study behind MovieLens's sign-up, found log(popularity) × entropy of a movie's
ratings among the best strategies; here the spread of the ratings (their standard
deviation, computed in the same aggregate as the count) stands in for the entropy, and the
square root of the count for its log. Their argument against the top sellers alone
(everybody likes them, so a rating of one says little) does not show in our simulation: on
ml-100k they did as well (NDCG@10 0.387 against 0.372 after 12 ratings, 200 users, within the
spread of such a sample), both far above 12 random ratings of the user's (0.294);
BENCHMARKS.md, "Onboarding". The spread is kept because it is the study's finding with real
people, whom a simulation built from what they rated cannot stand in for: it can only ask
about movies the user did rate, which favours the popular ones.

The candidates are the most-rated movies (:func:`candidate_stats`, one aggregate over the
ratings); :func:`informative_order` ranks them for the genres the user picked, taking turns
between those genres so that one big genre does not fill the page. The bench
(``bench/bench_onboarding.py``) measures the choice against random ratings of the user's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from movierec.db.schema import Movie, Rating

CANDIDATES = 1000  # the most-rated movies the choice is made among
MIN_RATINGS = 5  # a spread of fewer ratings is noise


@dataclass(frozen=True)
class Candidate:
    movie_id: int
    genres: tuple[str, ...]
    ratings: int
    spread: float  # standard deviation of the movie's ratings

    @property
    def informativeness(self) -> float:
        """sqrt(ratings) × spread: known to many, judged differently by them. (The square
        root, not Rashid et al.'s log: with the log, divisive movies few have seen came first,
        simulated new users skipped more of them and their lists were worse; BENCHMARKS.md,
        "Onboarding".)"""
        return math.sqrt(self.ratings) * self.spread


def candidate_stats(session: Session, limit: int = CANDIDATES) -> list[Candidate]:
    """The ``limit`` most-rated movies with their rating counts and spreads, most rated
    first. Raises :class:`DatabaseUnavailable` as any read does."""
    stats = (
        select(
            Rating.movie_id,
            func.count().label("n"),
            func.coalesce(func.stddev_pop(Rating.rating), 0).label("spread"),
        )
        .group_by(Rating.movie_id)
        .having(func.count() >= MIN_RATINGS)
        .order_by(func.count().desc(), Rating.movie_id)
        .limit(limit)
        .subquery()
    )
    rows = select(stats.c.movie_id, Movie.genres, stats.c.n, stats.c.spread).join(
        Movie, Movie.id == stats.c.movie_id
    )
    found = [
        Candidate(int(m), tuple(g or ()), int(n), float(s)) for m, g, n, s in session.execute(rows)
    ]
    return sorted(found, key=lambda c: (-c.ratings, c.movie_id))


def informative_order(
    candidates: Iterable[Candidate], genres: Sequence[str] = (), exclude: Iterable[int] = ()
) -> list[int]:
    """Movie ids to ask about, most informative first: with ``genres``, only movies of one of
    them, the genres taking turns (each genre's next best movie not yet listed); without,
    all candidates. ``exclude``: movies not to ask about (rated already)."""
    skip = set(exclude)
    ranked = sorted(
        (c for c in candidates if c.movie_id not in skip),
        key=lambda c: (-c.informativeness, c.movie_id),
    )
    if not genres:
        return [c.movie_id for c in ranked]
    queues = [[c.movie_id for c in ranked if g in c.genres] for g in dict.fromkeys(genres)]
    order: list[int] = []
    listed: set[int] = set()
    positions = [0] * len(queues)
    while any(p < len(q) for p, q in zip(positions, queues, strict=True)):
        for i, queue in enumerate(queues):
            while positions[i] < len(queue) and queue[positions[i]] in listed:
                positions[i] += 1
            if positions[i] < len(queue):
                order.append(queue[positions[i]])
                listed.add(queue[positions[i]])
                positions[i] += 1
    return order
