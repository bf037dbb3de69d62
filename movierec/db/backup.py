"""Backups of every PostgreSQL server with pgBackRest, and named restore points across them.

Each server is one stanza. A backup covers all of them, one after the other, and ends with a
named restore point created on every server: rows on the primary and on shard servers
(postgres_fdw) only agree when all servers are restored to the same target, and a restore
point (or one time) is such a target. Restore points are listed in
``<state_dir>/pgbackrest/restore-points.json`` with the WAL position (LSN) each server wrote
them at, which picks the backup to restore from; backups carry the name as an annotation.

Point-in-time restore lives in :mod:`movierec.db.restore`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from movierec.config import Settings
from movierec.db.local_server import LocalPostgres
from movierec.db.patroni import (
    MEMBER_DATA_DIR,
    Group,
    apply_settings,
    is_group,
    leader,
    load_group,
)
from movierec.db.pgbackrest import (
    DEFAULT_RETENTION_FULL,
    BackupConfig,
    BackupServer,
    archive_command,
    info,
    run_pgbackrest,
    write_config,
)
from movierec.db.topology import recorded_shards
from movierec.errors import (
    BadInput,
    DatabaseUnavailable,
    MovierecError,
    NotFound,
    OpsCommandFailed,
    first_line,
)

BACKUP_TYPES = ("full", "diff", "incr")
ANNOTATION_KEY = "movierec-restore-point"
PRIMARY_STANZA = "primary"
# Backups of a large database take a while; a stuck one still ends eventually.
BACKUP_TIMEOUT_S = 6 * 3600.0
MAX_PARALLEL_BACKUPS = 4
_POINT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")

Progress = Callable[[int, int | None], None]


# --- where things are ------------------------------------------------------------------------


def local_servers(settings: Settings) -> list[BackupServer]:
    """The servers of the local state: the primary at ``state_dir/postgres`` (or, when
    Patroni runs a group there, the group: its primary now and every member), then the shard
    servers the local cluster runs (recorded in ``servers.json``), one stanza each named as
    the shard.
    """
    main = settings.state_dir.resolve() / "postgres"
    if is_group(main):
        servers = [group_server(PRIMARY_STANZA, load_group(main))]
    else:
        servers = [BackupServer(PRIMARY_STANZA, LocalPostgres(settings.state_dir / "postgres"))]
    for shard in recorded_shards(settings):
        if shard.state_dir is not None and is_group(shard.state_dir):
            servers.append(group_server(shard.name, load_group(shard.state_dir)))
        elif shard.local is not None and shard.name != PRIMARY_STANZA:
            servers.append(BackupServer(shard.name, shard.local))
    return servers


def group_server(stanza: str, group: Group) -> BackupServer:
    """A Patroni group as one stanza: ``server`` is its primary now (restore points and
    seals are written there), or its first member while it has none."""
    try:
        name = leader(group)
    except DatabaseUnavailable:
        name = None
    primary = group.member(name) if name else group.members[0]
    # As a plain server (a restore recovers it so, before Patroni takes it back), it runs
    # with the group's own settings: it archives the new timeline from its first segment.
    own = group.settings_for(primary)
    quoted = {key: "'" + value.replace("'", "''") + "'" for key, value in own.items()}
    server = LocalPostgres(primary.state_dir, primary.pg_port, durable=True, settings=quoted)
    return BackupServer(stanza, server, tuple(m.local for m in group.members))


def backup_config(settings: Settings, retention_full: int | None = None) -> BackupConfig:
    """pgBackRest's paths under ``state_dir/pgbackrest``.

    Retention and the repository path come from ``extra`` settings
    (``backup_retention_full``, ``backup_repo_path``) unless ``retention_full`` is given.
    """
    extra = settings.extra or {}
    repo = extra.get("backup_repo_path")
    retention = retention_full or int(extra.get("backup_retention_full", DEFAULT_RETENTION_FULL))
    return BackupConfig(
        base_dir=(settings.state_dir / "pgbackrest").resolve(),
        repo_path=Path(repo).resolve() if repo else None,
        retention_full=retention,
    )


# --- talking to the servers ------------------------------------------------------------------


def known_port(server: LocalPostgres) -> int:
    """The port ``server`` listens (or last listened) on; it keeps it across our restarts.

    Raises :class:`DatabaseUnavailable` when the server has never been started.
    """
    if not server.port:
        recorded = server.recorded_port()
        if recorded is None:
            raise DatabaseUnavailable(f"no PostgreSQL server has run in {server.state_dir}")
        server.port = recorded
    return server.port


def connect(server: LocalPostgres) -> AbstractContextManager[psycopg.Connection]:
    """An autocommit superuser connection to ``server``, on the port it last had.

    Raises :class:`DatabaseUnavailable` when it has never run or does not answer.
    """
    known_port(server)
    return server.connect()


def restart(server: LocalPostgres) -> None:
    """Stop and start ``server`` on the port it had (clients keep their URLs).

    Raises :class:`DatabaseUnavailable` for a server that never ran, :class:`OpsCommandFailed`
    when pg_ctl fails.
    """
    known_port(server)
    server.stop()
    server.start()


def _ensure_running(server: LocalPostgres) -> None:
    if server.info_file.exists():
        known_port(server)
    server.start()  # idempotent: a running server is left alone


# --- setup -----------------------------------------------------------------------------------


def archive_settings(
    config: BackupConfig, stanza: str, pg_path: str | None = None
) -> dict[str, str]:
    """The settings that make a server push its WAL into the repository's ``stanza``
    (``pg_path``: see :func:`archive_command`)."""
    return {
        "archive_mode": "on",
        "archive_command": archive_command(config, stanza, pg_path),
        # A quiet server still ships its last writes within a minute (unit: seconds).
        "archive_timeout": "60",
    }


def _wanted_settings(config: BackupConfig, stanza: str, durable: bool) -> dict[str, str]:
    wanted = archive_settings(config, stanza)
    if durable:
        # A server worth backing up is one whose data matters; LocalPostgres defaults to
        # fsync=off for throwaway test servers.
        wanted.update(fsync="on", full_page_writes="on", synchronous_commit="on")
    return wanted


def _configure_archiving(config: BackupConfig, item: BackupServer, durable: bool) -> bool:
    """ALTER SYSTEM the archive settings; True when a restart is needed.

    ALTER SYSTEM (postgresql.auto.conf) rather than LocalPostgres' own conf file: that file is
    rewritten by whoever starts the server next, this one survives them and restores.
    """
    wanted = _wanted_settings(config, item.name, durable)
    with connect(item.server) as conn:
        current = {
            name: conn.execute(
                "SELECT setting FROM pg_settings WHERE name = %s", (name,)
            ).fetchone()[0]
            for name in wanted
        }
        changed = {k: v for k, v in wanted.items() if _normal(current[k]) != _normal(v)}
        for name, value in changed.items():
            conn.execute(
                sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value))
            )
        if changed:
            conn.execute("SELECT pg_reload_conf()")
        level = conn.execute("SHOW wal_level").fetchone()[0]
        if level == "minimal":
            conn.execute("ALTER SYSTEM SET wal_level = 'replica'")
    return current["archive_mode"] != "on" or level == "minimal"


def _normal(value: str) -> str:
    return value.strip().lower()


def setup(config: BackupConfig, servers: list[BackupServer], durable: bool = True) -> Path:
    """Write pgbackrest.conf, turn on WAL archiving on every server, create and check stanzas.

    Starts servers that are stopped and restarts those whose ``archive_mode`` changes.
    Safe to repeat. Returns the configuration file. Raises :class:`OpsCommandFailed` when
    pgBackRest fails (e.g. archiving does not work), :class:`DatabaseUnavailable` when a server
    does not answer, :class:`ConfigError` for bad paths or names.
    """
    plain = [item for item in servers if not item.managed]
    for item in plain:
        _ensure_running(item.server)
    write_config(config, servers)
    for item in plain:
        if _configure_archiving(config, item, durable):
            restart(item.server)
    for item in servers:
        if item.managed:  # Patroni owns the configuration (and its members are durable)
            group = load_group(item.server.state_dir.parent)
            apply_settings(group, archive_settings(config, item.name, MEMBER_DATA_DIR))
    # Restarted servers have new socket directories: the configuration is written again.
    return create_stanzas(config, servers, [item.name for item in servers])


def create_stanzas(config: BackupConfig, servers: list[BackupServer], names: list[str]) -> Path:
    """Write pgbackrest.conf for ``servers``, then create and check the stanzas ``names``
    (of servers that archive already, e.g. a Patroni group made with :func:`archive_settings`);
    ``check`` waits for a WAL segment to reach the repository. Returns the configuration file.
    Raises :class:`OpsCommandFailed` when pgBackRest fails, :class:`ConfigError` as
    :func:`write_config`.
    """
    conf = write_config(config, servers)
    for name in names:
        run_pgbackrest(config, "stanza-create", [f"--stanza={name}"], timeout=120)
        run_pgbackrest(config, "check", [f"--stanza={name}"], timeout=120)
    return conf


def refresh_config(config: BackupConfig, servers: list[BackupServer]) -> None:
    """Re-render pgbackrest.conf (socket directories change on restart).

    Raises :class:`NotFound` when ``setup`` has not been run, :class:`ConfigError` as
    :func:`write_config`.
    """
    if not config.conf_file.exists():
        raise NotFound("backups are not set up yet: run `movierec backup setup` first")
    write_config(config, servers)


# --- restore points --------------------------------------------------------------------------


@dataclass(frozen=True)
class RestorePoint:
    """A named position written into every server's WAL at (nearly) the same moment."""

    name: str
    time: datetime
    lsn: dict[str, str]  # stanza -> WAL position of the restore point record


