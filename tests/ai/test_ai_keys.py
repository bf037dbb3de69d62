"""Only callers with the key get answers from a recommender (issue 19, item 7): whoever
reached an AI server got any user's recommendations, and ``because`` named movies that user
rated highly. Tried for real: the server on a loopback socket, plain HTTP, no test client."""

from __future__ import annotations

import threading

import pytest
import requests
from support.keys import AI_KEY, KEYED
from werkzeug.serving import make_server

from movierec.ai.server import create_app
from movierec.errors import ConfigError
from movierec.web.ai_client import AIClient, AIUnavailable

GUARDED = (
    "/recommend?user={user}&k=5",
    "/similar?movie={movie}&k=5",
    "/predict?user={user}&movie={movie}",
    "/model",
    "/models",
    "/metrics",
    "/no-such-endpoint",
)


@pytest.fixture
def ai_url(trained, loaded, settings):
    app = create_app(settings)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)
    app.extensions["movierec.ai"]["database"].dispose()


def _paths(loaded) -> list[str]:
    ids = {"user": loaded.user_ids[0], "movie": loaded.movie_ids[0]}
    return [path.format(**ids) for path in GUARDED]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer wrong-key"},
        {"Authorization": f"Bearer {AI_KEY}x"},
        {"Authorization": f"Bearer {AI_KEY[:-1]}"},
        {"Authorization": f"Basic {AI_KEY}"},
        {"X-Api-Key": AI_KEY},
    ],
)
def test_every_endpoint_but_health_refuses_a_missing_or_wrong_key(ai_url, loaded, headers):
    for path in _paths(loaded):
        answer = requests.get(ai_url + path, headers=headers, timeout=10)
        assert answer.status_code == 401, path
        assert answer.headers["Content-Type"] == "application/json", path
        assert "key" in answer.json()["error"], path
        assert answer.headers["WWW-Authenticate"].startswith("Bearer"), path
        assert "items" not in answer.text and "because" not in answer.text, path
    refused = requests.post(
        f"{ai_url}/recommend?user=1", json={"context": {}}, headers=headers, timeout=10
    )
    assert refused.status_code == 401


def test_the_key_opens_every_endpoint_and_health_is_open(ai_url, loaded):
    for path in _paths(loaded)[:-1]:
        assert requests.get(ai_url + path, headers=KEYED, timeout=10).status_code == 200, path
    assert requests.get(f"{ai_url}/health", timeout=10).json()["status"] == "ok"


def test_a_server_without_a_key_does_not_start(settings):
    with pytest.raises(ConfigError, match="ai_key"):
        create_app(settings.replace(ai_key=None))


def test_the_web_side_client_sends_the_key(ai_url, loaded):
    user = loaded.user_ids[0]
    keyed = AIClient([ai_url], timeout=5, key=AI_KEY)
    assert len(keyed.recommend(user, 5).items) == 5
    assert keyed.model_version() is not None
    for key in (None, "wrong"):
        with pytest.raises(AIUnavailable, match="HTTP 401 \\(check ai_key\\)"):
            AIClient([ai_url], timeout=5, key=key).recommend(user, 5)
