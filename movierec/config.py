"""One settings object for every part of movierec.

Sources, later ones winning: built-in defaults, a TOML file (``MOVIEREC_CONFIG`` or
``./movierec.toml`` when it exists), ``MOVIEREC_*`` environment variables, then an explicit
mapping (tests). Every problem found is reported together in one :class:`ConfigError`.
Settings a command needs but that have no default (the database URL, the secret key) are
checked where they are used, with :meth:`Settings.require`, so that ``movierec --help`` works
on an unconfigured machine.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from movierec.errors import ConfigError

ENV_PREFIX = "MOVIEREC_"


@dataclass(frozen=True)
class Settings:
    """Resolved configuration. Field names map to ``MOVIEREC_<NAME>`` and to TOML keys."""

    database_url: str | None = None
    replica_url: str | None = None
    ai_urls: tuple[str, ...] = ("http://127.0.0.1:8101",)
    ai_timeout: float = 2.0
    secret_key: str | None = None
    model_dir: Path = Path(".state/models")
    state_dir: Path = Path(".state")
    web_host: str = "127.0.0.1"
    web_port: int = 8000
    ai_host: str = "127.0.0.1"
    ai_port: int = 8101
    web_workers: int = 2
    ai_workers: int = 1
    statement_timeout_ms: int = 5000
    github_client_id: str | None = None
    github_client_secret: str | None = None
    google_client_id: str | None = None
    google_client_secret: str | None = None
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = None
    debug: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    def require(self, *names: str) -> None:
        """Raise :class:`ConfigError` naming every one of ``names`` that is unset."""
        missing = [n for n in names if getattr(self, n) in (None, "", ())]
        if missing:
            hints = ", ".join(f"{ENV_PREFIX}{n.upper()}" for n in missing)
            raise ConfigError(f"missing setting(s): {hints} (environment or movierec.toml)")

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied and validated."""
        return load_settings(environ={}, toml_path=None, overrides={**self.as_dict(), **changes})

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


_FIELDS = {f.name: f for f in fields(Settings)}


def _coerce(name: str, raw: Any, problems: list[str]) -> Any:
    """Turn a raw value (string from env, or TOML value) into the field's type."""
    kind = _FIELDS[name].type
    try:
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off", ""):
                return False
            raise ValueError("expected true/false")
        if kind == "int":
            if isinstance(raw, bool):
                raise ValueError("expected an integer")
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "Path":
            return Path(raw)
        if kind == "tuple[str, ...]":
            items = raw.split(",") if isinstance(raw, str) else list(raw)
            return tuple(str(i).strip() for i in items if str(i).strip())
        if raw is None:
            return None
        return str(raw)
    except (TypeError, ValueError) as exc:
        problems.append(f"{name}: {raw!r} is malformed ({exc})")
        return _FIELDS[name].default


def _validate(values: dict[str, Any], problems: list[str]) -> None:
    for name in ("database_url", "replica_url"):
        url = values.get(name)
        if url and urlparse(url).scheme not in ("postgresql", "postgresql+psycopg", "postgres"):
            problems.append(f"{name}: {url!r} is not a postgresql:// URL")
    for url in values.get("ai_urls", ()):
        if urlparse(url).scheme not in ("http", "https") or not urlparse(url).netloc:
            problems.append(f"ai_urls: {url!r} is not an http(s) URL")
    for name in ("web_port", "ai_port"):
        if not 0 < values[name] < 65536:
            problems.append(f"{name}: {values[name]} is not a TCP port")
    for name in ("web_workers", "ai_workers", "statement_timeout_ms"):
        if values[name] < 1:
            problems.append(f"{name}: must be at least 1")
    if values["ai_timeout"] <= 0:
        problems.append("ai_timeout: must be positive")


def _read_toml(path: Path, problems: list[str]) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        problems.append(f"{path}: cannot read ({exc.strerror})")
        return {}
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"{path}: not valid TOML ({exc})")
        return {}
    section = data.get("movierec", data)
    unknown = sorted(set(section) - set(_FIELDS))
    if unknown:
        problems.append(f"{path}: unknown setting(s) {', '.join(unknown)}")
    return {k: v for k, v in section.items() if k in _FIELDS}


def load_settings(
    environ: Mapping[str, str] | None = None,
    toml_path: Path | str | None | bool = True,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Resolve settings from defaults, TOML, environment and ``overrides``.

    ``toml_path=True`` means "``MOVIEREC_CONFIG`` or ./movierec.toml if present"; ``None``
    skips the file. Raises :class:`ConfigError` listing every malformed or unknown setting.
    """
    environ = os.environ if environ is None else environ
    problems: list[str] = []
    raw: dict[str, Any] = {}
    if toml_path is True:
        explicit = environ.get(f"{ENV_PREFIX}CONFIG")
        toml_path = Path(explicit) if explicit else Path("movierec.toml")
        if not explicit and not toml_path.exists():
            toml_path = None
    if toml_path:
        raw.update(_read_toml(Path(toml_path), problems))
    for name in _FIELDS:
        env_name = f"{ENV_PREFIX}{name.upper()}"
        if env_name in environ and name != "extra":
            raw[name] = environ[env_name]
    raw.update(overrides or {})
    values = {f.name: f.default for f in fields(Settings) if f.default is not dataclasses.MISSING}
    values["extra"] = {}
    for name, value in raw.items():
        if name not in _FIELDS:
            problems.append(f"{name}: unknown setting")
            continue
        values[name] = value if name == "extra" else _coerce(name, value, problems)
    _validate(values, problems)
    if problems:
        raise ConfigError("bad configuration: " + "; ".join(problems))
    return Settings(**values)