def _points_file(config: BackupConfig) -> Path:
    return config.base_dir / "restore-points.json"


def restore_points(config: BackupConfig) -> list[RestorePoint]:
    """Every restore point movierec created, oldest first."""
    path = _points_file(config)
    if not path.exists():
        return []
    return [
        RestorePoint(p["name"], datetime.fromisoformat(p["time"]), dict(p["lsn"]))
        for p in json.loads(path.read_text())
    ]


def _save_point(config: BackupConfig, point: RestorePoint) -> None:
    points = [p for p in restore_points(config) if p.name != point.name] + [point]
    data = [{"name": p.name, "time": p.time.isoformat(), "lsn": p.lsn} for p in points]
    tmp = _points_file(config).with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(_points_file(config))


def new_point_name(config: BackupConfig, prefix: str = "point") -> str:
    """``<prefix>-<UTC time>``, with a counter when that name is taken."""
    base = f"{prefix}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    taken = {p.name for p in restore_points(config)}
    return next(n for n in (base, *(f"{base}-{i}" for i in range(2, 1000))) if n not in taken)


def create_restore_point(
    config: BackupConfig, servers: list[BackupServer], name: str | None = None
) -> RestorePoint:
    """``pg_create_restore_point(name)`` on every server, then wait until it is archived.

    The points are written back to back, not atomically: a transaction spanning servers that
    commits in between is cut at different places (there are none until shards use 2PC).
    Raises :class:`BadInput` for a bad or already used name, :class:`DatabaseUnavailable` when
    a server does not answer, :class:`OpsCommandFailed` when WAL archiving fails.
    """
    name = name or new_point_name(config)
    if not _POINT_NAME.match(name):
        raise BadInput(f"restore point name {name!r}: use up to 63 letters, digits, . _ -")
    if any(p.name == name for p in restore_points(config)):
        raise BadInput(f"restore point {name!r} exists already")
    refresh_config(config, servers)
    with ExitStack() as stack:
        conns = [stack.enter_context(connect(item.server)) for item in servers]
        lsn = {}
        for item, conn in zip(servers, conns, strict=True):
            lsn[item.name] = str(
                conn.execute("SELECT pg_create_restore_point(%s)", (name,)).fetchone()[0]
            )
        when = conns[0].execute("SELECT clock_timestamp()").fetchone()[0]
    point = RestorePoint(name, when.astimezone(UTC), lsn)
    archive_restore_point(config, servers, point)
    return point


