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
import json
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from movierec.errors import ConfigError
from movierec.redact import SECRET_SETTINGS, redact, url_has_password

ENV_PREFIX = "MOVIEREC_"
POSTGRES_SCHEMES = ("postgresql", "postgresql+psycopg", "postgres")


@dataclass(frozen=True)
class Settings:
    """Resolved configuration. Field names map to ``MOVIEREC_<NAME>`` and to TOML keys."""

    database_url: str | None = None
    replica_url: str | None = None
    # The owner's URL for the operator's dashboard on the instances that serve it to admins
    # (db status, history and its rollback); unset, those panels say so and act on nothing.
    # The site's own role (database_url) never gets these powers: see SECURITY.md.
    admin_database_url: str | None = None
    ai_urls: tuple[str, ...] = ("http://127.0.0.1:8101",)
    ai_timeout: float = 2.0
    # The model sharded by movie: one group of replica URLs per shard, "a1,a2;b1,b2" (or a
    # TOML list of lists). When set, the web side fans out to every shard and ai_urls is unused.
    ai_shards: tuple[tuple[str, ...], ...] = ()
    secret_key: str | None = None
    # The bearer key the recommender servers demand and the web instances send (every
    # endpoint but /health); `movierec cluster up` and the demo generate one.
    ai_key: str | None = None
    model_dir: Path = Path(".state/models")
    state_dir: Path = Path(".state")
    web_host: str = "127.0.0.1"
    web_port: int = 8000
    ai_host: str = "127.0.0.1"
    ai_port: int = 8101
    web_workers: int = 2
    web_cache_mb: int = 64  # per web worker process: hot movies, searches, recommendations
    instance_name: str = ""  # e.g. web-1: labels /metrics (the local cluster sets it)
    ai_workers: int = 1
    statement_timeout_ms: int = 5000
    # Seconds a request waits for the primary when the database switch turns its connection
    # away (a switchover under way), before a 503; 0 = fail at once (movierec.db.primary_wait).
    database_connect_wait: float = 8.0
    github_client_id: str | None = None
    github_client_secret: str | None = None
    google_client_id: str | None = None
    google_client_secret: str | None = None
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = None
    oidc_title: str = "OpenID Connect"  # the provider's name on the login page
    google_issuer: str = "https://accounts.google.com"  # Google is discovered as an OIDC issuer
    web_secure_cookies: bool = False  # served over HTTPS: Secure cookies and HSTS
    web_proxy_count: int = 0  # proxies in front whose X-Forwarded-For/-Proto are trusted
    ratelimit_storage_uri: str = "memory://"  # e.g. redis://127.0.0.1:6379 (shared by workers)
    ratelimit_login: str = "10 per minute"  # failed logins per IP
    ratelimit_signup: str = "10 per hour"  # sign-ups per IP
    # Per account: this many failed logins are free, then each further attempt from an unknown
    # device or address waits twice as long as the one before (1 s, 2 s, ...), at most
    # login_delay_max seconds (see movierec.web.auth.throttle).
    login_free_failures: int = 5
    login_delay_max: int = 300
    # A login session ends after this long without a request, and this long after the login
    # whatever happens (ASVS L2: 30 minutes idle, 12 hours absolute).
    session_idle_minutes: int = 30
    session_lifetime_hours: int = 12
    # Personal API tokens: the lifetime when none is chosen, and the longest one may ask for.
    api_token_days: int = 90
    api_token_max_days: int = 365
    debug: bool = False
    # Models: which algorithm `movierec model train|refresh` uses per kind ("auto" = the EASE +
    # ALS blend up to ease_max_items movies, the SANSA + ALS blend up to sansa_max_items, ALS
    # above: movierec.ai.algorithms.choose_ranking_algo has the measurements), their
    # hyper-parameters ({algo: {param: value}}, a TOML table or JSON in MOVIEREC_ALGO_PARAMS),
    # and how often `model refresh --every` runs.
    ranking_algo: str = "auto"
    rating_algo: str = "svd"
    ease_max_items: int = 20_000
    sansa_max_items: int = 20_000
    # Training past one machine (`model train --engine spark`): the Spark master (local[*],
    # spark://host:7077, yarn, k8s://...) and where the Parquet ratings snapshot is written
    # ("" = state_dir/snapshots; on a cluster, storage every executor reads).
    spark_master: str = "local[*]"
    spark_snapshot_dir: str = ""
    model_refresh_interval: float = 0.0
    algo_params: Mapping[str, Any] = field(default_factory=dict)
    # Recommender serving at scale (see movierec.ai.server): an ANN index (faiss IVF) is built
    # at train time for factor models (SVD, ALS) with more than ann_min_items movies and
    # searched probing ann_nprobe lists (0 = always score exhaustively); ai_shard "i/n" makes
    # an AI instance keep and serve only the movies with movie_id % n == i; per worker: a
    # per-user result cache of ai_cache_users entries kept ai_cache_ttl seconds (0 = off) and
    # the vectors of the most rated movies, up to ai_hot_mb, copied out of the mmapped model;
    # ai_blas_threads BLAS threads per AI worker process (the worker processes are the
    # parallelism; more oversubscribes the cores: 36 instead of 302 requests/s measured).
    ann_min_items: int = 100_000
    ann_nprobe: int = 32
    ai_shard: str = ""
    ai_cache_users: int = 10_000
    ai_cache_ttl: float = 300.0
    ai_hot_mb: int = 16
    ai_blas_threads: int = 1
    # Online evaluation: the fraction of users whose recommendation lists the site records
    # when it computes them (chosen by user id; 0 = none): one small row per fresh list.
    impression_sample: float = 0.25
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
        if kind == "tuple[tuple[str, ...], ...]":
            groups = raw.split(";") if isinstance(raw, str) else list(raw)
            split = [g.split(",") if isinstance(g, str) else list(g) for g in groups]
            shards = (tuple(str(u).strip() for u in group if str(u).strip()) for group in split)
            return tuple(shard for shard in shards if shard)
        if kind == "tuple[str, ...]":
            items = raw.split(",") if isinstance(raw, str) else list(raw)
            return tuple(str(i).strip() for i in items if str(i).strip())
        if kind == "Mapping[str, Any]":
            value = json.loads(raw) if isinstance(raw, str) else raw
            if not isinstance(value, Mapping) or not all(
                isinstance(v, Mapping) for v in value.values()
            ):
                raise ValueError("expected {algorithm: {parameter: value}}")
            return {str(k): dict(v) for k, v in value.items()}
        if raw is None:
            return None
        return str(raw)
    except (TypeError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
        problems.append(f"{name}: {raw!r} is malformed ({exc})")
        return _FIELDS[name].default


def _validate(values: dict[str, Any], problems: list[str]) -> None:
    for name in ("database_url", "replica_url", "admin_database_url"):
        if values.get(name):
            problems.extend(_url_problems(name, values[name], POSTGRES_SCHEMES))
    for url in (*values.get("ai_urls", ()), *(u for g in values.get("ai_shards", ()) for u in g)):
        problems.extend(_url_problems("ai_urls", url, ("http", "https")))
    for name in ("web_port", "ai_port"):
        if not 0 < values[name] < 65536:
            problems.append(f"{name}: {values[name]} is not a TCP port")
    if not 0.0 <= values["impression_sample"] <= 1.0:
        problems.append("impression_sample: must be a fraction from 0 to 1")
    if values["web_proxy_count"] < 0:
        problems.append("web_proxy_count: must not be negative")
    if values["web_cache_mb"] < 0:
        problems.append("web_cache_mb: must not be negative (0 turns the web caches off)")
    for name in (
        "web_workers", "ai_workers", "statement_timeout_ms", "session_idle_minutes",
        "session_lifetime_hours", "api_token_days", "login_delay_max",
    ):  # fmt: skip
        if values[name] < 1:
            problems.append(f"{name}: must be at least 1")
    if values["api_token_days"] > values["api_token_max_days"]:
        problems.append("api_token_days: must not exceed api_token_max_days")
    if values["login_free_failures"] < 1:
        problems.append("login_free_failures: must be at least 1")
    if values["database_connect_wait"] < 0:
        problems.append("database_connect_wait: must not be negative (0 = no waiting)")
    if values["ai_timeout"] <= 0:
        problems.append("ai_timeout: must be positive")
    for name in ("ease_max_items", "sansa_max_items"):
        if values[name] < 1:
            problems.append(f"{name}: must be at least 1")
    if values["model_refresh_interval"] < 0:
        problems.append("model_refresh_interval: must not be negative (0 = off)")
    for name in ("ann_min_items", "ann_nprobe", "ai_cache_users", "ai_hot_mb", "ai_blas_threads"):
        if values[name] < 0:
            problems.append(f"{name}: must not be negative")
    if values["ai_cache_ttl"] < 0:
        problems.append("ai_cache_ttl: must not be negative (0 = no per-user cache)")
    shard = values["ai_shard"].strip()
    found = re.fullmatch(r"(\d{1,4})/(\d{1,4})", shard)
    if shard and not (found and int(found[1]) < int(found[2])):
        problems.append(f"ai_shard: {shard!r} is not i/n with 0 <= i < n (e.g. 0/4)")


def _url_problems(name: str, url: str, schemes: tuple[str, ...]) -> list[str]:
    """What is wrong with ``url`` (nothing: []). Parsed here, once at start-up, so that a
    malformed host or port is a configuration error rather than a traceback from whichever
    command first connects. The URL is quoted without its password."""
    shown = repr(redact(url))
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - reading it checks it: a number from 0 to 65535
    except ValueError as exc:
        return [f"{name}: {shown} is malformed ({exc})"]
    if parts.scheme not in schemes:
        return [f"{name}: {shown} is not a {schemes[0]}:// URL"]
    if schemes != POSTGRES_SCHEMES and not parts.hostname:
        return [f"{name}: {shown} names no host"]
    return []


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
    _check_private(path, section, problems)
    return {k: v for k, v in section.items() if k in _FIELDS}


def _check_private(path: Path, section: Mapping[str, Any], problems: list[str]) -> None:
    """Refuse a settings file that holds secrets and that others may read: whoever can read
    it can sign session cookies, call the recommenders or log in to the database."""
    secrets = sorted(
        name
        for name, value in section.items()
        if value
        and (name in SECRET_SETTINGS or (name.endswith("_url") and url_has_password(str(value))))
    )
    mode = stat.S_IMODE(path.stat().st_mode)
    if secrets and mode & 0o077:
        problems.append(
            f"{path}: holds secrets ({', '.join(secrets)}) but other users may read or change "
            f"it (mode {mode:04o}); run `chmod 600 {path}`"
        )


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
        # A malformed URL is quoted back with its password hidden.
        raise ConfigError(redact("bad configuration: " + "; ".join(problems)))
    return Settings(**values)
