"""Two directors in front of the same backends, and the CLI end to end."""

from __future__ import annotations

import threading

import pytest
from director_support import free_port, get, start_director, wait_until
from typer.testing import CliRunner

from movierec import director
from movierec.cli.main import app

pytestmark = pytest.mark.integration

runner = CliRunner()


def get_any(ports: list[int], path: str = "/") -> tuple[tuple[int, str], int]:
    """What a browser does with a name that has two A records: when one address refuses the
    connection, try the next. Returns the answer and the index of the address that gave it."""
    for index, port in enumerate(ports):
        try:
            return get(port, path), index
        except ConnectionRefusedError:
            continue
    raise ConnectionRefusedError(f"every address refused: {ports}")


def test_second_director_serves_when_the_first_stops(director_settings, standins):
    a, b = standins("a", "b")
    d1 = start_director(director_settings, [a, b], name="d1")
    d2 = start_director(director_settings, [a, b], name="d2")
    ports = [d1.port, d2.port]
    assert {get_any(ports)[1] for _ in range(10)} == {0}
    answers: list = []
    failures: list = []
    stop_event = threading.Event()

    def client() -> None:
        while not stop_event.is_set() and len(answers) < 3000:
            try:
                answers.append(get_any(ports))
            except OSError as exc:
                failures.append(repr(exc))

    thread = threading.Thread(target=client)
    thread.start()
    try:
        wait_until(lambda: len(answers) > 20, what="traffic through d1")
        assert director.stop(director_settings, "d1") is True  # while the client runs
        more = [get_any(ports) for _ in range(100)]
    finally:
        stop_event.set()
        thread.join(10)
    assert failures == []
    assert {answer for answer, _ in answers} <= {(200, "a"), (200, "b")}
    assert {index for _, index in answers[:20]} == {0}
    assert {answer for answer, _ in more} == {(200, "a"), (200, "b")}
    assert {index for _, index in more} == {1}  # every one fell back to d2


def invoke(state_dir, *args):
    return runner.invoke(app, ["director", *args], env={"MOVIEREC_STATE_DIR": str(state_dir)})


def test_cli_start_status_stop(director_settings, state_dir, standins):
    a, b, spare = standins("a", "b", "spare")
    port, stats_port = free_port(), free_port()
    result = invoke(
        state_dir,
        "start",
        "--port",
        str(port),
        "--stats-port",
        str(stats_port),
        "--backend",
        f"a=127.0.0.1:{a.port}",
        "--backend",
        f"b=127.0.0.1:{b.port}",
        "--backup",
        f"spare=127.0.0.1:{spare.port}",
        "--balance",
        "leastconn",
    )
    assert result.exit_code == 0, result.output
    assert f"director d1 serving http://127.0.0.1:{port}" in result.stdout
    assert get(port)[0] == 200
    status, csv_text = get(stats_port, "/stats;csv")
    assert status == 200 and csv_text.startswith("# pxname,svname")
    b.kill()
    wait_until(lambda: director.status(director_settings).backends[1].status == "DOWN", 3)
    result = invoke(state_dir, "status", "--name", "d1")
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if "│" in line}
    assert "UP" in rows["a"] and "primary" in rows["a"]
    assert "DOWN" in rows["b"]
    assert "UP" in rows["spare"] and "backup" in rows["spare"]
    result = invoke(state_dir, "stop")
    assert (result.exit_code, result.stdout.strip()) == (0, "director d1 stopped")
    assert "director d1: stopped" in invoke(state_dir, "status").stdout
    # The saved state starts it again, as it was.
    result = invoke(state_dir, "start", "--name", "d1")
    assert result.exit_code == 0, result.output
    assert get(port) == (200, "a")
    result = invoke(state_dir, "remove-backend", "b")
    assert (result.exit_code, result.stdout.strip()) == (0, "removed b: director reloaded")
    result = invoke(state_dir, "remove-backend", "a")
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: director d1 needs at least one non-backup backend"
