"""Honest exits: a malformed setting or an unreachable database is one line on stderr and exit
status 1 from any command; never a traceback, never a password, never a success."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from movierec.cli.main import app
from movierec.db.local_server import free_port

COMMANDS = [["db", "status"], ["db", "init"], ["db", "history", "list"], ["model", "list"]]
MALFORMED = [
    ("MOVIEREC_DATABASE_URL", "postgresql://[broken", "database_url"),
    ("MOVIEREC_DATABASE_URL", "postgresql://ann:s3cret@db.example:abc/movierec", "database_url"),
    ("MOVIEREC_DATABASE_URL", "postgresql://ann:s3cret@db.example:99999/movierec", "database_url"),
    ("MOVIEREC_REPLICA_URL", "postgresql://ann:s3cret@[::1/movierec", "replica_url"),
    ("MOVIEREC_AI_URLS", "http://[broken", "ai_urls"),
    ("MOVIEREC_AI_URLS", "http://127.0.0.1:port", "ai_urls"),
]


def _one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
@pytest.mark.parametrize(("variable", "value", "name"), MALFORMED)
def test_a_malformed_url_is_one_line_naming_the_setting(
    monkeypatch, tmp_path, command, variable, value, name
):
    monkeypatch.setenv("MOVIEREC_DATABASE_URL", "postgresql://u@127.0.0.1:1/x")
    monkeypatch.setenv("MOVIEREC_STATE_DIR", str(tmp_path))
    monkeypatch.setenv(variable, value)
    line = _one_line_error(CliRunner().invoke(app, command))
    assert name in line
    assert "s3cret" not in line  # the password is never printed


def test_db_status_without_a_database_url_fails(monkeypatch, tmp_path):
    monkeypatch.delenv("MOVIEREC_DATABASE_URL", raising=False)
    monkeypatch.setenv("MOVIEREC_STATE_DIR", str(tmp_path))
    line = _one_line_error(CliRunner().invoke(app, ["db", "status"]))
    assert "MOVIEREC_DATABASE_URL" in line


def test_db_status_with_the_database_down_fails(monkeypatch, tmp_path):
    monkeypatch.setenv("MOVIEREC_DATABASE_URL", f"postgresql://u@127.0.0.1:{free_port()}/x")
    monkeypatch.setenv("MOVIEREC_STATE_DIR", str(tmp_path))
    line = _one_line_error(CliRunner().invoke(app, ["db", "status"]))
    assert "the primary is unreachable: " in line  # which server, and why
