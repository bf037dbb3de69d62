"""The synthetic catalogue: exact counts, realistic shape, learnable tastes; then in the db."""

import numpy as np
import pytest
from data_samples import table_counts
from sqlalchemy import text

from movierec.ai.algorithms import get_algorithm
from movierec.ai.dataset import ratings_from_arrays
from movierec.ai.train import (
    popularity_baseline,
    ranking_metrics,
    read_training_data,
    time_split,
)
from movierec.data import generate_catalogue, sample_catalogue
from movierec.data.synthetic import words
from movierec.data.synthetic.catalogue import LAST_RATING_EPOCH
from movierec.db import GENRES
from movierec.errors import BadInput


@pytest.fixture(scope="module")
def catalogue():
    return sample_catalogue(movies=1000, users=500, ratings=20000, seed=5)


def test_counts_are_exact_and_pairs_distinct(catalogue):
    pairs = catalogue.rating_user * 1000 + catalogue.rating_movie
    assert len(catalogue.titles) == len(set(catalogue.titles)) == 1000
    assert catalogue.users == 500
    assert pairs.size == np.unique(pairs).size == 20000
    assert catalogue.rating_user.max() < 500 and catalogue.rating_movie.max() < 1000


@pytest.mark.parametrize("ratings", [300, 290, 0])
def test_a_saturated_catalogue_still_gets_exact_counts(ratings):
    small = sample_catalogue(movies=30, users=10, ratings=ratings, seed=2)
    pairs = small.rating_user * 30 + small.rating_movie
    assert np.unique(pairs).size == pairs.size == ratings


def test_ratings_are_half_stars_with_a_plausible_spread(catalogue):
    stars = catalogue.half_stars / 2
    assert stars.min() >= 0.5 and stars.max() <= 5
    assert 3.2 < stars.mean() < 4.0 and 0.8 < stars.std() < 1.3
    assert len(np.unique(catalogue.half_stars)) >= 8  # half stars are used, not just 1..5


def test_same_seed_same_catalogue_other_seed_another():
    first, again = (sample_catalogue(100, 40, 800, seed=9) for _ in range(2))
    other = sample_catalogue(100, 40, 800, seed=10)
    assert first.titles == again.titles
    assert np.array_equal(first.half_stars, again.half_stars)
    assert np.array_equal(first.rated_epoch, again.rated_epoch)
    assert first.titles != other.titles


@pytest.mark.parametrize(
    ("movies", "users", "ratings", "message"),
    [(0, 5, 0, "need movies >= 1"), (10, 5, 51, r"cannot be distinct .* \(at most 50\)")],
)
def test_impossible_counts_are_refused(movies, users, ratings, message):
    with pytest.raises(BadInput, match=message):
        sample_catalogue(movies, users, ratings)


def test_popularity_is_zipf_skewed(catalogue):
    per_movie = np.bincount(catalogue.rating_movie, minlength=1000)
    top_tenth = np.sort(per_movie)[::-1][:100].sum() / per_movie.sum()
    assert top_tenth > 0.35  # uniform choice would give 0.10


def test_users_rate_the_genres_they_like_higher(catalogue):
    stars = catalogue.half_stars / 2
    liked, other = [], []
    for genre in range(len(GENRES)):
        in_genre = (catalogue.genres[catalogue.rating_movie] == genre).any(axis=1)
        fan = catalogue.affinity[catalogue.rating_user, genre] > 0.6
        if (in_genre & fan).sum() >= 30 and (in_genre & ~fan).sum() >= 30:
            liked.append(stars[in_genre & fan].mean())
            other.append(stars[in_genre & ~fan].mean())
    assert len(liked) >= 10
    assert np.mean(np.array(liked) - np.array(other)) > 0.3
    assert all(a > b for a, b in zip(liked, other, strict=True))


def test_a_model_beats_popularity_on_the_hold_out():
    """Taste structure a model can learn beyond popularity: ALS's NDCG@10 on each user's
    latest 20 % above that of the most rated movies (before niches, with the same counts
    per user and per movie as a million of each with 20M ratings: 0.019 against 0.056)."""
    drawn = sample_catalogue(movies=5000, users=5000, ratings=100_000, seed=0)
    data = ratings_from_arrays(
        drawn.rating_user + 1, drawn.rating_movie + 1, drawn.half_stars / 2, drawn.rated_epoch
    )
    split = time_split(data, 0.2, 0)
    als = get_algorithm("als")
    model = ranking_metrics(data, als, als.resolve(None), split, 0).ndcg
    assert model > 1.2 * popularity_baseline(data, split, 0).ndcg


def test_users_watch_the_genres_they_like_more(catalogue):
    favourite = catalogue.affinity.argmax(axis=1)
    watched = catalogue.genres[catalogue.rating_movie] == favourite[catalogue.rating_user, None]
    offered = (catalogue.genres[None, :, :] == favourite[:, None, None]).any(axis=2)
    assert watched.any(axis=1).mean() > 1.3 * offered.mean()


def test_stated_preferences_are_liked_genres(catalogue):
    assert 0.1 * catalogue.users < len(catalogue.preferences) < 0.4 * catalogue.users
    for user, genres in catalogue.preferences.items():
        assert 1 <= len(genres) <= 3
        assert all(catalogue.affinity[user, GENRES.index(g)] >= 0.6 for g in genres)


