"""Streaming replicas of a plain primary (one movierec runs without Patroni): create, watch,
make synchronous; and the replication status ``movierec db status`` shows of any primary.

The local cluster's replicas are Patroni's (:mod:`movierec.db.patroni`): Patroni creates,
promotes, rewinds and rebuilds them. What is left here serves ``bench/bench_replica_lag.py``
and ``db status``. A replica is a :class:`LocalPostgres` under ``state_dir/replica-<name>``,
cloned from the primary with pg_basebackup. It streams WAL through a physical replication slot
named after it (``replica_<name>``), and it connects with ``application_name=<name>``, the
name ``synchronous_standby_names`` and ``pg_stat_replication`` know it by.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from sqlalchemy.engine import make_url

from movierec.config import Settings
from movierec.db.local_server import SERVER_SETTINGS, LocalPostgres
from movierec.db.patroni import Group, cluster_view, is_group, load_group
from movierec.db.tools import check_server_user_can_enter, give_to_server_user, run_pg_tool
from movierec.db.topology import (
    PRIMARY_DIR,
    ReplicationError,
    Role,
    Server,
    Topology,
    check_name,
    connect,
    load_topology,
    save_topology,
    state_root,
    topology_lock,
)
from movierec.errors import BadInput, DatabaseUnavailable, NotFound, OpsCommandFailed

STANDBY_SETTINGS = {"hot_standby": "on"}  # replicas answer read-only queries
# Settings LocalPostgres writes itself on every start; everything else in movierec.conf is
# carried from the primary to its replicas.
_MANAGED_SETTINGS = {*SERVER_SETTINGS, "port", "unix_socket_directories"}
BASEBACKUP_TIMEOUT = 3600.0  # a large database takes a while to copy


class ServerState(StrEnum):
    UP = "up"  # accepts writes
    READ_ONLY = "read-only"  # answers, but in recovery and not streaming from the primary
    STARTUP = "startup"  # the pg_stat_replication states of a standby, as the primary sees it
    CATCHUP = "catchup"
    STREAMING = "streaming"
    BACKUP = "backup"
    STOPPING = "stopping"
    DISCONNECTED = "disconnected"  # answers, in recovery, but not attached to the primary
    DOWN = "down"


@dataclass(frozen=True)
class ReplicaStatus:
    """One server as ``replica status`` shows it. Lags are ``None`` when unknown."""

    name: str
    role: str
    state: ServerState
    address: str
    lag_bytes: int | None = None  # WAL written on the primary but not yet replayed here
    lag_seconds: float | None = None
    sync_state: str | None = None  # async / sync / potential / quorum
    slot: str | None = None


@dataclass(frozen=True)
class SyncSetting:
    """The primary's synchronous replication settings after ``set_synchronous``."""

    standby_names: str  # '' when off
    synchronous_commit: str  # commits wait for the standby only when this is not 'off'


def slot_name(name: str) -> str:
    return f"replica_{name}"


def replica_dir(settings: Settings, name: str) -> Path:
    return state_root(settings) / f"replica-{name}"


# --- create / remove ---------------------------------------------------------------------------


def create_replica(settings: Settings, name: str = "r1", wait: float = 30.0) -> Server:
    """Clone the primary into a new streaming replica ``name``, start it, return its entry.

    Raises :class:`BadInput` for a bad or taken name, :class:`DatabaseUnavailable` when the
    primary cannot be reached, :class:`OpsCommandFailed` when pg_basebackup or the server
    fails, and :class:`ReplicationError` when the replica does not stream within ``wait``.
    """
    check_name(name)
    with topology_lock(settings):
        topology = load_topology(settings)
        if name in topology:
            raise BadInput(f"a server named {name!r} already exists; pick another --name")
        target = replica_dir(settings, name)
        if target.exists():
            raise BadInput(f"{target} already exists; remove it or pick another --name")
        primary = topology.primary()
        _check_can_clone(settings, primary, slot_name(name))
        target.mkdir(parents=True)
        try:
            check_server_user_can_enter(target)
            give_to_server_user(target)
            if primary.local is not None:
                primary.local.passwords.copy_to(target)  # a copy: the same roles
            _base_backup(settings, primary, name, target)
            server = _local_server(target).start()
        except BaseException:
            _discard(settings, primary, slot_name(name), target)
            raise
        entry = Server(
            name, Role.STANDBY, "127.0.0.1", server.port, target, slot_name(name), primary.name
        )
        save_topology(settings, topology.with_server(primary).with_server(entry))
    wait_for_state(settings, name, {ServerState.STREAMING}, wait)
    return entry


