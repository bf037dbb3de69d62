"""Changing a running director: graceful reloads, refused configurations, removal, stop."""

from __future__ import annotations

import re
import threading

import pytest
from director_support import RequestLoop, get, start_director, wait_until
from typer.testing import CliRunner

from movierec import director
from movierec.cli.main import app
from movierec.director.haproxy import show_proc
from movierec.errors import OpsCommandFailed

pytestmark = pytest.mark.integration


def test_add_backend_reloads_without_a_failed_or_cut_request(director_settings, standins):
    a, c = standins("a", "c")
    state = start_director(director_settings, [a])
    files = director.director_files(director_settings, "d1")
    pid = director.running_pid(files)
    slow: list = []
    with RequestLoop(state.port) as loop:
        wait_until(lambda: len(loop.served) > 20, what="traffic before the reload")
        # A request in flight on the old worker while it is replaced must still complete.
        in_flight = threading.Thread(target=lambda: slow.append(get(state.port, "/slow")))
        in_flight.start()
        wait_until(lambda: director.status(director_settings).backends[0].sessions > 0)
        director.add_backend(director_settings, "d1", director.Backend("c", "127.0.0.1", c.port))
        mark = len(loop.served)
        wait_until(lambda: "c" in loop.served[mark:], what="traffic to the new backend")
        director.reload(director_settings, "d1")  # a plain reload, under traffic too
        in_flight.join(5)
        served_after = len(loop.served) - mark
    assert loop.failures == []
    assert slow == [(200, "a")]
    assert served_after > 10
    assert director.running_pid(files) == pid  # the master stays; only workers change
    assert show_proc(files.master_socket).reloads == 2
    assert [b.name for b in director.load_state(director_settings, "d1").backends] == ["a", "c"]


def test_refused_configuration_keeps_the_old_one_serving(director_settings, state_dir, standins):
    (a,) = standins("a")
    state = start_director(director_settings, [a])
    files = director.director_files(director_settings, "d1")
    config_before = files.config.read_text()
    with pytest.raises(OpsCommandFailed) as caught:
        director.add_backend(
            director_settings, "d1", director.Backend("x", "no-such-host.invalid", 80)
        )
    assert re.fullmatch(
        r"configuration check failed \(haproxy exited with 1\): config : new haproxy\.cfg "
        r"line \d+ : 'server web/x' : could not resolve address 'no-such-host\.invalid'\.",
        str(caught.value),
    )
    result = CliRunner().invoke(
        app,
        ["director", "add-backend", "x", "no-such-host.invalid:80"],
        env={"MOVIEREC_STATE_DIR": str(state_dir)},
    )
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [f"error: {caught.value}"]
    assert files.config.read_text() == config_before
    assert director.load_state(director_settings, "d1") == state
    assert show_proc(files.master_socket).reloads == 0
    assert get(state.port) == (200, "a")


def test_remove_backend_stops_its_traffic(director_settings, standins):
    a, b = standins("a", "b")
    state = start_director(director_settings, [a, b])
    director.remove_backend(director_settings, "d1", "b")
    assert {get(state.port)[1] for _ in range(10)} == {"a"}
    assert [x.name for x in director.status(director_settings).backends] == ["a"]


def test_start_twice_is_refused_and_stop_frees_the_port(director_settings, standins):
    (a,) = standins("a")
    state = start_director(director_settings, [a])
    with pytest.raises(OpsCommandFailed, match="director d1 already runs"):
        director.start(director_settings, state)
    clash = director.DirectorState("d2", state.port, state.backends)
    with pytest.raises(OpsCommandFailed, match=r"cannot bind socket \(Address already in use\)"):
        director.start(director_settings, clash)
    assert get(state.port) == (200, "a")  # d1 untouched, and no second HAProxy shares its port
    assert director.stop(director_settings, "d1") is True
    with pytest.raises(ConnectionRefusedError):
        get(state.port)
    assert director.status(director_settings, "d1").running is False
    assert director.stop(director_settings, "d1") is False
    with pytest.raises(OpsCommandFailed, match="director d1 is not running"):
        director.reload(director_settings, "d1")
