"""pgBackRest as a subprocess: its configuration file and one runner for its commands.

The configuration is rendered from ``ops/pgbackrest/*.template`` into
``<state_dir>/pgbackrest/pgbackrest.conf``: a ``[global]`` part (repository, retention, log and
lock paths) and one stanza per PostgreSQL server. It is re-rendered before every operation
because a :class:`LocalPostgres` gets a new Unix socket directory each time it starts.

pgBackRest must run as the ``postgres`` OS user when we are root (it reads the data directory
and connects through the socket as that user), so everything under ``<state_dir>/pgbackrest``
belongs to that user.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

from movierec.db.local_server import LocalPostgres
from movierec.db.tools import (
    SERVER_USER,
    check_server_user_can_enter,
    run_as_server_user,
    running_as_root,
)
from movierec.errors import ConfigError, OpsCommandFailed

OPS_DIR = Path(__file__).resolve().parents[2] / "ops" / "pgbackrest"
PGBACKREST = "/usr/bin/pgbackrest"
DEFAULT_RETENTION_FULL = 2


@dataclass(frozen=True)
class BackupServer:
    """One PostgreSQL server under backup: its stanza name and the server itself.

    For a group Patroni runs, ``server`` is its primary now and ``members`` every member:
    the stanza names them all (pg1, pg2, ...) and pgBackRest backs up from, and archives
    from, whichever is the primary, so backups follow a failover.
    """

    name: str
    server: LocalPostgres
    members: tuple[LocalPostgres, ...] = ()

    @property
    def managed(self) -> bool:
        """Whether Patroni runs it (it starts, stops and configures the members)."""
        return bool(self.members)


@dataclass(frozen=True)
class BackupConfig:
    """Where pgBackRest keeps its files, and how many full backups it keeps."""

    base_dir: Path
    repo_path: Path | None = None
    retention_full: int = DEFAULT_RETENTION_FULL
    process_max: int = max(1, min(4, os.cpu_count() or 1))

    @property
    def conf_file(self) -> Path:
        return self.base_dir / "pgbackrest.conf"

    @property
    def repo(self) -> Path:
        return self.repo_path or self.base_dir / "repo"

    @property
    def include_path(self) -> Path:
        """An empty directory: pgBackRest would otherwise read /etc/pgbackrest/conf.d."""
        return self.base_dir / "conf.d"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "log"

    @property
    def lock_path(self) -> Path:
        return self.base_dir / "lock"


def archive_command(config: BackupConfig, stanza: str, pg_path: str | None = None) -> str:
    """The ``archive_command`` that pushes each finished WAL segment into the repository.

    ``pg_path``: the pushing server's data directory, for a stanza naming several (a Patroni
    group's members): pgBackRest checks that it runs in its stanza's pg1-path.
    """
    conf = shlex.quote(str(config.conf_file))
    path = f" --pg1-path={shlex.quote(pg_path)}" if pg_path else ""
    return f"{PGBACKREST} --config={conf} --stanza={shlex.quote(stanza)}{path} archive-push %p"


def _template(name: str) -> Template:
    path = OPS_DIR / name
    try:
        return Template(path.read_text())
    except OSError as exc:
        raise ConfigError(f"pgBackRest template {path} is missing ({exc.strerror})") from exc


def _conf_value(value: object) -> str:
    """A value for pgbackrest.conf; a newline would start a new option, so refuse it."""
    text = str(value)
    if "\n" in text or "\r" in text:
        raise ConfigError(f"pgBackRest setting {text!r} contains a line break")
    return text


def render_config(config: BackupConfig, servers: list[BackupServer]) -> str:
    """The text of pgbackrest.conf for ``servers``.

    Raises :class:`ConfigError` when a template is missing, two servers share a stanza name,
    or a server has never been started (no port or socket directory is known).
    """
    names = [s.name for s in servers]
    if len(set(names)) != len(names):
        raise ConfigError(f"stanza names must be unique, got {', '.join(names)}")
    stanza, host = _template("stanza.conf.template"), _template("pg-host.conf.template")
    blocks = []
    for item in servers:
        hosts = []
        for index, server in enumerate(item.members or (item.server,), start=1):
            if not server.info_file.exists():
                raise ConfigError(
                    f"server {item.name!r} at {server.state_dir} has never been started"
                )
            info = json.loads(server.info_file.read_text())
            hosts.append(
                host.substitute(
                    index=index,
                    data_dir=_conf_value(server.data_dir.resolve()),
                    port=_conf_value(info["port"]),
                    socket_dir=_conf_value(info["socket_dir"]),
                ).rstrip("\n")
            )
        blocks.append(stanza.substitute(name=_conf_value(item.name), hosts="\n".join(hosts)))
    return _template("pgbackrest.conf.template").substitute(
        repo_path=_conf_value(config.repo.resolve()),
        retention_full=_conf_value(int(config.retention_full)),
        log_path=_conf_value(config.log_path.resolve()),
        lock_path=_conf_value(config.lock_path.resolve()),
        process_max=_conf_value(int(config.process_max)),
        stanzas="\n".join(blocks),
    )


def write_config(config: BackupConfig, servers: list[BackupServer]) -> Path:
    """Render pgbackrest.conf and create the repository, log and lock directories.

    The file is replaced atomically: the servers' archive_command may read it at any moment.
    Raises :class:`ConfigError` (see :func:`render_config`) or :class:`OpsCommandFailed` when
    the postgres OS user could not reach the directory.
    """
    if config.retention_full < 1:
        raise ConfigError("backup retention must keep at least 1 full backup")
    text = render_config(config, servers)
    for path in (
        config.base_dir,
        config.repo,
        config.log_path,
        config.lock_path,
        config.include_path,
    ):
        path.mkdir(parents=True, exist_ok=True, mode=0o750)
        _give_to_server_user(path)
    check_server_user_can_enter(config.base_dir)
    tmp = config.conf_file.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.chmod(0o640)
    _give_to_server_user(tmp)
    tmp.replace(config.conf_file)
    return config.conf_file


def _give_to_server_user(path: Path) -> None:
    if running_as_root():
        os.chown(path, *_server_ids())


def _server_ids() -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam(SERVER_USER)
    return entry.pw_uid, entry.pw_gid


def run_pgbackrest(
    config: BackupConfig, command: str, args: list[str] | None = None, timeout: float = 600.0
) -> str:
    """Run ``pgbackrest <command> [args]`` with our configuration and return its stdout.

    Raises :class:`OpsCommandFailed` with the exit code and the end of stderr on failure or
    timeout, or when pgBackRest is not installed.
    """
    if not Path(PGBACKREST).exists():
        raise OpsCommandFailed(f"{PGBACKREST} not found; install the Debian package pgbackrest")
    argv = [
        PGBACKREST,
        f"--config={config.conf_file}",
        # Only our file: /etc/pgbackrest/conf.d may describe other clusters.
        f"--config-include-path={config.include_path}",
        *(args or []),
        command,
    ]
    return run_as_server_user(f"pgbackrest {command}", argv, timeout)


def info(config: BackupConfig, stanza: str | None = None) -> list[dict[str, Any]]:
    """``pgbackrest info --output=json``: one dict per stanza (see pgBackRest's JSON format).

    Raises :class:`OpsCommandFailed` when pgBackRest fails or prints something not JSON.
    """
    args = ["--output=json", *([f"--stanza={stanza}"] if stanza else [])]
    out = run_pgbackrest(config, "info", args, timeout=120)
    try:
        return json.loads(out)
    except json.JSONDecodeError as exc:
        raise OpsCommandFailed(f"pgbackrest info printed no JSON: {out[:200]!r}") from exc