def _local_server(state_dir: Path, port: int = 0) -> LocalPostgres:
    """The LocalPostgres for a replica's (or promoted replica's) state directory.

    LocalPostgres rewrites movierec.conf at every start, so carry over what is in it beyond
    its own defaults: for a fresh copy that is the primary's configuration (archive_command
    for pgBackRest, durability), which the server needs as much once it is promoted.
    """
    conf = LocalPostgres(state_dir).conf_file
    lines = conf.read_text().splitlines() if conf.exists() else []
    carried: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition(" = ")
        if sep and key not in _MANAGED_SETTINGS:
            carried[key] = value
    # LocalPostgres turns fsync off unless durable; a copy of any other server stays durable.
    durable = "fsync = off" not in lines
    return LocalPostgres(
        state_dir, port=port, durable=durable, settings={**carried, **STANDBY_SETTINGS}
    )


def _check_can_clone(settings: Settings, primary: Server, slot: str) -> None:
    with connect(settings, primary) as conn:
        if conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
            raise ReplicationError(f"{primary.name} ({primary.address}) is in recovery")
        taken = slot_exists(conn, slot)
    if taken:
        raise BadInput(
            f"slot {slot} already exists on the primary; drop it first "
            f"(SELECT pg_drop_replication_slot('{slot}')) or pick another --name"
        )


def _base_backup(settings: Settings, primary: Server, name: str, target: Path) -> None:
    """pg_basebackup with -R: the copy starts as a standby of ``primary`` through the slot.

    application_name goes into the connection string, and -R copies it into the replica's
    primary_conninfo. A password goes through a pgpass file, never argv or the config.
    """
    url = make_url(settings.database_url)
    extra = {"application_name": name}
    if url.password:
        extra["passfile"] = str(_write_pgpass(target, primary, url.username, url.password))
    run_pg_tool(
        "pg_basebackup",
        ["-d", make_conninfo(**extra), "-h", primary.host, "-p", str(primary.live_port()),
         "-U", url.username or "postgres", "-D", str(target / "pgdata"),
         "-X", "stream", "-R", "-C", "-S", slot_name(name),
         "-c", "fast"],  # a spread checkpoint can delay the copy for minutes on a busy primary
        timeout=BASEBACKUP_TIMEOUT,
    )  # fmt: skip


def _write_pgpass(target: Path, primary: Server, user: str | None, password: str) -> Path:
    def esc(value: str) -> str:
        return value.replace("\\", "\\\\").replace(":", "\\:")

    path = target / "pgpass"
    line = ":".join(esc(v) for v in (primary.host, "*", "*", user or "postgres", password))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(line + "\n")
    give_to_server_user(path)
    return path


def start_server(settings: Settings, name: str) -> Server:
    """Start local server ``name`` (a replica, the primary or a shard; after a reboot, a
    crash or a stop) on its recorded port.

    Keeping the port matters: standbys reach their primary by it, the primary its shards. A
    fenced former primary comes up read-only. Raises :class:`NotFound` for an unknown name,
    :class:`BadInput` for a server movierec does not run and :class:`OpsCommandFailed` when
    it does not start.
    """
    with topology_lock(settings):
        topology = load_topology(settings)
        server = _local_entry(topology, name)
        started = _local_server(server.state_dir, server.live_port()).start()
        server = dataclasses.replace(server, port=started.port)
        save_topology(settings, topology.with_member(server))
    return server


def stop_server(settings: Settings, name: str) -> Server:
    """Stop local server ``name`` (fast shutdown). Raises like :func:`start_server`."""
    with topology_lock(settings):
        server = _local_entry(load_topology(settings), name)
        server.local.stop()
    return server


def _local_entry(topology: Topology, name: str) -> Server:
    server = topology.find(name)
    if server.local is None:
        raise BadInput(f"{name} ({server.address}) is not run by movierec on this machine")
    return server


def _discard(settings: Settings, primary: Server, slot: str, target: Path) -> None:
    """Undo a failed create: a leftover slot would make the primary keep WAL forever."""
    local = LocalPostgres(target)
    try:
        local.stop()
    except OpsCommandFailed:
        pass  # nothing more to do than deleting its files below
    try:
        drop_slot(settings, primary, slot)
    except ReplicationError:
        pass  # the original failure matters more; a retried create names the leftover slot
    shutil.rmtree(target, ignore_errors=True)


