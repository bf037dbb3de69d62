"""Secrets never reach a terminal, a log or a readable settings file (issue 19, item 12)."""

from __future__ import annotations

import logging
import logging.config

import pytest
from typer.testing import CliRunner

from movierec.cli.main import app
from movierec.config import load_settings
from movierec.errors import ConfigError
from movierec.redact import redact
from movierec.serving import LOGGING

PASSWORD = "hunter2-Secret"


@pytest.mark.parametrize(
    "url",
    [
        f"mysql://admin:{PASSWORD}@db.example/movies",  # not postgresql://
        f"postgresql://admin:{PASSWORD}@db.example:not-a-port/movies",
        f"postgres ql://admin:{PASSWORD}@db.example/movies",
    ],
)
def test_a_malformed_database_url_is_reported_without_its_password(url):
    with pytest.raises(ConfigError) as err:
        load_settings(environ={"MOVIEREC_DATABASE_URL": url}, toml_path=None)
    if "database_url" in str(err.value):
        assert PASSWORD not in str(err.value)
        assert "admin:***@" in str(err.value)


def test_the_cli_one_liner_hides_the_password(monkeypatch):
    monkeypatch.setenv("MOVIEREC_DATABASE_URL", f"mysql://admin:{PASSWORD}@db.example/x")
    result = CliRunner().invoke(app, ["db", "init"])
    assert result.exit_code == 1
    assert "database_url" in result.stderr
    assert PASSWORD not in result.stderr and PASSWORD not in result.output


def test_an_unreachable_database_with_a_password_is_one_line_without_it(monkeypatch):
    monkeypatch.setenv("MOVIEREC_DATABASE_URL", f"postgresql://u:{PASSWORD}@127.0.0.1:1/none")
    result = CliRunner().invoke(app, ["db", "init"])
    assert result.exit_code == 1
    assert PASSWORD not in result.stderr


@pytest.mark.parametrize(
    "text",
    [
        f"postgresql://u:{PASSWORD}@h/db",
        f"postgresql+psycopg://u:{PASSWORD}@h:5432/db?sslmode=require",
        f"redis://:{PASSWORD}@127.0.0.1:6379/0",
        f"host=h password={PASSWORD} user=u",
        f"host=h password='{PASSWORD} x' user=u",
        f"'postgresql://u:{PASSWORD}@x@h/db'",  # an unescaped "@" in the password
    ],
)
def test_redact_hides_url_and_keyword_passwords(text):
    assert PASSWORD not in redact(text)
    assert "***" in redact(text)


def test_redact_leaves_urls_without_a_password_alone():
    for text in ("http://127.0.0.1:8101/health", "postgresql://u@h:5432/db"):
        assert redact(text) == text


def test_server_logs_go_through_the_redacting_handler(capfd):
    """The logging set-up `movierec serve` hands gunicorn, applied as gunicorn applies it."""
    previous = logging.root.handlers[:]
    try:
        logging.config.dictConfig(LOGGING)
        logging.getLogger("movierec.test").warning(
            "cannot reach %s", f"postgresql://web:{PASSWORD}@127.0.0.1:1/db"
        )
        try:
            raise RuntimeError(f"connect to postgresql://web:{PASSWORD}@h/db failed")
        except RuntimeError:
            logging.getLogger("gunicorn.error").exception("worker failed")
        for handler in logging.root.handlers:
            handler.flush()
        err = capfd.readouterr().err
    finally:
        logging.root.handlers[:] = previous
    assert "cannot reach postgresql://web:***@127.0.0.1:1/db" in err
    assert "worker failed" in err and "RuntimeError" in err
    assert PASSWORD not in err


def _toml(tmp_path, text: str, mode: int):
    path = tmp_path / "movierec.toml"
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.mark.parametrize(
    "text",
    [
        '[movierec]\nsecret_key = "s3cret"\n',
        '[movierec]\noidc_client_secret = "s3cret"\n',
        '[movierec]\nai_key = "s3cret"\n',
        f'[movierec]\ndatabase_url = "postgresql://u:{PASSWORD}@h/db"\n',
    ],
)
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_settings_file_with_secrets_that_others_can_read_is_refused(tmp_path, text, mode):
    path = _toml(tmp_path, text, mode)
    with pytest.raises(ConfigError, match="chmod 600") as err:
        load_settings(environ={}, toml_path=path)
    assert PASSWORD not in str(err.value) and "s3cret" not in str(err.value)


def test_a_private_settings_file_with_secrets_is_read(tmp_path):
    path = _toml(tmp_path, '[movierec]\nsecret_key = "s3cret"\n', 0o600)
    assert load_settings(environ={}, toml_path=path).secret_key == "s3cret"


def test_a_readable_settings_file_without_secrets_is_read(tmp_path):
    text = '[movierec]\nweb_port = 9000\ndatabase_url = "postgresql://u@h/db"\n'
    path = _toml(tmp_path, text, 0o644)
    assert load_settings(environ={}, toml_path=path).web_port == 9000
