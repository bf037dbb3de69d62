"""Director state, parsing and rendering: no HAProxy process is started here."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from movierec import director
from movierec.cli.main import app
from movierec.config import load_settings
from movierec.director.haproxy import parse_show_proc
from movierec.director.render import check_config, render_config
from movierec.director.stats import parse_show_stat
from movierec.errors import BadInput, ConfigError, NotFound

runner = CliRunner()


def two_backends(**changes) -> director.DirectorState:
    values = {
        "name": "d1",
        "port": 8080,
        "backends": (
            director.Backend("web-1", "127.0.0.1", 8001),
            director.Backend("web-2", "127.0.0.1", 8002),
        ),
    }
    return director.DirectorState(**{**values, **changes})


def test_backend_specs_parse():
    assert director.parse_backend("web-1=127.0.0.1:8001") == director.Backend(
        "web-1", "127.0.0.1", 8001
    )
    assert director.parse_backend("v6=[::1]:80", backup=True) == director.Backend(
        "v6", "::1", 80, backup=True
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("web-1", "backend 'web-1' is not NAME=HOST:PORT"),
        ("web-1=127.0.0.1", "backend web-1: '127.0.0.1' is not HOST:PORT"),
        ("web-1=127.0.0.1:", "backend web-1: '127.0.0.1:' is not HOST:PORT"),
        ("web-1=127.0.0.1:http", "backend web-1: port 'http' in '127.0.0.1:http' is not a number"),
        ("web-1=127.0.0.1:0", "backend web-1: port 0 is out of range 1-65535"),
        ("web-1=127.0.0.1:70000", "backend web-1: port 70000 is out of range 1-65535"),
        ("web 1=127.0.0.1:80", "backend name 'web 1': use letters, digits"),
        ("web-1=evil host\nbind:80", "is not a host name or address"),
    ],
)
def test_bad_backend_specs_say_what_is_wrong(spec, message):
    with pytest.raises(BadInput) as caught:
        director.parse_backend(spec)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value).replace("\\n", "")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"port": 0}, "director port 0 is out of range"),
        ({"stats_port": 8080}, "stats port 8080 is also the director port"),
        ({"balance": "random"}, "balance 'random': choose one of roundrobin, leastconn"),
        ({"backends": ()}, "needs at least one non-backup backend"),
        (
            {"backends": (director.Backend("a", "h", 1), director.Backend("a", "h", 2))},
            "backend name(s) used twice: a",
        ),
    ],
)
def test_bad_states_are_refused(changes, message):
    with pytest.raises(BadInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        two_backends(**changes)


@pytest.mark.parametrize(
    ("spec", "line"),
    [
        ("web-1=127.0.0.1", "error: backend web-1: '127.0.0.1' is not HOST:PORT"),
        ("web-1=127.0.0.1:99999", "error: backend web-1: port 99999 is out of range 1-65535"),
    ],
)
def test_cli_bad_backend_is_one_line_and_exit_1(tmp_path, spec, line):
    result = runner.invoke(
        app,
        ["director", "start", "--port", "8080", "--backend", spec],
        env={"MOVIEREC_STATE_DIR": str(tmp_path)},
    )
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [line]
    assert not (tmp_path / "director" / "d1.json").exists()


def test_state_round_trips_through_its_file(tmp_path):
    settings = load_settings(environ={}, toml_path=None, overrides={"state_dir": tmp_path})
    state = two_backends(stats_port=9000, balance="leastconn").with_backend(
        director.Backend("spare", "10.0.0.9", 8000, backup=True)
    )
    path = director.save_state(settings, state)
    assert path == tmp_path.resolve() / "director" / "d1.json"
    assert director.load_state(settings, "d1") == state
    assert sorted(p.name for p in path.parent.iterdir()) == ["d1.json"]  # no temp file left
    assert director.known_directors(settings) == ["d1"]
    with pytest.raises(NotFound, match="no director named d2"):
        director.load_state(settings, "d2")


def test_malformed_state_file_is_a_config_error(tmp_path):
    settings = load_settings(environ={}, toml_path=None, overrides={"state_dir": tmp_path})
    (tmp_path / "director").mkdir()
    (tmp_path / "director" / "d1.json").write_text('{"name": "d1"}')
    with pytest.raises(ConfigError, match="director state file is malformed"):
        director.load_state(settings, "d1")


def test_removing_backends(tmp_path):
    state = two_backends()
    assert [b.name for b in state.without_backend("web-1").backends] == ["web-2"]
    with pytest.raises(NotFound, match="no backend named web-9"):
        state.without_backend("web-9")
    with pytest.raises(BadInput, match="at least one non-backup backend"):
        state.without_backend("web-1").without_backend("web-2")
    with pytest.raises(BadInput, match="already has a backend named web-1"):
        state.with_backend(director.Backend("web-1", "h", 1))


def test_rendered_config_has_checks_retries_and_backup(state_dir, haproxy):
    settings = load_settings(environ={}, toml_path=None, overrides={"state_dir": state_dir})
    files = director.director_files(settings, "d1")
    state = two_backends(stats_port=9000).with_backend(
        director.Backend("spare", "127.0.0.1", 8003, backup=True)
    )
    text = render_config(state, files)
    for line in (
        "mode http",
        "option httpchk GET /healthz",
        "http-check expect status 200",
        "default-server inter 300ms fastinter 100ms fall 2 rise 2",
        "timeout connect 200ms",
        "retries 2",
        "option redispatch 1",
        "retry-on conn-failure empty-response junk-response",
        "http-request disable-l7-retry unless METH_GET",
        "option forwardfor",
        "balance roundrobin",
        "http-reuse never",
        "bind 127.0.0.1:8080",
        "bind 127.0.0.1:9000",
        "stats uri /stats",
        f"stats socket {files.stats_socket} mode 600 level admin",
        "server web-1 127.0.0.1:8001 check",
        "server spare 127.0.0.1:8003 check backup",
    ):
        assert line in text.splitlines() or f"    {line}" in text.splitlines(), line
    assert "frontend stats" not in render_config(two_backends(), files)
    path = state_dir / "haproxy.cfg"
    path.write_text(text)
    check_config(path)  # HAProxy itself accepts it


def test_socket_paths_too_long_are_refused(tmp_path):
    settings = load_settings(
        environ={}, toml_path=None, overrides={"state_dir": tmp_path / ("x" * 100)}
    )
    with pytest.raises(ConfigError, match="shorter MOVIEREC_STATE_DIR"):
        render_config(two_backends(), director.director_files(settings, "d1"))


def test_show_proc_and_show_stat_parse():
    info = parse_show_proc(
        "#<PID>          <type>          <reloads>       <uptime>        <version>\n"
        "100             master          3 [failed: 1]   0d00h00m08s     2.6.12\n"
        "# workers\n"
        "102             worker          0               0d00h00m01s     2.6.12\n"
        "# old workers\n"
        "101             worker          1               0d00h00m08s     2.6.12\n"
        "# programs\n\n"
    )
    assert (info.pid, info.reloads, info.failed_reloads) == (100, 3, 1)
    assert (info.workers, info.old_workers) == ((102,), (101,))
    stats = parse_show_stat(
        "# pxname,svname,scur,stot,status,bck,check_status,req_tot,addr,\n"
        "web,FRONTEND,0,9,OPEN,,,9,,\n"
        "web,a,2,7,UP,0,L7OK,7,127.0.0.1:1,\n"
        "web,b,0,2,DOWN,1,L4CON,2,127.0.0.1:2,\n"
        "web,BACKEND,2,9,UP,0,,9,,\n"
    )
    assert [(s.name, s.status, s.up, s.backup, s.sessions, s.requests) for s in stats] == [
        ("a", "UP", True, False, 2, 7),
        ("b", "DOWN", False, True, 0, 2),
    ]
