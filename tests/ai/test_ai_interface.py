"""Every model kind behind the one ``recommend`` (surprise's test_unknown_user_or_item, for
every form): unknown users, k's bounds, exclusions, shards and demotion answer alike."""

import numpy as np
import pytest
from support.algorithms import FAST

from movierec.ai.algorithms import ALGORITHMS
from movierec.ai.dataset import ratings_from_arrays
from movierec.ai.loader import FORMS, load_model
from movierec.ai.shard import Shard
from movierec.ai.train import train_on_data
from movierec.errors import BadInput

COMEDY = list(range(100, 112))
HORROR = list(range(200, 212))
GENRES = np.array(["Comedy", "Horror"])
FAN = 1000  # a known user: likes comedies


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Every algorithm, trained once on two small taste groups; the rated movies per user."""
    rng = np.random.default_rng(0)
    rows = [
        (1000 + u, m, 5.0 if (m in COMEDY) == (u < 15) else 2.0)
        for u in range(30)
        for m in COMEDY + HORROR
        if rng.random() < (0.6 if (m in COMEDY) == (u < 15) else 0.1)
    ]
    users, movies, stars = (list(column) for column in zip(*rows, strict=True))
    data = ratings_from_arrays(users, movies, stars)
    genres = np.array([[m in COMEDY, m in HORROR] for m in data.movie_ids.tolist()])
    model_dir = tmp_path_factory.mktemp("kinds")
    versions = {
        name: train_on_data(
            data, model_dir, name, FAST.get(name), test_size=0.2,
            genre_names=GENRES, movie_genres=genres,
        ).artifact.version
        for name in sorted(ALGORITHMS)
    }  # fmt: skip
    rated = {u: {m for uu, m, _ in rows if uu == u} for u in set(users)}
    return model_dir, versions, rated, data.movie_ids.tolist()


@pytest.fixture(params=sorted(ALGORITHMS))
def model(request, trained):
    model_dir, versions, _, _ = trained
    return load_model(model_dir, versions[request.param])


def test_every_form_is_loaded_by_the_one_table(trained):
    model_dir, versions, _, _ = trained
    forms = {
        load_model(model_dir, version).meta.get("form", "factors") for version in versions.values()
    }
    assert forms == set(FORMS)


def test_an_unknown_user_gets_the_most_rated_movies_not_excluded(model, trained):
    _, _, _, movies = trained
    popular = model.recommend(424242, k=3).movie_ids
    recs = model.recommend(424242, k=3, exclude={popular[0]})
    assert len(recs.items) == 3 and popular[0] not in recs.movie_ids
    assert (
        recs.fallback is (model.form != "popularity") if hasattr(model, "form") else recs.fallback
    )
    assert recs.reason and set(recs.movie_ids) <= set(movies)


@pytest.mark.parametrize("k", [0, -1, True, 2.5, "3", None])
def test_k_must_be_a_positive_integer(model, k):
    with pytest.raises(BadInput, match="k must be"):
        model.recommend(FAN, k=k)


def test_a_known_user_gets_every_movie_not_rated_or_excluded_once(model, trained):
    """k beyond the catalogue: all the movies left, each once, none rated or excluded."""
    _, _, rated, movies = trained
    exclude = {HORROR[0], HORROR[1], 999_999}
    recs = model.recommend(FAN, k=10_000, exclude=exclude)
    assert not recs.fallback and len(set(recs.movie_ids)) == len(recs.movie_ids)
    assert set(recs.movie_ids) == set(movies) - rated[FAN] - exclude


@pytest.mark.parametrize("index", [0, 1])
def test_a_shard_answers_its_movies_with_the_whole_models_scores(model, trained, index):
    _, _, _, movies = trained
    shard = Shard(index, 2)
    whole = dict(model.recommend(FAN, k=10_000).items)
    asked = model.recommend(FAN, k=10_000, shard=shard)
    kept = model.restrict(shard)
    held = kept.recommend(FAN, k=10_000)
    for answer in (asked, held):
        assert answer.movie_ids and all(m % 2 == index for m in answer.movie_ids)
        assert set(answer.movie_ids) == {m for m in whole if m % 2 == index}
        assert dict(answer.items) == pytest.approx({m: whole[m] for m in answer.movie_ids})
    assert kept.shard == shard and kept.recommend(424242, k=2).movie_ids[0] % 2 == index
    with pytest.raises(BadInput, match="shard"):
        kept.recommend(FAN, k=3, shard=Shard(1 - index, 2))


def test_demoted_genres_come_last_and_are_marked(model):
    recs = model.recommend(FAN, k=10_000, demote_genres=["comedy"])
    low = model.in_genres(recs.movie_ids, ["Comedy"])
    assert any(low) and not all(low)
    assert low == sorted(low), "every demoted movie after every other"
    assert low == [m in COMEDY for m in recs.movie_ids]
