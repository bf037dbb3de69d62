"""Which PostgreSQL servers movierec manages, which one is the primary, and how to reach them.

The record is a small JSON file, ``state_dir/servers.json``: one entry per server (name, role,
address, the state directory when movierec runs the server locally, the replication slot of a
standby). Before any replica exists there is no file and the one server is the primary named
by ``settings.database_url``. The replica commands are the only writers; they hold a lock
while they change the cluster, and every write is a rename of a complete temp file, so a crash
never leaves half a topology behind.

Every server of one cluster is a physical copy of the primary, so they share roles and
passwords: the user, password and database name of ``settings.database_url`` work on all of
them, and only host and port differ.
"""

from __future__ import annotations

import dataclasses
import json
import re
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from movierec.config import Settings
from movierec.db.connect import connect as db_connect
from movierec.db.engines import libpq_conninfo
from movierec.db.local_server import LocalPostgres
from movierec.errors import BadInput, DatabaseUnavailable, MovierecError, NotFound
from movierec.files import exclusive_lock, write_atomically

TOPOLOGY_FILE = "servers.json"
PRIMARY_DIR = "postgres"  # what `movierec db start-local` uses under state_dir
INITIAL_PRIMARY = "main"
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,39}")  # also a valid slot / application name


class ReplicationError(MovierecError):
    """Replication did not reach the expected state (not streaming, not promoted, ...)."""


class Role(StrEnum):
    PRIMARY = "primary"
    STANDBY = "standby"
    # A primary that was fenced by a promotion: stopped, and marked so that a restart brings it
    # up read-only. It has diverged from the new primary and is kept only for inspection.
    FORMER_PRIMARY = "former-primary"
    # A shard server (postgres_fdw target) the local cluster runs: not a copy of the primary
    # but a server of its own, listed apart (``Topology.shards``) and backed up as a stanza.
    SHARD = "shard"


@dataclass(frozen=True)
class Server:
    """One PostgreSQL server of the cluster."""

    name: str
    role: Role
    host: str
    port: int
    state_dir: Path | None = None  # None: movierec does not run it (cannot stop or fence it)
    slot: str | None = None  # the standby's physical slot on its upstream
    upstream: str | None = None  # the server a standby streams from

    @property
    def local(self) -> LocalPostgres | None:
        """The :class:`LocalPostgres` running this server, when movierec runs it."""
        return LocalPostgres(self.state_dir) if self.state_dir else None

    def live_port(self) -> int:
        """The port it listens on now: a local server may have restarted on another one."""
        local = self.local
        recorded = local.recorded_port() if local is not None else None
        return recorded if recorded is not None else self.port

    @property
    def address(self) -> str:
        return f"{self.host}:{self.live_port()}"

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["role"] = str(self.role)
        data["state_dir"] = str(self.state_dir) if self.state_dir else None
        return data

    @classmethod
    def from_json(cls, data: dict) -> Server:
        state_dir = data.get("state_dir")
        return cls(
            name=str(data["name"]),
            role=Role(data["role"]),
            host=str(data["host"]),
            port=int(data["port"]),
            state_dir=Path(state_dir) if state_dir else None,
            slot=data.get("slot"),
            upstream=data.get("upstream"),
        )


@dataclass(frozen=True)
class Topology:
    """The servers of the cluster; exactly one of them is the primary. ``shards``: the shard
    servers movierec runs locally (not replicas: replication commands never look at them)."""

    servers: tuple[Server, ...]
    shards: tuple[Server, ...] = ()

    def primary(self) -> Server:
        for server in self.servers:
            if server.role is Role.PRIMARY:
                return server
        raise ReplicationError("the topology names no primary; check servers.json in state_dir")

    def get(self, name: str) -> Server:
        """The server called ``name``; raises :class:`NotFound` naming the known ones."""
        for server in self.servers:
            if server.name == name:
                return server
        known = ", ".join(s.name for s in self.servers)
        raise NotFound(f"no server named {name!r} (known: {known})")

    def find(self, name: str) -> Server:
        """The server or shard called ``name``, for the commands that start and stop any local
        server; raises :class:`NotFound` naming the known ones."""
        for server in (*self.servers, *self.shards):
            if server.name == name:
                return server
        known = ", ".join(s.name for s in (*self.servers, *self.shards))
        raise NotFound(f"no server named {name!r} (known: {known})")

    def with_member(self, server: Server) -> Topology:
        """A copy where ``server`` (a shard or not) replaces the entry of the same name."""
        return self.with_shard(server) if server.role is Role.SHARD else self.with_server(server)

    def __contains__(self, name: object) -> bool:
        return any(s.name == name for s in self.servers)

    def standbys(self) -> list[Server]:
        return [s for s in self.servers if s.role is Role.STANDBY]

    def with_server(self, server: Server) -> Topology:
        """A copy where ``server`` replaces the entry of the same name, or is appended."""
        if server.name in self:
            servers = tuple(server if s.name == server.name else s for s in self.servers)
            return dataclasses.replace(self, servers=servers)
        return dataclasses.replace(self, servers=(*self.servers, server))

    def without(self, name: str) -> Topology:
        return dataclasses.replace(self, servers=tuple(s for s in self.servers if s.name != name))

    def with_shard(self, shard: Server) -> Topology:
        """A copy where ``shard`` replaces the shard of the same name, or is appended."""
        others = tuple(s for s in self.shards if s.name != shard.name)
        return dataclasses.replace(self, shards=(*others, shard))


