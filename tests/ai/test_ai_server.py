"""The recommender server through Flask's test client, and once over a real socket."""

import threading

import pytest
import requests
from sqlalchemy import bindparam, event, select
from support.keys import AI_KEY, KEYED
from werkzeug.serving import make_server

from movierec.ai import (
    FactorModel,
    TrainParams,
    fit_svd,
    load_model,
    model_arrays,
    ratings_from_arrays,
    train_model,
)
from movierec.ai.server import create_app
from movierec.config import load_settings
from movierec.db import Rating
from movierec.db.local_server import free_port
from movierec.db.roles import AI_ROLE
from movierec.db.user_signals import as_json, signal_columns
from movierec.wire import recommender as wire

USER = bindparam("user_id")
SIGNALS = select(*signal_columns(USER)).where(Rating.user_id == USER)


@pytest.fixture
def client(trained, settings, make_app, as_role):
    """The server connected as the recommenders' own (read-only) role."""
    return make_app(
        settings.replace(database_url=as_role(settings.database_url, AI_ROLE))
    ).test_client()


@pytest.fixture(scope="module")
def offline_client(synthetic, tmp_path_factory):
    """An app with an in-memory model and no database: enough for parameter checks."""
    users, movies, ratings = zip(*synthetic.ratings, strict=True)
    data = ratings_from_arrays(users, movies, ratings)
    factors = fit_svd(data, TrainParams(factors=4, epochs=5, test_size=0))
    model = FactorModel(model_arrays(factors, data), {"version": "offline"})
    settings = load_settings(
        environ={},
        toml_path=None,
        overrides={"model_dir": tmp_path_factory.mktemp("m"), "ai_key": AI_KEY},
    )
    return create_app(settings, model=model).test_client()


def test_recommend_excludes_what_the_user_rated_even_after_training(client, loaded, model, execute):
    user = loaded.user_ids[0]
    first = client.get(f"/recommend?user={user}&k=5")
    assert first.status_code == 200
    body = first.get_json()
    assert list(body) == ["user", "k", "model_version", "fallback", "reason", "items"]
    assert (body["user"], body["k"], body["fallback"], body["reason"]) == (user, 5, False, None)
    assert body["model_version"] == model.version
    ids = [item["movie_id"] for item in body["items"]]
    assert ids == model.recommend(user, k=5).movie_ids
    assert not set(ids) & loaded.rated_by(user)
    execute("INSERT INTO ratings (user_id, movie_id, rating) VALUES (%s, %s, 2)", (user, ids[0]))
    after = client.get(f"/recommend?user={user}&k=5").get_json()
    assert [item["movie_id"] for item in after["items"]] == ids[1:] + [
        model.recommend(user, k=6).movie_ids[5]
    ]


def test_a_posted_context_is_used_instead_of_a_database_read(client, loaded):
    user = loaded.user_ids[0]
    read = client.get(f"/recommend?user={user}&k=5").get_json()
    database = client.application.extensions["movierec.ai"]["database"]
    with database.autocommit() as conn:
        context = as_json(conn.execute(SIGNALS, {"user_id": user}).one()._mapping)
    statements: list[str] = []
    event.listen(database.primary, "before_cursor_execute", lambda *a: statements.append(a[2]))
    posted = client.post(f"/recommend?user={user}&k=5", json={"context": context})
    assert posted.status_code == 200 and posted.get_json() == read
    # A rating only the caller knows of (made after its read, say) counts as well.
    first = read["items"][0]["movie_id"]
    context = {**context, "movie_ids": [*context["movie_ids"], first]}
    context["stars"] = [*context["stars"], 5.0]
    newer = client.post(f"/recommend?user={user}&k=5", json={"context": context}).get_json()
    assert first not in [item["movie_id"] for item in newer["items"]]
    assert statements == []  # the server read nothing itself


GOOD_CONTEXT = {
    "movie_ids": [1, 2], "stars": [4.0, 3.5], "last_rated_at": 1.7e9,
    "genres": ["Drama"], "liked": None, "searched": [],
}  # fmt: skip