def slot_exists(conn: psycopg.Connection, slot: str) -> bool:
    found = conn.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,))
    return found.fetchone() is not None


def drop_slot(settings: Settings, primary: Server, slot: str, wait: float = 10.0) -> bool:
    """Drop ``slot`` on ``primary`` if it exists; False when the primary cannot be reached.

    A walsender keeps its slot active for a moment after its standby stops, so retry.
    """
    deadline = time.monotonic() + wait
    while True:
        try:
            with connect(settings, primary) as conn:
                conn.execute(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                    "WHERE slot_name = %s AND NOT active",
                    (slot,),
                )
                left = slot_exists(conn, slot)
        except DatabaseUnavailable:
            return False
        if not left:
            return True
        if time.monotonic() > deadline:
            raise ReplicationError(f"slot {slot} on {primary.name} stays active; drop it by hand")
        time.sleep(0.1)


# --- status ------------------------------------------------------------------------------------

_PRIMARY_VIEW = """
SELECT application_name, state,
       pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint,
       EXTRACT(epoch FROM replay_lag)::float8,
       sync_state
FROM pg_stat_replication
"""

_STANDBY_VIEW = """
SELECT pg_is_in_recovery(),
       pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint,
       EXTRACT(epoch FROM now() - pg_last_xact_replay_timestamp())::float8
"""


def replication_status(settings: Settings) -> list[ReplicaStatus]:
    """Every known server with its state, replay lag and sync state; the primary first.

    Lag in bytes is the WAL the primary has written that the standby has not replayed (it
    counts WAL not sent yet, which sent - replay would hide). Lag in seconds is the primary's
    replay_lag; when the primary has none (idle, or down) it is 0 for a standby with nothing
    left to replay, else the age of the last replayed transaction. Standbys attached to the
    primary but unknown to the topology are listed too. Raises :class:`ConfigError` when
    there is neither a topology nor a database URL; unreachable servers are shown as down.
    """
    group_dir = state_root(settings) / PRIMARY_DIR
    if is_group(group_dir):
        return _patroni_status(load_group(group_dir))
    topology = load_topology(settings)
    primary = topology.primary()
    attached: dict[str, tuple] = {}
    try:
        with connect(settings, primary) as conn:
            writable = not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
            for row in conn.execute(_PRIMARY_VIEW).fetchall():
                attached.setdefault(row[0], row)
        primary_state = ServerState.UP if writable else ServerState.READ_ONLY
    except DatabaseUnavailable:
        primary_state = ServerState.DOWN
    result = [ReplicaStatus(primary.name, str(primary.role), primary_state, primary.address)]
    for server in topology.servers:
        if server.role is not Role.PRIMARY:
            result.append(_server_status(settings, server, attached.pop(server.name, None)))
    for app_name, state, lag_bytes, lag_seconds, sync_state in attached.values():
        result.append(
            ReplicaStatus(
                app_name or "?", "standby", _state(state), "(not in topology)",
                lag_bytes, lag_seconds, sync_state,
            )
        )  # fmt: skip
    return result


def _server_status(settings: Settings, server: Server, attached: tuple | None) -> ReplicaStatus:
    try:
        with connect(settings, server) as conn:
            in_recovery, unreplayed, xact_age = conn.execute(_STANDBY_VIEW).fetchone()
    except DatabaseUnavailable:
        return ReplicaStatus(
            server.name, str(server.role), ServerState.DOWN, server.address, slot=server.slot
        )
    if not in_recovery:
        state = ServerState.UP  # a standby promoted behind our back: shown, never hidden
    elif attached is not None:
        state = _state(attached[1])
    elif server.role is Role.FORMER_PRIMARY:
        state = ServerState.READ_ONLY  # restarted after fencing: it follows no one, by design
    else:
        state = ServerState.DISCONNECTED
    lag_bytes, lag_seconds, sync_state = None, None, None
    if attached is not None:
        _, _, lag_bytes, lag_seconds, sync_state = attached
    elif in_recovery:
        lag_bytes = unreplayed
    if lag_seconds is None and in_recovery:
        lag_seconds = 0.0 if lag_bytes == 0 else xact_age
    return ReplicaStatus(
        server.name, str(server.role), state, server.address,
        lag_bytes, lag_seconds, sync_state, server.slot,
    )  # fmt: skip


