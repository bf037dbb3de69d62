"""A synthetic catalogue in memory: movies, users with tastes, and ratings that follow them.

Everything is drawn from one seeded NumPy generator, so a seed always gives the same
catalogue. The model, chosen so that a recommender has something real to learn:

* movie *i*: a year (1920-2025, skewed recent), 1-3 genres, a Zipf popularity
  ``pop_i ∝ 1 / rank_i``, a quality bias ``b_i`` and latent factors ``q_i``;
* user *u*: genre affinities ``a_u`` (a few loved genres, often one disliked), a bias
  ``b_u``, latent factors ``p_u`` and an activity level (how many movies they rate);
* movie *i* belongs to one of ``NICHES`` niches (taste communities: a scene, a school, a
  kind of film), and user *u* is a fan of ``FAN_NICHES`` of them;
* *u* picks a movie to consider by popularity, or (``NICHE_SHARE`` of the time) by popularity
  within one of their niches, and rates it with probability ``exp(λ · taste_ui)`` (scaled to
  at most 1), where ``taste_ui`` is the mean of ``a_u`` over *i*'s genres, giving it
  ``clip(round_half(μ + b_u + b_i + taste_ui + p_u·q_i + noise), 0.5, 5)``.

Without niches, what a user watches is popularity times 19 genre affinities: on such data
the most popular movies beat every model's hold-out NDCG@10 once the catalogue is large
(5,000 movies, 5,000 users, 100,000 ratings: popularity 0.056, ALS 0.019; 50,000 movies:
0.083 and 0.008). People's tastes are finer than genres. Niches of 100 movies, followed half
the time, gave 0.031 and 0.048 at 5,000 movies but 0.034 and 0.011 at 100,000 (1,000 niches:
more than ALS's 64 factors hold); 50 niches followed 80 % of the time give 0.017 and 0.065
there (``bench/bench_scale.py --phases taste`` prints both figures at any size). These
figures are of ALS's first defaults (reg 0.05, confidence 2); its tuned ones rank higher
here too (``bench/bench_handover.py``: 0.074 against 0.065 at 100,000 movies).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from movierec.data.synthetic.titles import compose_titles
from movierec.db.schema import GENRES
from movierec.errors import BadInput

MEAN_RATING = 2.9  # what is observed ends up near 3.5: people watch what they like
TASTE_PULL = 1.2  # λ: how strongly taste, beside popularity, decides what a user watches
LATENT_FACTORS = 8
RATING_NOISE = 0.7
FIRST_YEAR, LAST_YEAR = 1920, 2025
MAX_GENRES = 3
NICHES = 50
FAN_NICHES = 2  # niches each user follows
NICHE_SHARE = 0.8  # of the movies a user considers, those drawn from their niches
STATED_PREFERENCE_SHARE = 0.3  # users who filled in their favourite genres
DAY = 86_400
FIRST_RATING_EPOCH = 852_076_800  # 1997-01-01, when MovieLens started collecting ratings
LAST_RATING_EPOCH = 1_767_139_200  # 2025-12-31
_CHUNK = 1 << 20
_SAMPLING_ROUNDS = 12

# Roughly how often each genre appears on MovieLens movies.
_GENRE_SHARE = {
    "Drama": 25, "Comedy": 18, "Thriller": 8, "Romance": 8, "Action": 7, "Crime": 5,
    "Horror": 5, "Adventure": 5, "Sci-Fi": 4, "Documentary": 3, "Mystery": 3, "Fantasy": 3,
    "Children": 2, "Animation": 2, "War": 2, "Musical": 1, "Western": 1, "Film-Noir": 0.5,
    "IMAX": 0.2,
}  # fmt: skip
_GENRE_WEIGHTS = np.array([_GENRE_SHARE[g] for g in GENRES]) / sum(_GENRE_SHARE.values())


@dataclass(frozen=True, eq=False)
class Catalogue:
    """Movies, users and ratings as arrays; movie and user numbers are 0-based indexes."""

    titles: list[str]
    years: np.ndarray  # (movies,) int16
    genres: np.ndarray  # (movies, 3) int8 index into GENRES, -1 where a movie has fewer
    popularity: np.ndarray  # (movies,) float64, sums to 1
    affinity: np.ndarray  # (users, len(GENRES)) float32: how much each user likes each genre
    preferences: dict[int, list[str]]  # user -> genres they said they like (some users)
    rating_user: np.ndarray  # (ratings,) int64
    rating_movie: np.ndarray  # (ratings,) int64
    half_stars: np.ndarray  # (ratings,) int16, 1..10 (0.5..5 stars)
    rated_epoch: np.ndarray  # (ratings,) int64, seconds since 1970

    @property
    def users(self) -> int:
        return len(self.affinity)

    def movie_genres(self, movie: int) -> list[str]:
        return [GENRES[g] for g in self.genres[movie] if g >= 0]


def sample_catalogue(movies: int, users: int, ratings: int, seed: int = 0) -> Catalogue:
    """Draw a catalogue with exactly ``ratings`` distinct (user, movie) pairs.

    Raises :class:`BadInput` when a count is not positive (``ratings`` may be 0) or
    ``ratings`` exceeds ``movies × users``.
    """
    _check_counts(movies, users, ratings)
    rng = np.random.default_rng(seed)
    titles = compose_titles(rng, movies)
    years = _years(rng, movies)
    genres = _movie_genres(rng, movies)
    popularity = _popularity(rng, movies)
    affinity = _affinities(rng, users)
    taste = _Taste(affinity, genres)
    niches = _Niches(rng, popularity, users)
    per_user = _ratings_per_user(rng, users, movies, ratings)
    rating_user, rating_movie = _choose_pairs(rng, per_user, popularity, taste, niches)
    half_stars = _rate(rng, rating_user, rating_movie, popularity, taste)
    rated_epoch = _rating_times(rng, rating_user, rating_movie, years, users)
    return Catalogue(
        titles=titles,
        years=years,
        genres=genres,
        popularity=popularity,
        affinity=affinity,
        preferences=_stated_preferences(rng, affinity),
        rating_user=rating_user,
        rating_movie=rating_movie,
        half_stars=half_stars,
        rated_epoch=rated_epoch,
    )


def _check_counts(movies: int, users: int, ratings: int) -> None:
    if movies < 1 or users < 1 or ratings < 0:
        raise BadInput(
            f"synthetic catalogue: need movies >= 1, users >= 1 and ratings >= 0, "
            f"got {movies}, {users}, {ratings}"
        )
    if ratings > movies * users:
        raise BadInput(
            f"synthetic catalogue: {ratings} ratings cannot be distinct with {movies} movies "
            f"and {users} users (at most {movies * users})"
        )


class _Taste:
    """``taste(u, i)``: the mean of user u's affinities over movie i's genres."""

    def __init__(self, affinity: np.ndarray, genres: np.ndarray):
        self.affinity = affinity
        present = genres >= 0
        self.genre = np.where(present, genres, 0).astype(np.intp)
        self.weight = (present / present.sum(axis=1, keepdims=True)).astype(np.float32)
        self.best = affinity.max(axis=1)  # nobody's taste for a movie exceeds this

    def __call__(self, users: np.ndarray, movies: np.ndarray) -> np.ndarray:
        total = np.zeros(users.size, dtype=np.float32)
        for slot in range(MAX_GENRES):  # one gather per genre slot keeps temporaries 1-D
            total += self.affinity[users, self.genre[movies, slot]] * self.weight[movies, slot]
        return total

    def of_user(self, user: int) -> np.ndarray:
        """Taste of one user for every movie."""
        return (self.affinity[user, self.genre] * self.weight).sum(axis=1)


class _Niches:
    """Movies drawn by popularity within one of a user's niches."""

    def __init__(self, rng: np.random.Generator, popularity: np.ndarray, users: int):
        count = min(NICHES, popularity.size)
        niche = rng.integers(0, count, size=popularity.size)
        self.order = np.argsort(niche, kind="stable")  # movies grouped by niche
        self.cumulative = np.cumsum(popularity[self.order])
        self.first = np.searchsorted(niche[self.order], np.arange(count), side="left")
        self.last = np.searchsorted(niche[self.order], np.arange(count), side="right") - 1
        before = np.concatenate([[0.0], self.cumulative])  # mass before position i
        self.start = before[self.first]
        self.mass = before[self.last + 1] - self.start
        followed = np.flatnonzero(self.last >= self.first)  # niches with a movie
        self.fans = followed[rng.integers(0, followed.size, size=(users, FAN_NICHES))]

    def draw(self, rng: np.random.Generator, users: np.ndarray) -> np.ndarray:
        """One movie for each of ``users``, from one of their niches, by popularity."""
        niche = self.fans[users, rng.integers(0, FAN_NICHES, size=users.size)]
        at = self.start[niche] + rng.random(users.size) * self.mass[niche]
        index = np.searchsorted(self.cumulative, at, side="right")
        return self.order[np.clip(index, self.first[niche], self.last[niche])]