@pytest.mark.parametrize(
    ("body", "word"),
    [
        ("not json", "JSON object"),
        ({"user": 1}, "JSON object"),
        ({"context": [1, 2]}, "JSON object"),
        ({"context": {"movie_ids": [1], "stars": [4.0]}}, "lacks"),
        ({"context": {**GOOD_CONTEXT, "stars": [4.0]}}, "as long as"),
        ({"context": {**GOOD_CONTEXT, "movie_ids": [1, "2"]}}, "int"),
        ({"context": {**GOOD_CONTEXT, "stars": [4.0, 5.5]}}, "between"),
        # NaN escapes min() and max() when it is not first; JSON from Python may carry it.
        ({"context": {**GOOD_CONTEXT, "stars": [4.0, float("nan")]}}, "between"),
        ({"context": {**GOOD_CONTEXT, "stars": [float("inf"), 4.0]}}, "between"),
        ({"context": {**GOOD_CONTEXT, "movie_ids": [1, 2**63]}}, "int"),
        ({"context": {**GOOD_CONTEXT, "liked": [True]}}, "int"),
        ({"context": {**GOOD_CONTEXT, "searched": ["x" * 65]}}, "str"),
        ({"context": {**GOOD_CONTEXT, "genres": "Drama"}}, "list"),
        ({"context": {**GOOD_CONTEXT, "last_rated_at": "yesterday"}}, "epoch"),
        # Closed objects, as the OpenAPI document says (schemathesis found both accepted).
        ({"context": GOOD_CONTEXT, "": None}, "and no more"),
        ({"context": {**GOOD_CONTEXT, "stras": [4.0]}}, "unknown fields: 'stras'"),
    ],
)
def test_a_bad_posted_context_is_400_json(offline_client, synthetic, body, word):
    user = synthetic.user_ids[1]
    if isinstance(body, str):
        answer = offline_client.post(f"/recommend?user={user}", data=body)
    else:
        answer = offline_client.post(f"/recommend?user={user}", json=body)
    assert answer.status_code == 400 and word in answer.get_json()["error"]
    good = offline_client.post(f"/recommend?user={user}", json={"context": GOOD_CONTEXT})
    assert good.status_code == 200


def test_recommend_defaults_to_ten_and_works_without_a_database(offline_client, synthetic):
    body = offline_client.get(f"/recommend?user={synthetic.user_ids[1]}").get_json()
    assert len(body["items"]) == 10 and body["model_version"] == "offline"
    assert not {i["movie_id"] for i in body["items"]} & synthetic.rated_by(synthetic.user_ids[1])


def test_new_user_gets_popular_movies_in_preferred_genres(client, loaded):
    body = client.get("/recommend?user=9001&k=4").get_json()
    assert body["fallback"] is True and "Horror" in body["reason"]
    assert len(body["items"]) == 4
    assert all("Horror" in loaded.genres[item["movie_id"]] for item in body["items"])
    stranger = client.get("/recommend?user=424242&k=4").get_json()
    assert stranger["fallback"] is True and "Horror" not in stranger["reason"]


@pytest.mark.parametrize(
    "query, word",
    [
        ("", "user is missing"),
        ("user=abc", "whole number"),
        ("user=1.5", "whole number"),
        ("user=0", "from 1 to"),
        ("user=-5", "whole number"),
        ("user=1000&k=0", "k must be a whole number from 1 to 100"),
        ("user=1000&k=101", "from 1 to 100"),
        ("user=1000&k=ten", "whole number"),
        ("user=99999999999999999999999", "whole number"),
        # Digits int() would refuse (a 500 once) or read as another number: one rule, ASCII.
        ("user=%C2%B2", "whole number"),
        ("user=%C2%B9%E2%81%B9%E2%81%B9%E2%81%B0", "whole number"),
        ("user=1000&k=%EF%BC%95", "whole number"),
        ("user=%D9%A1", "whole number"),
        ("user=1000&exclude=1,%C2%B2", "exclude must list whole numbers"),
        ("user=1000&demote_genres=Horror,%00", "control characters"),
        ("user=1000&shard=1", "given together"),
        ("user=1000&shard=2&shards=2", "shard must be a whole number from 0 to 1"),
    ],
)
def test_bad_parameters_are_400_json(offline_client, query, word):
    answer = offline_client.get(f"/recommend?{query}")
    assert answer.status_code == 400 and word in answer.get_json()["error"]


def test_every_problem_is_named_at_once(offline_client):
    error = offline_client.get("/recommend?user=x&k=0").get_json()["error"]
    assert "user must be" in error and "k must be" in error


def test_predict_answers_for_known_movies_only(client, loaded):
    user, movie = loaded.user_ids[0], loaded.movie_ids[0]
    found = client.get(f"/predict?user={user}&movie={movie}")
    assert found.status_code == 200 and 0.5 <= found.get_json()["rating"] <= 5
    missing = client.get(f"/predict?user={user}&movie=999999")
    assert missing.status_code == 404 and "999999" in missing.get_json()["error"]


def test_predictions_read_a_rating_made_after_training_at_once(client, loaded, model, execute):
    user = loaded.user_ids[0]
    unrated = [m for m in loaded.movie_ids if m not in loaded.rated_by(user)][:12]
    query = f"/predictions?user={user}&movies={','.join(map(str, unrated))}"
    before = client.get(query)
    assert before.status_code == 200
    body = before.get_json()
    assert body["model_version"] == model.version
    stars = {i["movie_id"]: i["stars"] for i in body["items"]}
    assert stars == {m: pytest.approx(model.predict(user, m), abs=0.01) for m in unrated}
    execute(
        "INSERT INTO ratings (user_id, movie_id, rating) VALUES (%s, %s, 0.5)", (user, unrated[0])
    )
    after = {i["movie_id"]: i["stars"] for i in client.get(query).get_json()["items"]}
    assert set(after) == set(unrated[1:])  # the rated one is the user's own word now
    assert any(abs(after[m] - stars[m]) >= 0.01 for m in after)