def archive_restore_point(
    config: BackupConfig, servers: list[BackupServer], point: RestorePoint
) -> None:
    """Wait until the WAL holding ``point`` (written on every server) is in the repository,
    then record it: from then on it is a restore target. Raises :class:`OpsCommandFailed`."""
    # `check` switches to a new WAL segment and waits until the one holding the point is in
    # the repository, so the point is restorable the moment we return.
    for item in servers:
        run_pgbackrest(config, "check", [f"--stanza={item.name}"], timeout=120)
    _save_point(config, point)


# --- backups ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupSet:
    """One pgBackRest backup of one stanza, as ``pgbackrest info`` reports it."""

    stanza: str
    label: str
    type: str
    start: datetime
    stop: datetime
    size: int  # bytes of the database at backup time
    repo_size: int  # bytes this backup adds to the repository (compressed)
    wal_start: str
    wal_stop: str
    lsn_stop: str
    restore_point: str | None


def _parse_backup(stanza: str, raw: dict[str, Any]) -> BackupSet:
    stamp = raw["timestamp"]
    archive = raw.get("archive") or {}
    return BackupSet(
        stanza=stanza,
        label=raw["label"],
        type=raw["type"],
        start=datetime.fromtimestamp(stamp["start"], UTC),
        stop=datetime.fromtimestamp(stamp["stop"], UTC),
        size=int(raw["info"]["size"]),
        repo_size=int(raw["info"]["repository"]["delta"]),
        wal_start=archive.get("start") or "",
        wal_stop=archive.get("stop") or "",
        lsn_stop=(raw.get("lsn") or {}).get("stop") or "",
        restore_point=(raw.get("annotation") or {}).get(ANNOTATION_KEY),
    )


