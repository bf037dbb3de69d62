"""The CLI's root: every group and command has --help, settings errors are one line with exit
status 1."""

import socket

import pytest
import typer
from typer.testing import CliRunner

from movierec.cli.main import app


def command_paths(command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every group and command under ``command`` (typer's click command), as the words that
    name it; read from the app itself, so that a group or command added is checked without a
    word here. A group is what has sub-commands (typer brings click's classes of its own)."""
    found = [path] if path else []
    for name, sub in (getattr(command, "commands", None) or {}).items():
        found += command_paths(sub, (*path, name))
    return found


PATHS = command_paths(typer.main.get_command(app))


def test_the_paths_are_read_from_the_app():
    """Every group the README lists is found (and with it, their commands)."""
    groups = {" ".join(p) for p in PATHS if len(p) <= 2}
    for group in ("db", "db partitions", "db replica", "db history", "data", "model", "serve",
                  "backup", "director", "cluster", "demo"):  # fmt: skip
        assert group in groups
    assert ("db", "partitions", "place") in PATHS and len(PATHS) > 50


@pytest.mark.parametrize("path", PATHS, ids=" ".join)
def test_every_group_and_command_has_help(path):
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output and path[-1] in result.output


def test_missing_database_url_is_one_line(monkeypatch):
    monkeypatch.delenv("MOVIEREC_DATABASE_URL", raising=False)
    result = CliRunner().invoke(app, ["db", "init"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "error: missing setting(s): MOVIEREC_DATABASE_URL (environment or movierec.toml)"
    ]


def test_malformed_setting_is_one_line(monkeypatch):
    monkeypatch.setenv("MOVIEREC_WEB_PORT", "eighty")
    result = CliRunner().invoke(app, ["db", "init"])
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "web_port" in result.stderr


def test_db_init_creates_schema_and_is_idempotent(pg_server, monkeypatch):
    url = pg_server.create_database("cli_init")
    monkeypatch.setenv("MOVIEREC_DATABASE_URL", url)
    for _ in range(2):
        result = CliRunner().invoke(app, ["db", "init"])
        assert result.exit_code == 0, result.output
        assert "ratings" in result.stdout and "movies" in result.stdout


def test_unreachable_database_is_one_line(monkeypatch):
    monkeypatch.setenv("MOVIEREC_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/none")
    result = CliRunner().invoke(app, ["db", "init"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: database unavailable")
    assert len(result.stderr.strip().splitlines()) == 1


def test_serve_refuses_a_port_another_server_listens_on(monkeypatch, tmp_path):
    """gunicorn's workers listen with SO_REUSEPORT, which would let a second server share the
    port (and half its connections) without a word: serve checks first."""
    monkeypatch.setenv("MOVIEREC_MODEL_DIR", str(tmp_path))
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["serve", "ai", "--port", str(port)])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: 127.0.0.1:{port} is in use; pick another --port or stop what listens there"
    )