def check_name(name: str) -> str:
    """Return ``name`` if it can name a replica; raises :class:`BadInput` otherwise."""
    if not NAME_PATTERN.fullmatch(name):
        raise BadInput(
            f"bad replica name {name!r}: use 1-40 lowercase letters, digits or _, "
            "starting with a letter"
        )
    return name


def state_root(settings: Settings) -> Path:
    return settings.state_dir.resolve()


def topology_path(settings: Settings) -> Path:
    return state_root(settings) / TOPOLOGY_FILE


def has_topology(settings: Settings) -> bool:
    return topology_path(settings).exists()


def load_topology(settings: Settings) -> Topology:
    """The recorded topology, or the single primary of ``settings.database_url``.

    Raises :class:`ConfigError` when there is no record and no database URL, and
    :class:`BadInput` when the record is not readable JSON.
    """
    path = topology_path(settings)
    if not path.exists():
        return Topology((_bootstrap_primary(settings),))
    try:
        data = json.loads(path.read_text())
        return Topology(
            tuple(Server.from_json(entry) for entry in data["servers"]),
            tuple(Server.from_json(entry) for entry in data.get("shards", ())),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadInput(f"{path}: not a readable topology ({exc})") from exc


def save_topology(settings: Settings, topology: Topology) -> None:
    """Write the topology atomically (temp file in the same directory, fsync, rename)."""
    data: dict = {"version": 1, "servers": [s.to_json() for s in topology.servers]}
    if topology.shards:
        data["shards"] = [s.to_json() for s in topology.shards]
    write_atomically(topology_path(settings), json.dumps(data, indent=2) + "\n", ".servers-")


def recorded_shards(settings: Settings) -> tuple[Server, ...]:
    """The shard servers recorded in ``servers.json`` (none when there is no file).

    Raises :class:`BadInput` when the file is not readable.
    """
    return load_topology(settings).shards if has_topology(settings) else ()


def topology_lock(settings: Settings) -> AbstractContextManager[None]:
    """Hold an exclusive lock so two commands never change the cluster at the same time."""
    return exclusive_lock(state_root(settings) / "servers.lock")


def _bootstrap_primary(settings: Settings) -> Server:
    """The primary before any replica: the server of ``database_url``.

    It counts as local (movierec may stop it to fence it) only when it is the server
    ``movierec db start-local`` runs under state_dir and that server listens on the URL's port.
    """
    settings.require("database_url")
    url = make_url(settings.database_url)
    host, port = url.host or "127.0.0.1", url.port or 5432
    local = LocalPostgres(state_root(settings) / PRIMARY_DIR)
    is_local = (
        host in ("127.0.0.1", "localhost")
        and local.is_initialized()
        and local.recorded_port() == port
    )
    state_dir = local.state_dir if is_local else None
    return Server(INITIAL_PRIMARY, Role.PRIMARY, host, port, state_dir=state_dir)


def server_url(settings: Settings, server: Server, hide_password: bool = True) -> str:
    """``settings.database_url`` pointed at ``server`` (password masked unless asked).

    Raises :class:`ConfigError` when no database URL is set.
    """
    settings.require("database_url")
    url = make_url(settings.database_url).set(host=server.host, port=server.live_port())
    return url.render_as_string(hide_password=hide_password)


def conninfo(settings: Settings, server: Server, timeout: float = 3.0) -> str:
    """A libpq connection string for ``server`` with the credentials of ``database_url``.

    Raises :class:`ConfigError` when no database URL is set.
    """
    settings.require("database_url")
    return libpq_conninfo(
        settings.database_url,
        "movierec-admin",
        connect_timeout=max(1, round(timeout)),
        host=server.host,
        port=server.live_port(),
    )


def connect(
    settings: Settings, server: Server, timeout: float = 3.0
) -> AbstractContextManager[psycopg.Connection]:
    """An autocommit connection to ``server`` (:func:`movierec.db.connect.connect`).

    Raises :class:`DatabaseUnavailable` when it cannot be reached (or drops the connection),
    :class:`ReplicationError` when a statement fails.
    """
    where = f"{server.name} ({server.address})"
    return db_connect(
        conninfo(settings, server, timeout),
        f"{server.role} {where}",
        failed=lambda reason: ReplicationError(f"on {where}: {reason}"),
    )


def reachable(settings: Settings, server: Server, timeout: float = 2.0) -> bool:
    """Whether ``server`` accepts a connection and answers a query."""
    try:
        with connect(settings, server, timeout) as conn:
            conn.execute("SELECT 1")
    except (DatabaseUnavailable, ReplicationError):
        return False
    return True