def test_movies_look_like_movies(catalogue):
    assert catalogue.years.min() >= 1920 and catalogue.years.max() <= 2025
    assert np.median(catalogue.years) >= 2000  # skewed recent
    for movie in range(1000):
        genres = catalogue.movie_genres(movie)
        assert 1 <= len(genres) <= 3 and len(set(genres)) == len(genres)
    vocabulary = {w for ws in (words.ADJECTIVES, words.NOUNS, words.PLACES, words.GERUNDS)
                  for phrase in ws for w in phrase.split()}  # fmt: skip
    vocabulary |= {f"{n}'s" for n in words.NAMES} | set(words.NAMES)
    vocabulary |= {"The", "the", "of", "and", "One", "for"}
    for title in catalogue.titles[:200]:
        assert set(title.replace(":", "").split()) - vocabulary <= {str(n) for n in range(2, 99)}


def test_ratings_come_after_release_and_before_the_end(catalogue):
    released = catalogue.years[catalogue.rating_movie].astype("int64")
    rated_year = (catalogue.rated_epoch.astype("datetime64[s]").astype("datetime64[Y]")
                  .astype("int64") + 1970)  # fmt: skip
    assert (rated_year >= np.maximum(released, 1997)).all()
    assert catalogue.rated_epoch.max() <= LAST_RATING_EPOCH


def test_generate_writes_exact_counts_and_is_idempotent(database):
    summary = generate_catalogue(database, movies=300, users=60, ratings=4000, seed=3)
    counts = table_counts(database)
    assert counts == {
        "movies": 300, "users": 60, "ratings": 4000, "preferences": summary.preferences,
    }  # fmt: skip
    assert summary.preferences > 0
    checksum = text(
        "SELECT sum(r.rating * u.source_id * m.source_id), min(r.rated_at), max(u.username) "
        "FROM ratings r JOIN users u ON u.id = r.user_id JOIN movies m ON m.id = r.movie_id "
        "WHERE u.source = 'synthetic'"
    )
    with database.session(readonly=True) as s:
        before = s.execute(checksum).one()
    generate_catalogue(database, movies=300, users=60, ratings=4000, seed=3)
    with database.session(readonly=True) as s:
        assert s.execute(checksum).one() == before
    assert table_counts(database) == counts
    assert before[2] == "user9"  # usernames user1 .. user60 (max sorts as text)


def test_generated_database_rows_carry_the_tastes(database):
    generate_catalogue(database, movies=400, users=300, ratings=12000, seed=4)
    fans_vs_others = text(
        """
        SELECT (avg(r.rating) FILTER (WHERE g = ANY (p.genres)))::float,
               (avg(r.rating) FILTER (WHERE p.genres IS NULL OR NOT g = ANY (p.genres)))::float
        FROM ratings r
        JOIN movies m ON m.id = r.movie_id
        CROSS JOIN LATERAL unnest(m.genres) AS g
        LEFT JOIN preferences p ON p.user_id = r.user_id
        """
    )
    search = text("SELECT count(*) FROM movies WHERE title_tsv @@ plainto_tsquery('simple', :w)")
    with database.session(readonly=True) as s:
        fans, others = s.execute(fans_vs_others).one()
        first_word = s.scalar(text("SELECT title FROM movies ORDER BY id LIMIT 1")).split()[-1]
        found = s.scalar(search, {"w": first_word})
    assert fans > others + 0.3
    assert found >= 1


def test_training_reads_from_the_database_what_the_generator_drew(database):
    """`model train` (ratings read back from the database) and bench_scale's taste phase
    (the drawn arrays) hold out the same ratings: the same pairs, stars and times, so the
    same latest 20 % of each user. The medium cluster run's ALS lost to popularity (0.0108
    against 0.0337) where the taste phase had it winning (0.065 against 0.017): the two ran
    different generators (niches of 100 movies then), not different readings of one."""
    generate_catalogue(database, movies=400, users=300, ratings=12000, seed=4)
    read, _genres, _matrix = read_training_data(database)
    drawn = sample_catalogue(movies=400, users=300, ratings=12000, seed=4)
    arrays = ratings_from_arrays(
        drawn.rating_user + 1, drawn.rating_movie + 1, drawn.half_stars / 2, drawn.rated_epoch
    )

    def held_out(data):
        """(user, movie, stars, time) of every rating, and of the held-out ones, sorted."""
        rows = np.column_stack([
            data.user_ids[data.user_index], data.movie_ids[data.item_index],
            data.ratings * 2, data.timestamps,
        ]).astype(np.int64)  # fmt: skip
        test = time_split(data, 0.2, 0)[1]
        return rows[np.lexsort(rows.T[::-1])], rows[test][np.lexsort(rows[test].T[::-1])]

    every, test = held_out(read)
    assert np.array_equal(every, held_out(arrays)[0])
    assert np.array_equal(test, held_out(arrays)[1])
    assert 2300 < test.shape[0] < 2500  # each user's latest 20 %, rounded per user


def test_impossible_generation_writes_nothing(database):
    with pytest.raises(BadInput):
        generate_catalogue(database, movies=3, users=2, ratings=7)
    assert set(table_counts(database).values()) == {0}