def list_backups(config: BackupConfig) -> list[BackupSet]:
    """Every backup of every stanza in the repository, oldest first within a stanza.

    Raises :class:`NotFound` when backups are not set up, :class:`OpsCommandFailed` when
    pgBackRest fails.
    """
    if not config.conf_file.exists():
        raise NotFound("backups are not set up yet: run `movierec backup setup` first")
    return [
        _parse_backup(stanza["name"], raw)
        for stanza in info(config)
        for raw in stanza.get("backup", [])
    ]


@dataclass(frozen=True)
class BackupResult:
    labels: dict[str, str]  # stanza -> pgBackRest label
    restore_point: RestorePoint


def create_backup(
    config: BackupConfig,
    servers: list[BackupServer],
    kind: str = "full",
    on_progress: Progress | None = None,
) -> BackupResult:
    """Back up every server (``full``, ``diff`` or ``incr``), then a restore point on all.

    Each backup is annotated with the restore point's name, which :mod:`movierec.db.restore`
    uses to restore all servers to the same moment. pgBackRest expires old backups past the
    retention after each backup. Raises :class:`BadInput` for an unknown type,
    :class:`NotFound` when not set up, :class:`OpsCommandFailed` when a backup fails.
    """
    if kind not in BACKUP_TYPES:
        raise BadInput(f"backup type {kind!r}: use one of {', '.join(BACKUP_TYPES)}")
    refresh_config(config, servers)
    name = new_point_name(config, "backup")
    progress = on_progress or (lambda done, total: None)
    progress(0, len(servers))
    annotation = f"--annotation={ANNOTATION_KEY}={name}"

    def back_up(item: BackupServer) -> None:
        args = [f"--stanza={item.name}", f"--type={kind}", annotation]
        run_pgbackrest(config, "backup", args, timeout=BACKUP_TIMEOUT_S)

    # All servers at once: their backups overlap in time, and N shards take about as long as
    # one. pgBackRest locks per stanza, so parallel runs do not collide.
    with ThreadPoolExecutor(max_workers=min(len(servers), MAX_PARALLEL_BACKUPS)) as pool:
        futures = [pool.submit(back_up, item) for item in servers]
        for done, future in enumerate(as_completed(futures), start=1):
            future.result()  # re-raises the first failure here
            progress(done, len(servers))
    labels = {b.stanza: b.label for b in list_backups(config) if b.restore_point == name}
    missing = [item.name for item in servers if item.name not in labels]
    if missing:
        raise OpsCommandFailed(f"pgbackrest reported no new backup of {', '.join(missing)}")
    return BackupResult(labels, create_restore_point(config, servers, name))