def _patroni_status(group: Group) -> list[ReplicaStatus]:
    """The members of the Patroni group as Patroni reports them (a member down is shown
    down; the group not answering at all raises :class:`DatabaseUnavailable`)."""
    found = []
    for view in cluster_view(group):
        state = _PATRONI_STATES.get(view.state, ServerState.DISCONNECTED)
        if view.is_leader and view.state == "running":
            state = ServerState.UP
        sync = "sync" if view.role == "sync_standby" else (None if view.is_leader else "async")
        role = "primary" if view.is_leader else "standby"
        lag_bytes = None if view.is_leader else view.lag
        found.append(
            ReplicaStatus(view.name, role, state, f"{view.host}:{view.port}", lag_bytes, None, sync)
        )
    return found


_PATRONI_STATES = {
    "streaming": ServerState.STREAMING,
    "running": ServerState.READ_ONLY,  # a replica that runs but does not stream (yet)
    "starting": ServerState.STARTUP,
    "stopped": ServerState.DOWN,
    "stopping": ServerState.STOPPING,
}


def _state(value: str | None) -> ServerState:
    try:
        return ServerState(value)
    except ValueError:
        return ServerState.DISCONNECTED


def wait_for_state(
    settings: Settings, name: str, wanted: set[ServerState], timeout: float = 30.0
) -> ReplicaStatus:
    """Poll :func:`replication_status` until ``name`` is in one of ``wanted`` states.

    Raises :class:`ReplicationError` when it is not within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        status = next(s for s in replication_status(settings) if s.name == name)
        if status.state in wanted:
            return status
        if time.monotonic() > deadline:
            raise ReplicationError(
                f"{name} is {status.state}, not {'/'.join(sorted(wanted))}, after {timeout:.0f} s;"
                f" see its log in {replica_dir(settings, name)}"
            )
        time.sleep(0.1)


# --- synchronous replication -------------------------------------------------------------------


def set_synchronous(
    settings: Settings, enable: bool, name: str | None = None, wait: float = 10.0
) -> SyncSetting:
    """Make commits on the primary wait for a standby (``enable``), or stop waiting.

    On: ``synchronous_standby_names`` lists ``name`` (default: every standby, the first that
    streams becomes the synchronous one). Off clears it. Waits until pg_stat_replication
    agrees. Raises :class:`NotFound` for an unknown or missing standby, :class:`BadInput` for
    ``name`` with off, and :class:`ReplicationError` when no named standby streams (every
    commit would hang) or the change does not take effect.
    """
    topology = load_topology(settings)
    primary = topology.primary()
    if not enable and name is not None:
        raise BadInput("sync off clears every synchronous standby; drop --name")
    names = _sync_candidates(topology, name) if enable else []
    # The names passed check_name ([a-z0-9_]), so the list is valid as written.
    value = ", ".join(names)
    with connect(settings, primary) as conn:
        if enable:
            streaming = {
                row[0]
                for row in conn.execute(
                    "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'"
                )
            }
            if not streaming & set(names):
                raise ReplicationError(
                    f"{value} not streaming; synchronous commits would wait forever"
                )
            stmt = sql.SQL("ALTER SYSTEM SET synchronous_standby_names = {}")
            conn.execute(stmt.format(sql.Literal(value)))
        else:
            conn.execute("ALTER SYSTEM RESET synchronous_standby_names")
        conn.execute("SELECT pg_reload_conf()")
        _wait_for_sync_state(conn, names, wait)
        commit_mode = conn.execute("SHOW synchronous_commit").fetchone()[0]
    return SyncSetting(value, commit_mode)


def _sync_candidates(topology: Topology, name: str | None) -> list[str]:
    if name is None:
        names = [s.name for s in topology.standbys()]
        if not names:
            raise NotFound("no replicas yet; create one with `movierec db replica create`")
        return names
    server = topology.get(name)
    if server.role is not Role.STANDBY:
        raise BadInput(f"{name} is a {server.role}, not a standby")
    return [name]


def _wait_for_sync_state(conn, names: list[str], wait: float) -> None:
    """Wait until one of ``names`` is 'sync' (or, with no names, until none is)."""
    deadline = time.monotonic() + wait
    while True:
        sync = {
            row[0]
            for row in conn.execute(
                "SELECT application_name FROM pg_stat_replication WHERE sync_state = 'sync'"
            )
        }
        if (sync & set(names)) if names else not sync:
            return
        if time.monotonic() > deadline:
            if names:
                # Leave no half-applied setting behind: it would make every commit wait.
                conn.execute("ALTER SYSTEM RESET synchronous_standby_names")
                conn.execute("SELECT pg_reload_conf()")
            raise ReplicationError(f"synchronous replication did not take effect in {wait:.0f} s")
        time.sleep(0.05)