def _years(rng: np.random.Generator, count: int) -> np.ndarray:
    years = LAST_YEAR - np.floor(rng.exponential(18.0, size=count)).astype(np.int64)
    too_old = years < FIRST_YEAR
    years[too_old] = rng.integers(FIRST_YEAR, LAST_YEAR + 1, size=int(too_old.sum()))
    return years.astype(np.int16)


def _movie_genres(rng: np.random.Generator, count: int) -> np.ndarray:
    """1-3 distinct genres per movie, common genres more often (Gumbel top-k sampling)."""
    how_many = rng.choice(np.arange(1, MAX_GENRES + 1), size=count, p=[0.45, 0.35, 0.20])
    keys = np.log(_GENRE_WEIGHTS) + rng.gumbel(size=(count, len(GENRES)))
    top = np.argsort(-keys, axis=1)[:, :MAX_GENRES].astype(np.int8)
    top[np.arange(MAX_GENRES) >= how_many[:, None]] = -1
    return top


def _popularity(rng: np.random.Generator, count: int) -> np.ndarray:
    """Zipf weights (exponent 1) over a random order of the movies."""
    rank = rng.permutation(count) + 1
    weights = 1.0 / rank
    return weights / weights.sum()


def _affinities(rng: np.random.Generator, count: int) -> np.ndarray:
    affinity = rng.normal(0.0, 0.25, size=(count, len(GENRES))).astype(np.float32)
    loved = rng.choice(np.arange(1, MAX_GENRES + 1), size=count, p=[0.4, 0.4, 0.2])
    keys = np.log(_GENRE_WEIGHTS) + rng.gumbel(size=(count, len(GENRES)))
    favourites = np.argsort(-keys, axis=1)[:, :MAX_GENRES]
    for slot in range(MAX_GENRES):
        rows = np.flatnonzero(loved > slot)
        affinity[rows, favourites[rows, slot]] += rng.uniform(0.8, 1.5, size=rows.size)
    rows = np.flatnonzero(rng.random(count) < 0.6)
    disliked = rng.integers(0, len(GENRES), size=rows.size)
    affinity[rows, disliked] -= rng.uniform(0.8, 1.5, size=rows.size)
    return affinity


