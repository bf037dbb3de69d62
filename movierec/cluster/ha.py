"""The database of a local cluster with replicas: etcd, the main PostgreSQL group under
Patroni, and the database switch (the director's TCP level) in front of it.

``cluster up`` with replicas (``--replicas N``, ``--topology full``) starts etcd, then the
group's first member (Patroni bootstraps it), then the switch; the schema, the data and the
tablespace go in through the switch's primary frontend; then the replicas are cloned (after
the tablespace, so each maps it to a directory of its own). The web and AI servers get the
switch's two frontends as their database URLs, so they follow the primary without a restart.

Ports, from the cluster's base port P (the director's): the switch's frontends of group g
(0: main, k: shard k) on P+200+2g (primary) and P+201+2g (reads); etcd on P+190 (clients) and
P+191 (peers); the members of group g from P+210+10g (PostgreSQL) and P+215+10g (Patroni's
REST API).
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path

from movierec.cluster import patroni
from movierec.cluster.etcd import LocalEtcd
from movierec.cluster.members import Member, start_time
from movierec.db.local_server import LocalPostgres
from movierec.db.patroni import (
    ETCD_USER_KEY,
    Group,
    cluster_view,
    etcd_user,
    is_group,
    load_group,
    reinitialize,
    synchronous_mode,
)
from movierec.db.patroni import Member as GroupMember
from movierec.db.pgbackrest import BackupConfig
from movierec.db.restore import RestoredServer, RestorePlan, run_restore
from movierec.director import database as switch
from movierec.errors import BadInput, DatabaseUnavailable, MovierecError
from movierec.ports import port_free

MAIN_SCOPE = "main"
GROUP_DIR = "postgres"  # the main group lives where the plain primary would
HA_ROLES = ("etcd", "dbswitch", "patroni")
SYNC_TIMEOUT = 60.0  # Patroni names a streaming replica within two loops (loop_wait 10 s)

Say = Callable[[str], None]


def etcd_for(state: Path, base_port: int) -> LocalEtcd:
    return LocalEtcd(state / "etcd", base_port + 190, base_port + 191)


def group_ports(base_port: int, index: int) -> tuple[int, int, int]:
    """(first member port, primary frontend, read frontend) of group ``index``."""
    return base_port + 210 + 10 * index, base_port + 200 + 2 * index, base_port + 201 + 2 * index


def ports(base_port: int, groups: int) -> list[int]:
    """Every port the database layer of ``groups`` groups listens on (for the free-port
    check before ``up``)."""
    etcd = etcd_for(Path("."), base_port)
    found = [etcd.client_port, etcd.peer_port]
    for index in range(groups):
        first, rw, ro = group_ports(base_port, index)
        found += [rw, ro, *range(first, first + 2 * patroni.MAX_MEMBERS)]
    return found


def check_ports_free(state: Path, base_port: int, groups: int) -> None:
    """Raise :class:`BadInput` naming the database layer's ports something else listens on
    (when this cluster's own etcd runs, its layer is up already and holds them)."""
    if etcd_for(state, base_port).daemon.running():
        return
    taken = [port for port in ports(base_port, groups) if not port_free(port)]
    if taken:
        raise BadInput(
            f"port(s) {', '.join(map(str, taken))} on 127.0.0.1 (etcd, Patroni, the database "
            "switch) are in use; pick another --port or stop what listens there"
        )


def main_group(state: Path) -> Group | None:
    """The main group when the cluster under ``state`` runs one."""
    root = state / GROUP_DIR
    return load_group(root) if is_group(root) else None


def start_main_group(
    state: Path,
    base_port: int,
    record_members: list[Member],
    say: Say,
    settings: dict[str, str] | None = None,
) -> Group:
    """etcd, the main group's existing members (its first one when it is new, made with the
    PostgreSQL parameters ``settings``) and the switch; each recorded in ``record_members``.
    Returns once the group has a primary."""
    start_etcd(state, base_port, record_members, say)
    group = start_group(state, base_port, 0, record_members, say, settings)
    start_switch(state, [group], record_members, say)
    return group


def start_etcd(state: Path, base_port: int, record_members: list[Member], say: Say) -> None:
    """The cluster's etcd, started unless it runs, recorded once in ``record_members``."""
    if any(m.role == "etcd" for m in record_members):
        return
    etcd = etcd_for(state, base_port)
    started = etcd.start()
    say(f"etcd: {etcd.url} ({'started' if started else 'already running'})")
    health, log = f"{etcd.url}/health", etcd.daemon.log_file
    entry = _daemon_member(
        "etcd", "etcd", etcd.client_port, etcd.daemon.pid(), started, health, log
    )
    record_members.append(entry)


def start_group(
    state: Path,
    base_port: int,
    index: int,
    record_members: list[Member],
    say: Say,
    settings: dict[str, str] | None = None,
) -> Group:
    """Group ``index`` (0: main, k: shard k) in the cluster's etcd: bootstrapped when new,
    its stopped members started; recorded in ``record_members``. Etcd must run."""
    scope = MAIN_SCOPE if index == 0 else f"shard{index}"
    root = group_root(state, scope)
    first, rw, ro = group_ports(base_port, index)
    new = not is_group(root)
    say(f"PostgreSQL: {'bootstrapping' if new else 'starting'} group {scope} under Patroni "
        f"in {root}")  # fmt: skip
    start_etcd(state, base_port, record_members, say)
    etcd = etcd_for(state, base_port)
    # Patroni's own etcd user, allowed its group's keys alone (passwords made on first use).
    etcd_password = LocalPostgres(root).passwords.get(ETCD_USER_KEY)
    etcd.grant_prefix(etcd_user(scope), etcd_password, f"/movierec/{scope}/")
    etcd_url = etcd.url
    group, _ = patroni.open_group(root, scope, etcd_url, first, rw, ro, settings=settings)
    record_patroni(group, record_members)
    return group


def record_patroni(group: Group, record_members: list[Member]) -> None:
    """Record every member of ``group`` that runs (replacing an older entry of it)."""
    for member in group.members:
        name = f"{group.scope}-{member.name}"
        process = patroni.daemon(member)
        health = f"{member.rest_url}/health"
        entry = _daemon_member(
            name, "patroni", member.pg_port, process.pid(), True, health, member.log_file,
            member.state_dir,
        )  # fmt: skip
        record_members[:] = [m for m in record_members if m.name != name]
        record_members.append(entry)


def start_switch(state: Path, groups: list[Group], record_members: list[Member], say: Say) -> None:
    started = switch.apply(state, groups)
    files = switch.switch_files(state)
    pid = switch.running_pid(files)
    if not any(m.name == "dbswitch" for m in record_members):
        entry = _daemon_member(
            "dbswitch", "dbswitch", groups[0].primary_port, pid, started, None, None
        )
        record_members.append(entry)
    for group in groups:
        say(f"database switch: group {group.scope} primary on 127.0.0.1:{group.primary_port}, "
            f"reads on 127.0.0.1:{group.replica_port} (HAProxy pid {pid})")  # fmt: skip


def _daemon_member(
    name: str,
    role: str,
    port: int,
    pid: int | None,
    owned: bool,
    health_url: str | None,
    log: Path | None,
    state_dir: Path | None = None,
) -> Member:
    return Member(
        name, role, port, pid, start_time(pid) if pid else None, owned, health_url,
        str(log) if log else None, str(state_dir) if state_dir else None,
    )  # fmt: skip


def frontend(group: Group, reads: bool = False) -> LocalPostgres:
    """The group as its clients see it: a :class:`LocalPostgres` whose port is the switch's
    primary (or read) frontend and whose passwords are the group's."""
    return LocalPostgres(group.root, port=group.replica_port if reads else group.primary_port)


def add_replicas(
    state: Path, count: int, record_members: list[Member], say: Say, scope: str = MAIN_SCOPE
) -> Group:
    """Clone members until group ``scope`` has ``count`` replicas; reload the switch with
    every group."""
    root = group_root(state, scope)
    group = load_group(root)
    while len(group.members) < count + 1:
        say(f"PostgreSQL: Patroni clones a replica of group {group.scope} (pg_basebackup)")
        member = patroni.add_member(root)
        group = load_group(root)
        say(f"PostgreSQL: {member.name} streams from the primary ({member.pg_port})")
    record_patroni(group, record_members)
    switch.apply(state, all_groups(state))
    return group


def wait_protected(state: Path, say: Say) -> None:
    """Return once every group of the cluster with a replica, in synchronous mode, has a
    synchronous standby; raise :class:`OpsCommandFailed` after ``SYNC_TIMEOUT``.

    A replica streams some 10-20 s (Patroni's loops) before its leader names it the
    synchronous standby, and until then a crashed primary has no one to fail over to: Patroni
    restarts it in place (README "Synchronous by default"). ``cluster up`` waited for
    streaming only, so a shard primary killed right after it was not failed over (the shard
    drill: in 1 of 3 runs the standby was named 3 s before the kill). Waiting at the end of
    ``up``, after the servers started, costs what is left of those seconds.
    """
    for group in all_groups(state):
        if len(group.members) > 1 and synchronous_mode(group):
            what = "protected by a synchronous standby"
            patroni.wait_until(group, patroni.has_sync_standby, what, SYNC_TIMEOUT)
            say(f"PostgreSQL: group {group.scope} has a synchronous standby")


def tablespace_location(state: Path, name: str) -> Path | None:
    """Where tablespace ``name`` goes when the main group runs under Patroni: the leader's
    own directory, recorded on the group so every later member maps it to its own. None
    for a plain server."""
    group = main_group(state)
    if group is None:
        return None
    views = cluster_view(group)
    leader = next((v.name for v in views if v.is_leader), None)
    if leader is None:
        raise DatabaseUnavailable(f"group {group.scope} has no primary now")
    group = patroni.add_tablespace_dirs(group, name)
    return group.tablespace_dir(group.member(leader), name)


def stop(state: Path, member: Member, alone: bool = False) -> bool | None:
    """Stop one of the HA members of a record (etcd, the switch, a Patroni member); None for
    a member of another kind. A Patroni member stops its whole group (``cluster down``)
    unless ``alone`` (``cluster restart`` of that member: the others keep serving). Raises
    :class:`MovierecError`."""
    if member.role == "etcd":
        return etcd_for(state, 0).stop()  # the pid file is found by directory, not port
    if member.role == "dbswitch":
        return switch.stop(state)
    if member.role == "patroni" and member.state_dir and alone:
        directory = Path(member.state_dir)
        return patroni.stop_member(group_member(load_group(directory.parent), directory))
    if member.role == "patroni" and member.state_dir:
        # The whole group, replicas first: stopping its leader first would make Patroni
        # promote a replica only to stop it a moment later.
        directory = Path(member.state_dir)
        return directory.name in patroni.stop_group(load_group(directory.parent))
    return None


def restart(state: Path, member: Member) -> Member:
    """Start one HA member of a record again (``cluster restart``), on its ports; the member
    with its new process. Patroni restarts a crashed PostgreSQL by itself; this brings back
    a Patroni, the etcd or the switch that died. Raises :class:`MovierecError`."""
    if member.role == "etcd":
        etcd = LocalEtcd(state / "etcd", member.port, member.port + 1)
        etcd.start()
        pid = etcd.daemon.pid()
    elif member.role == "dbswitch":
        switch.apply(state, all_groups(state))
        pid = switch.running_pid(switch.switch_files(state))
    else:
        directory = Path(member.state_dir or "")
        group = load_group(directory.parent)
        found = group_member(group, directory)
        patroni.start_member(group, found)
        pid = patroni.daemon(found).pid()
    return dataclasses.replace(member, pid=pid, started=start_time(pid) if pid else None)


def details(state: Path) -> dict[str, str]:
    """``{record name: "leader running, timeline 2"}`` for the members of every Patroni
    group, from their REST APIs; a group that does not answer is left out."""
    shown = {}
    for group in all_groups(state):
        try:
            views = cluster_view(group)
        except MovierecError:
            continue
        for view in views:
            lag = "" if view.is_leader else f", lag {'?' if view.lag is None else view.lag} B"
            shown[f"{group.scope}-{view.name}"] = (
                f"{view.role} {view.state}, timeline {view.timeline or '?'}{lag}"
            )
    return shown


# --- what `movierec db replica` does --------------------------------------------------------


def group_root(state: Path, scope: str = MAIN_SCOPE) -> Path:
    """The directory of group ``scope``: the main group's, or a shard's (``shard1`` ...)."""
    if scope == MAIN_SCOPE:
        return state / GROUP_DIR
    return state / f"shard-{scope.removeprefix('shard')}"


def all_groups(state: Path) -> list[Group]:
    """Every Patroni group of the cluster under ``state``: the main one first."""
    roots = [state / GROUP_DIR, *sorted(state.glob("shard-*"))]
    return [load_group(root) for root in roots if is_group(root)]


def add_replica(state: Path, scope: str = MAIN_SCOPE) -> GroupMember:
    """Clone one more replica into group ``scope`` and put it behind the switch; the new
    member. Raises as :func:`movierec.cluster.patroni.add_member`."""
    member = patroni.add_member(group_root(state, scope))
    switch.apply(state, all_groups(state))
    return member


def remove_replica(state: Path, name: str, scope: str = MAIN_SCOPE) -> None:
    """Take replica ``name`` out of the switch, stop it and delete its files. Raises as
    :func:`movierec.cluster.patroni.remove_member`."""
    root = group_root(state, scope)
    group = load_group(root)
    group.member(name)  # NotFound before anything changes
    patroni.remove_member(root, name)
    switch.apply(state, all_groups(state))


def rejoin(state: Path, name: str, scope: str = MAIN_SCOPE) -> str:
    """Bring member ``name`` back as a replica of the current primary: start its Patroni when
    it is stopped (Patroni rewinds it with pg_rewind when it has diverged), else have
    Patroni rebuild it from the primary (reinit). What was done, in words."""
    root = group_root(state, scope)
    group = load_group(root)
    member = group.member(name)
    if patroni.start_member(group, member):
        how = "started; Patroni rewinds it onto the primary's timeline if it diverged"
    else:
        reinitialize(group, name)
        how = "rebuilt from the primary (Patroni reinit)"
    patroni.wait_until(group, patroni.streams(member), "streaming", patroni.CLONE_TIMEOUT, member)
    return how


# --- restore ---------------------------------------------------------------------------------


def restore_in_place(
    state: Path, config: BackupConfig, plan: RestorePlan, progress=None
) -> list[RestoredServer]:
    """Restore in place where Patroni runs groups: stop each group, restore its primary's
    data directory (as :func:`movierec.db.restore.run_restore` does for a plain server),
    then bring the group back from it alone: Patroni's state in etcd is reset (the restored
    primary starts a new history), and every other member is re-made from the restored
    primary (its old data is deleted before it starts, so no reader ever sees pre-restore
    rows). Raises as :func:`run_restore`."""
    groups = [load_group(item.server.state_dir.parent) for item in plan.items if item.managed]
    for group in groups:
        patroni.stop_group(group)
    restored = run_restore(config, plan, progress)
    for group, item in zip(groups, [i for i in plan.items if i.managed], strict=True):
        _restart_from(state, group, group_member(group, item.server.state_dir))
    if groups:
        switch.apply(state, all_groups(state))
    return restored


def group_member(group: Group, state_dir: Path) -> GroupMember:
    return next(m for m in group.members if m.state_dir.resolve() == state_dir.resolve())


def _restart_from(state: Path, group: Group, primary: GroupMember) -> None:
    """Start ``group`` again with ``primary`` (a restored, promoted data directory run
    without Patroni until now) as its leader and every other member cloned from it."""
    primary.local.stop()
    etcd = LocalEtcd(state / "etcd", int(group.etcd_url.rpartition(":")[2]), 0)
    etcd.delete_keys(f"/movierec/{group.scope}/", keep=("/config",))
    for member in group.members:
        if member.name != primary.name:
            shutil.rmtree(member.local.data_dir, ignore_errors=True)
            for name in group.tablespaces:
                shutil.rmtree(group.tablespace_dir(member, name), ignore_errors=True)
    patroni.start_member(group, primary)
    patroni.wait_until(group, patroni.has_running_leader, "led by the restored primary",
                       patroni.BOOTSTRAP_TIMEOUT, primary)  # fmt: skip
    for member in group.members:
        if member.name != primary.name:
            patroni.start_member(group, member)
    for member in group.members:
        if member.name != primary.name:
            patroni.wait_until(group, patroni.streams(member), f"streaming to {member.name}",
                               patroni.CLONE_TIMEOUT, member)  # fmt: skip
