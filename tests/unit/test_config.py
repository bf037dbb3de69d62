"""Settings: sources in order, every problem reported at once."""

from pathlib import Path

import pytest

from movierec.config import load_settings
from movierec.errors import ConfigError


def test_environment_overrides_toml(tmp_path):
    toml = tmp_path / "movierec.toml"
    toml.write_text('[movierec]\nweb_port = 9000\nai_urls = ["http://a:1", "http://b:2"]\n')
    s = load_settings(environ={"MOVIEREC_WEB_PORT": "9100"}, toml_path=toml)
    assert s.web_port == 9100
    assert s.ai_urls == ("http://a:1", "http://b:2")


def test_all_problems_reported_together():
    with pytest.raises(ConfigError) as err:
        load_settings(
            environ={"MOVIEREC_WEB_PORT": "eighty", "MOVIEREC_DATABASE_URL": "mysql://x/y"},
            toml_path=None,
        )
    assert "web_port" in str(err.value) and "database_url" in str(err.value)


def test_malformed_toml_is_a_config_error(tmp_path):
    bad = tmp_path / "movierec.toml"
    bad.write_text("web_port = = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(environ={}, toml_path=bad)


def test_unknown_toml_key_is_reported(tmp_path):
    toml = tmp_path / "movierec.toml"
    toml.write_text("wbe_port = 3\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        load_settings(environ={}, toml_path=toml)


def test_require_names_the_variable():
    s = load_settings(environ={}, toml_path=None)
    with pytest.raises(ConfigError, match="MOVIEREC_SECRET_KEY"):
        s.require("secret_key")
    assert s.model_dir == Path(".state/models")


@pytest.mark.parametrize("value", ["1.5", "-0.1"])
def test_the_impression_sample_is_a_fraction(value):
    with pytest.raises(ConfigError, match="impression_sample: must be a fraction from 0 to 1"):
        load_settings(environ={"MOVIEREC_IMPRESSION_SAMPLE": value}, toml_path=None)


def test_the_dashboards_owner_url_is_checked_like_the_others():
    with pytest.raises(ConfigError, match="admin_database_url"):
        load_settings(environ={"MOVIEREC_ADMIN_DATABASE_URL": "mysql://x/y"}, toml_path=None)


def test_the_wait_for_a_switched_primary_is_a_number_of_seconds():
    env = {"MOVIEREC_DATABASE_CONNECT_WAIT": "2.5"}
    assert load_settings(environ=env, toml_path=None).database_connect_wait == 2.5
    with pytest.raises(ConfigError, match="database_connect_wait: must not be negative"):
        load_settings(environ={"MOVIEREC_DATABASE_CONNECT_WAIT": "-1"}, toml_path=None)