def _ratings_per_user(rng: np.random.Generator, users: int, movies: int, total: int) -> np.ndarray:
    """Heavy-tailed counts, each at most ``movies``, summing to exactly ``total``."""
    base = min(total // users, 10, movies)
    counts = np.full(users, base, dtype=np.int64)
    activity = rng.lognormal(0.0, 1.0, size=users)
    remaining = total - base * users
    while remaining > 0:
        room = movies - counts
        weights = activity * (room > 0)
        share = np.minimum(np.floor(remaining * weights / weights.sum()).astype(np.int64), room)
        if share.sum() == 0:  # fewer left than open users: one more each for some of them
            open_users = np.flatnonzero(room > 0)
            p = weights[open_users] / weights[open_users].sum()
            lucky = rng.choice(open_users, size=min(remaining, open_users.size), replace=False, p=p)
            share[lucky] = 1
        counts += share
        remaining -= int(share.sum())
    return counts


def _choose_pairs(
    rng: np.random.Generator,
    per_user: np.ndarray,
    popularity: np.ndarray,
    taste: _Taste,
    niches: _Niches,
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (user, movie) pairs, ``per_user[u]`` for user u, drawn ∝ (pop, or pop within
    the user's niches) · exp(λ·taste).

    Rejection sampling: propose movies by popularity (``NICHE_SHARE`` of them from one of the
    user's niches), accept with exp(λ·(taste - best)),
    drop pairs already taken, repeat for users still short. The few users left after some
    rounds (those who rate most of a small catalogue) are sampled exactly, one by one.
    """
    movies = popularity.size
    need = per_user.copy()
    chosen: list[np.ndarray] = []  # keys user * movies + movie
    taken = np.zeros(0, dtype=np.int64)
    useful_share = 0.25
    for _ in range(_SAMPLING_ROUNDS):
        active = np.flatnonzero(need)
        if active.size == 0:
            break
        draws = np.ceil(need[active] * 1.3 / useful_share).astype(np.int64) + 2
        users = np.repeat(active, draws)
        candidates = rng.choice(movies, size=users.size, p=popularity)
        niche_draws = np.flatnonzero(rng.random(users.size) < NICHE_SHARE)
        candidates[niche_draws] = niches.draw(rng, users[niche_draws])
        accept = rng.random(users.size) < np.exp(
            TASTE_PULL * (taste(users, candidates) - taste.best[users])
        )
        keys = users[accept] * movies + candidates[accept]
        _, first = np.unique(keys, return_index=True)
        keys = keys[np.sort(first)]  # draw order, so no bias towards low movie numbers
        keys = keys[~_contains(taken, keys)]
        keys = _first_per_user(keys // movies, keys, need)
        need -= np.bincount(keys // movies, minlength=need.size)
        chosen.append(keys)
        taken = np.sort(np.concatenate([taken, keys]))
        useful_share = max(keys.size / users.size, 0.01)
    for user in np.flatnonzero(need):
        chosen.append(_exact_pairs(rng, int(user), int(need[user]), popularity, taste, taken))
    keys = np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)
    keys.sort()
    return keys // movies, keys % movies


def _contains(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """``np.isin`` for a sorted haystack (binary search beats isin's hashing here)."""
    if sorted_keys.size == 0:
        return np.zeros(keys.size, dtype=bool)
    at = np.minimum(np.searchsorted(sorted_keys, keys), sorted_keys.size - 1)
    return sorted_keys[at] == keys


def _first_per_user(users: np.ndarray, keys: np.ndarray, need: np.ndarray) -> np.ndarray:
    """The first ``need[u]`` of ``keys`` for each user u, in their order."""
    order = np.argsort(users, kind="stable")
    grouped = users[order]
    rank = np.arange(grouped.size) - np.searchsorted(grouped, grouped, side="left")
    return keys[np.sort(order[rank < need[grouped]])]


def _exact_pairs(
    rng: np.random.Generator,
    user: int,
    count: int,
    popularity: np.ndarray,
    taste: _Taste,
    taken: np.ndarray,
) -> np.ndarray:
    movies = popularity.size
    keys = np.log(popularity) + TASTE_PULL * taste.of_user(user) + rng.gumbel(size=movies)
    lo, hi = np.searchsorted(taken, [user * movies, (user + 1) * movies])
    keys[taken[lo:hi] - user * movies] = -np.inf
    picked = np.argpartition(-keys, count - 1)[:count]
    return user * movies + picked.astype(np.int64)


def _rate(
    rng: np.random.Generator,
    users: np.ndarray,
    movies: np.ndarray,
    popularity: np.ndarray,
    taste: _Taste,
) -> np.ndarray:
    """Half stars (1..10) from biases, taste, latent factors and noise."""
    n_users, n_movies = taste.affinity.shape[0], popularity.size
    user_bias = rng.normal(0.0, 0.35, size=n_users)
    log_pop = np.log(popularity)
    # popular movies tend to be the better ones
    movie_bias = rng.normal(0.0, 0.3, size=n_movies) + 0.15 * (
        (log_pop - log_pop.mean()) / (log_pop.std() or 1.0)
    )
    scale = (0.16 / LATENT_FACTORS) ** 0.25  # p·q then has a standard deviation near 0.4
    user_factors = rng.normal(0.0, scale, size=(n_users, LATENT_FACTORS)).astype(np.float32)
    movie_factors = rng.normal(0.0, scale, size=(n_movies, LATENT_FACTORS)).astype(np.float32)
    half_stars = np.empty(users.size, dtype=np.int16)
    for start in range(0, users.size, _CHUNK):
        u, m = users[start : start + _CHUNK], movies[start : start + _CHUNK]
        score = (
            MEAN_RATING
            + user_bias[u]
            + movie_bias[m]
            + taste(u, m)
            + np.einsum("ij,ij->i", user_factors[u], movie_factors[m])
            + rng.normal(0.0, RATING_NOISE, size=u.size)
        )
        half_stars[start : start + u.size] = np.clip(np.rint(score * 2), 1, 10)
    return half_stars


def _rating_times(
    rng: np.random.Generator, users: np.ndarray, movies: np.ndarray, years: np.ndarray, n: int
) -> np.ndarray:
    """Each user rates within an active spell of their own, never before a movie came out."""
    joined = rng.uniform(FIRST_RATING_EPOCH, LAST_RATING_EPOCH - DAY, size=n)
    left = np.minimum(joined + DAY + rng.exponential(2 * 365 * DAY, size=n), LAST_RATING_EPOCH)
    released = (years.astype(np.int64) - 1970).astype("datetime64[Y]").astype("datetime64[s]")
    lo = np.maximum(joined[users], released.astype(np.int64)[movies])
    lo = np.minimum(lo, LAST_RATING_EPOCH - DAY)
    hi = np.minimum(np.maximum(left[users], lo + 30 * DAY), LAST_RATING_EPOCH)
    return (lo + rng.random(users.size) * (hi - lo)).astype(np.int64)


def _stated_preferences(rng: np.random.Generator, affinity: np.ndarray) -> dict[int, list[str]]:
    """Some users list the genres they love (their strongest, clearly positive ones)."""
    stating = np.flatnonzero(rng.random(len(affinity)) < STATED_PREFERENCE_SHARE)
    best = np.argsort(-affinity[stating], axis=1)[:, :MAX_GENRES]
    preferences: dict[int, list[str]] = {}
    for user, genres in zip(stating.tolist(), best.tolist(), strict=True):
        liked = [GENRES[g] for g in genres if affinity[user, g] >= 0.6]
        if liked:
            preferences[user] = liked
    return preferences
