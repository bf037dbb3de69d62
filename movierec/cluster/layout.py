"""The database side of a ``--topology full`` cluster beyond primary and replicas: shard
servers, a second tablespace, partitions placed on them, and the pgBackRest repository.

Shard ``k`` is a :class:`LocalPostgres` under ``state_dir/shard-<k>``, registered on the
primary as postgres_fdw server ``shard<k>`` and recorded in ``servers.json`` (so that
``movierec backup`` gives it a stanza of its own). With ``n`` shards the last ``n`` hash
partitions of ratings, searches and preferences move there (``--shards 2``: p2 to shard1, p3 to
shard2). The tablespace ``disk2`` lives in ``state_dir/tablespaces/disk2`` and holds
``ratings_p0``. Every step is skipped when it is already done, so a second ``up`` reuses it all.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from movierec.cluster import ha
from movierec.cluster.members import Member
from movierec.config import Settings
from movierec.db import backup
from movierec.db.local_server import LocalPostgres
from movierec.db.partitions import Placement, add_server, add_tablespace, list_partitions, place
from movierec.db.partitions.catalog import primary
from movierec.db.partitions.servers import list_servers, list_tablespaces, move_server
from movierec.db.patroni import MEMBER_DATA_DIR, Group, is_group, load_group
from movierec.db.tools import give_to_server_user
from movierec.db.topology import (
    Role,
    Server,
    load_topology,
    save_topology,
    topology_lock,
)

SHARDED_TABLES = ("ratings", "searches", "preferences")
TABLESPACE = "disk2"
TABLESPACE_PARTITION = "ratings_p0"

Say = Callable[[str], None]


def cluster_server(state_dir: Path) -> LocalPostgres:
    """The cluster's PostgreSQL server in ``state_dir`` (the primary, a shard), durable: the
    site acknowledges a rating once it is committed, and a server that crashes must not lose
    it (with LocalPostgres' throwaway defaults, synchronous_commit=off, a SIGKILL of the
    primary lost 3 of 73 acknowledged ratings in a drill). ``up`` and ``restart`` both start
    it through here; replicas carry the setting over from the primary they copy."""
    return LocalPostgres(state_dir, durable=True)


def shard_name(index: int) -> str:
    """The postgres_fdw server (and pgBackRest stanza) name of shard ``index`` (1-based)."""
    return f"shard{index}"


def shard_dir(state: Path, index: int) -> Path:
    return state / f"shard-{index}"


def start_shard_groups(
    settings: Settings,
    count: int,
    replicas: int,
    base_port: int,
    database: str,
    record_members: list[Member],
    say: Say,
    backup_on: bool,
) -> list[tuple[str, LocalPostgres]]:
    """Shards 1..``count`` as Patroni groups of their own (scope ``shard<k>`` in the
    cluster's etcd), each with ``replicas`` replicas, recorded in ``record_members`` and in
    the topology; ``(name, server)`` each, the server being the group's primary frontend on
    the database switch (the postgres_fdw server of the primary points there, so it follows
    the shard's failovers)."""
    state = settings.state_dir.resolve()
    found = []
    archiving_groups = main_group(settings) if backup_on else []
    for index in range(1, count + 1):
        name = shard_name(index)
        archiving = {}
        if backup_on:
            config = backup.backup_config(settings)
            archiving = backup.archive_settings(config, name, MEMBER_DATA_DIR)
        group = ha.start_group(state, base_port, index, record_members, say, archiving)
        if backup_on:  # before register_shards moves the partitions' rows onto it
            archiving_groups.append((name, group))
            archive_from_start(settings, archiving_groups, say)
        ha.add_replicas(state, replicas, record_members, say, scope=group.scope)
        server = ha.frontend(group)
        server.create_database(database)
        found.append((name, server))
    ha.start_switch(state, ha.all_groups(state), record_members, say)
    with topology_lock(settings):
        topology = load_topology(settings)
        for name, server in found:
            # state_dir: the group's directory, which `movierec backup` recognises as a group
            entry = Server(name, Role.SHARD, "127.0.0.1", server.port, server.state_dir)
            topology = topology.with_shard(entry)
        save_topology(settings, topology)
    return found


def start_shards(
    settings: Settings, count: int, database: str, say: Say
) -> list[tuple[str, LocalPostgres, bool]]:
    """Start shard servers 1..``count`` with database ``database`` and record them in the
    topology; ``(name, server, started_here)`` each."""
    state = settings.state_dir.resolve()
    started = []
    with topology_lock(settings):
        topology = load_topology(settings)
        for index in range(1, count + 1):
            name = shard_name(index)
            # A shard that ran before comes back on its port: the primary's server knows it.
            server = cluster_server(shard_dir(state, index))
            was_running = server.is_running()
            say(f"PostgreSQL: {'using the running' if was_running else 'starting'} shard "
                f"{name} in {server.state_dir}")  # fmt: skip
            server.start()
            server.create_database(database)
            entry = Server(name, Role.SHARD, "127.0.0.1", server.port, server.state_dir)
            topology = topology.with_shard(entry)
            started.append((name, server, not was_running))
        save_topology(settings, topology)
    return started


def register_shards(
    settings: Settings, shards: list[tuple[str, LocalPostgres]], database: str, say: Say
) -> None:
    """``partitions add-server`` each shard (or point a known one at its current port), then
    place the last ``len(shards)`` partitions of each sharded table on them."""
    with primary(settings) as conn:
        known = {s.name for s in list_servers(conn)}
        for name, server in shards:
            if name in known:
                move_server(conn, name, server.port)
    for name, server in shards:
        if name not in known:
            add_server(settings, name, server.admin_conninfo(database))
            say(f"partitions: added shard server {name} (127.0.0.1:{server.port})")
    partitions = list_partitions(settings)
    for table in SHARDED_TABLES:
        parts = sorted((p for p in partitions if p.table == table), key=lambda p: p.remainder)
        for (name, _server), part in zip(shards, parts[len(parts) - len(shards) :], strict=True):
            if part.placement is Placement.SERVER and part.where == name:
                continue
            report = place(settings, part.name, server=name)
            say(f"partitions: {part.name} -> {name} ({report.rows:,} rows)")


def add_disk2(settings: Settings, say: Say) -> None:
    """The tablespace ``disk2`` in ``state_dir/tablespaces/disk2`` holding ratings_p0."""
    with primary(settings) as conn:
        exists = any(t.name == TABLESPACE for t in list_tablespaces(conn))
    if not exists:
        # Under Patroni the primary's own directory (each member has one); else a shared one.
        directory = ha.tablespace_location(settings.state_dir.resolve(), TABLESPACE)
        if directory is None:
            directory = settings.state_dir.resolve() / "tablespaces" / TABLESPACE
            directory.mkdir(parents=True, exist_ok=True)
            directory.parent.chmod(0o755)
            give_to_server_user(directory)
        add_tablespace(settings, TABLESPACE, directory)
        say(f"partitions: tablespace {TABLESPACE} in {directory}")
    part = next(p for p in list_partitions(settings) if p.name == TABLESPACE_PARTITION)
    if part.placement is not Placement.TABLESPACE or part.where != TABLESPACE:
        report = place(settings, part.name, tablespace=TABLESPACE)
        say(f"partitions: {part.name} -> tablespace {TABLESPACE} ({report.rows:,} rows)")


def archive_settings(settings: Settings) -> dict[str, str]:
    """What a new Patroni group is made with when the cluster backs up: it archives from the
    start, so turning backups on needs no restart."""
    config = backup.backup_config(settings)
    return backup.archive_settings(config, backup.PRIMARY_STANZA, MEMBER_DATA_DIR)


def archive_from_start(settings: Settings, groups: list[tuple[str, Group]], say: Say) -> None:
    """Create and check the stanza of the last of ``groups`` (``(stanza, group)`` of every
    Patroni group that runs now, the main one first) as soon as it has started, before any
    data reaches it.

    A group is made archiving (:func:`archive_settings`), and until its stanza exists every
    archive attempt fails and PostgreSQL keeps the segment in ``pg_wal``: with the stanzas
    made at the end of ``up``, after the data step and the partition moves, the WAL of the
    whole load waited there (17 GB at 20M ratings, bench_scale). Raises
    :class:`OpsCommandFailed` when pgBackRest fails (archiving does not work).
    """
    config = backup.backup_config(settings)
    started = [backup.group_server(stanza, group) for stanza, group in groups]
    # The servers of an earlier `up` stay in the configuration: a shard set up then archives,
    # and when it starts again before setup_backups its archive_command must find its stanza.
    earlier = [
        item
        for item in backup.local_servers(settings)
        if item.name not in {s.name for s in started}
        and all(m.info_file.exists() for m in item.members or (item.server,))
    ]
    stanza = groups[-1][0]
    backup.create_stanzas(config, [*started, *earlier], [stanza])
    say(f"backups: pgBackRest stanza {stanza} archives from the group's start")


def main_group(settings: Settings) -> list[tuple[str, Group]]:
    """``[(stanza, group)]`` of the main Patroni group when there is one, else ``[]``."""
    root = ha.group_root(settings.state_dir.resolve(), ha.MAIN_SCOPE)
    return [(backup.PRIMARY_STANZA, load_group(root))] if is_group(root) else []


def setup_backups(settings: Settings, say: Say) -> list[str]:
    """``backup setup`` for the primary and every recorded shard; the stanzas.

    May restart servers (archive_mode), on the ports they had.
    """
    servers = backup.local_servers(settings)
    backup.setup(backup.backup_config(settings), servers, durable=True)
    stanzas = [item.name for item in servers]
    say(f"backups: pgBackRest stanzas {', '.join(stanzas)} ready")
    return stanzas
