"""Reading ratings out of PostgreSQL into arrays with id maps, and surprise trainsets."""

import numpy as np
import pytest

from movierec.ai import dataset
from movierec.ai.dataset import (
    ratings_from_arrays,
    read_movie_genres,
    read_ratings,
    to_trainset,
)
from movierec.ai.ids import dense_index
from movierec.errors import BadInput, DatabaseUnavailable


def as_triples(data):
    users = data.user_ids[data.user_index]
    movies = data.movie_ids[data.item_index]
    return sorted(zip(users.tolist(), movies.tolist(), data.ratings.tolist(), strict=True))


@pytest.mark.parametrize("chunk_rows", [7, dataset.CHUNK_ROWS])
def test_read_ratings_returns_every_rating_with_database_ids(
    loaded, database, monkeypatch, chunk_rows
):
    monkeypatch.setattr(dataset, "CHUNK_ROWS", chunk_rows)  # 7 forces many partial chunks
    seen = []
    data = read_ratings(database, progress=lambda done, total: seen.append(done))
    assert as_triples(data) == sorted(loaded.ratings)
    assert data.user_ids.tolist() == loaded.user_ids  # rating-less users are not in the model
    assert data.movie_ids.tolist() == loaded.movie_ids
    assert seen[-1] == len(loaded.ratings)
    assert (len(seen) > 10) == (chunk_rows == 7)


def test_read_ratings_of_an_empty_table(database):
    data = read_ratings(database)
    assert data.n_ratings == data.n_users == data.n_items == 0


def test_unreachable_database_is_database_unavailable(settings):
    from movierec.db import Database
    from movierec.db.local_server import free_port

    dead = Database(settings.replace(database_url=f"postgresql://u@127.0.0.1:{free_port()}/x"))
    with pytest.raises(DatabaseUnavailable):
        read_ratings(dead)


def test_movie_genres_line_up_with_dense_movies(loaded, database, execute, monkeypatch):
    monkeypatch.setattr(dataset, "GENRE_CHUNK_ROWS", 3)  # several server-side cursor fetches
    execute("INSERT INTO movies (id, title, genres) VALUES (2, 'Lagaan', '{Bollywood,Drama}')")
    movie_ids = np.array([2] + loaded.movie_ids[:50] + [999_999], dtype=np.int64)
    names, matrix = read_movie_genres(database, movie_ids)
    assert names[-1] == "Bollywood" and "Bollywood" not in names[:-1]
    assert sorted(names[matrix[0]].tolist()) == ["Bollywood", "Drama"]
    for row, movie_id in enumerate(movie_ids.tolist()[1:51], start=1):
        assert sorted(names[matrix[row]].tolist()) == loaded.genres[movie_id]
    assert not matrix[51].any()


def test_dense_index_drops_unknown_ids():
    ids = np.array([3, 10, 42], dtype=np.int64)
    assert dense_index(ids, [42, 4, 3, 100]).tolist() == [2, 0]
    assert dense_index(np.empty(0, dtype=np.int64), [1]).tolist() == []


def test_trainset_of_a_subset_keeps_global_inner_ids():
    data = ratings_from_arrays([7, 7, 9, 11], [100, 200, 200, 300], [4.0, 3.0, 5.0, 1.0])
    trainset = to_trainset(data, np.array([0, 2]))
    assert (trainset.n_users, trainset.n_items, trainset.n_ratings) == (3, 3, 2)
    assert trainset.to_inner_uid(9) == 1 and trainset.to_inner_iid(200) == 1
    assert not trainset.knows_user(2) and not trainset.knows_item(2)  # user 11, movie 300
    assert sorted(trainset.ur[0]) == [(0, 4.0)]
    assert trainset.global_mean == pytest.approx(4.5)


@pytest.mark.parametrize(
    "users, movies, ratings",
    [([1, 2], [1], [3.0]), ([1], [1], [5.5]), ([1], [1], [0.0])],
)
def test_ratings_from_arrays_rejects_bad_input(users, movies, ratings):
    with pytest.raises(BadInput):
        ratings_from_arrays(users, movies, ratings)