# --- upkeep ----------------------------------------------------------------------------------


def verify(config: BackupConfig, servers: list[BackupServer]) -> None:
    """``check`` (archiving works now) and ``verify`` (the repository's files are intact).

    Raises :class:`OpsCommandFailed` naming the first problem, :class:`NotFound` when not set up.
    The outcome is kept (:func:`last_verify`): the dashboard shows which backups it covered.
    """
    try:
        _verify(config, servers)
    except MovierecError as exc:
        _save_verify(config, VerifyRecord(datetime.now(UTC), False, first_line(exc)))
        raise
    _save_verify(
        config, VerifyRecord(datetime.now(UTC), True, "archiving works, repository intact")
    )


VERIFIED = "archiving works, repository intact"


@dataclass(frozen=True)
class VerifyRecord:
    """How the last :func:`verify` ended: backups finished before ``at`` were checked."""

    at: datetime
    ok: bool
    detail: str


def _verify_file(config: BackupConfig) -> Path:
    return config.base_dir / "last-verify.json"


def _save_verify(config: BackupConfig, record: VerifyRecord) -> None:
    path = _verify_file(config)
    if path.parent.is_dir():
        payload = {"at": record.at.isoformat(), "ok": record.ok, "detail": record.detail}
        path.write_text(json.dumps(payload) + "\n")


def last_verify(config: BackupConfig) -> VerifyRecord | None:
    """The outcome of the last ``movierec backup verify`` (or the dashboard's look at it),
    None when there was none."""
    try:
        raw = json.loads(_verify_file(config).read_text())
        return VerifyRecord(datetime.fromisoformat(raw["at"]), bool(raw["ok"]), str(raw["detail"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _verify(config: BackupConfig, servers: list[BackupServer]) -> None:
    refresh_config(config, servers)
    for item in servers:
        run_pgbackrest(config, "check", [f"--stanza={item.name}"], timeout=120)
        out = run_pgbackrest(
            config, "verify", [f"--stanza={item.name}", "--output=text"], timeout=BACKUP_TIMEOUT_S
        )
        # verify (2.45) exits 0 even when files are damaged; its text output says
        # "status: error" followed by the damaged backups or WAL and the counts.
        lines = [line.strip() for line in out.splitlines() if line.strip()]
        if any(line == "status: error" for line in lines):
            details = [x for x in lines if not x.startswith(("stanza:", "status:"))]
            raise OpsCommandFailed(
                f"pgbackrest verify found damage in stanza {item.name}: " + "; ".join(details[:4])
            )


def expire(config: BackupConfig, servers: list[BackupServer]) -> list[str]:
    """Expire backups (and their WAL) past the retention; return the labels that went.

    Raises :class:`OpsCommandFailed` when pgBackRest fails, :class:`NotFound` when not set up.
    """
    refresh_config(config, servers)
    before = {(b.stanza, b.label) for b in list_backups(config)}
    for item in servers:
        run_pgbackrest(config, "expire", [f"--stanza={item.name}"], timeout=BACKUP_TIMEOUT_S)
    after = {(b.stanza, b.label) for b in list_backups(config)}
    return sorted(f"{stanza}/{label}" for stanza, label in before - after)