@pytest.mark.parametrize(
    "query",
    ["user=1&movies=0", "user=1&movies=x", "movies=1,2", "user=1&movies=" + "1," * 101],
)
def test_bad_predictions_parameters_are_400_json(offline_client, query):
    answer = offline_client.get(f"/predictions?{query}")
    assert answer.status_code == 400 and answer.get_json()["error"]


def test_the_openapi_document_is_the_wire_contract(offline_client):
    doc = offline_client.get("/openapi.json").get_json()
    assert doc == wire.OPENAPI
    recommend = doc["paths"]["/recommend"]["get"]["parameters"]
    assert [p["name"] for p in recommend] == [
        "user",
        "k",
        "exclude",
        "demote_genres",
        "shard",
        "shards",
        "stars",
    ]


def test_similar_and_its_404(client, loaded, model):
    movie = loaded.movie_ids[2]
    body = client.get(f"/similar?movie={movie}&k=3").get_json()
    assert body["movie"] == movie and body["model_version"] == model.version
    assert [i["movie_id"] for i in body["items"]] == model.similar(movie, 3).movie_ids
    missing = client.get("/similar?movie=31337")
    assert missing.status_code == 404 and "31337" in missing.get_json()["error"]
    assert client.get("/similar?movie=x").status_code == 400


def test_health_and_model_metadata(client, trained):
    assert client.get("/health").get_json() == {
        "status": "ok", "model_version": trained.artifact.version,
    }  # fmt: skip
    assert client.get("/model").get_json() == trained.artifact.meta


def test_framework_errors_are_json(offline_client):
    client = offline_client
    for answer, status in ((client.get("/nope"), 404), (client.post("/similar"), 405)):
        assert answer.status_code == status and answer.is_json
        assert answer.get_json()["error"]


def test_a_bug_is_a_500_json_without_traceback(trained, settings, monkeypatch, make_app):
    model = load_model(settings.model_dir)
    monkeypatch.setattr(model, "recommend", lambda *a, **kw: 1 / 0)
    answer = make_app(settings, model=model).test_client().get("/recommend?user=1000")
    assert answer.status_code == 500 and answer.get_json() == {"error": "internal error"}


def test_without_a_model_health_is_503_then_a_new_model_is_picked_up(
    loaded, database, settings, fast_params, make_app
):
    client = make_app(settings, reload_interval=0).test_client()
    assert client.get("/health").status_code == 503
    assert client.get("/health").get_json() == {"status": "no-model"}
    answer = client.get("/recommend?user=1000")
    assert answer.status_code == 503 and "model train" in answer.get_json()["error"]
    assert int(answer.headers["Retry-After"]) >= 1
    report = train_model(database, settings.model_dir, fast_params)
    assert client.get("/health").get_json()["model_version"] == report.artifact.version
    assert client.get("/recommend?user=1000").status_code == 200


def test_database_down_still_answers_from_the_model(trained, loaded, settings, model, make_app):
    dead = settings.replace(database_url=f"postgresql://u@127.0.0.1:{free_port()}/gone")
    client = make_app(dead).test_client()
    user = loaded.user_ids[4]
    body = client.get(f"/recommend?user={user}&k=5").get_json()
    assert [i["movie_id"] for i in body["items"]] == model.recommend(user, 5).movie_ids
    assert client.get("/recommend?user=9001&k=3").get_json()["fallback"] is True


def test_the_recommender_waits_for_a_switched_primary_less_than_the_site_waits_for_it(
    settings, make_app
):
    app = make_app(settings.replace(ai_timeout=2.0, database_connect_wait=8.0), reload_interval=0)
    assert app.extensions["movierec.ai"]["database"].settings.database_connect_wait == 1.0


@pytest.mark.integration
def test_recommend_over_a_real_socket(trained, loaded, settings, make_app):
    server = make_server("127.0.0.1", 0, make_app(settings), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        user = {"user": loaded.user_ids[0]}
        answer = requests.get(f"{url}/recommend", params=user, headers=KEYED, timeout=5)
        assert answer.status_code == 200
        assert answer.headers["Content-Type"] == "application/json"
        assert len(answer.json()["items"]) == 10
        assert requests.get(f"{url}/health", timeout=5).json()["status"] == "ok"
    finally:
        server.shutdown()
        thread.join(timeout=5)
