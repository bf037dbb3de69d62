"""Start, add, remove and stop the Patroni members of a PostgreSQL group on this machine.

Each member is one ``patroni <member>/patroni.yml`` process (run as the PostgreSQL OS user
when we are root), which starts and watches its own PostgreSQL. The first member of a new
group bootstraps it (initdb, the superuser's and replication users' passwords); every later
one is cloned by Patroni from the leader (pg_basebackup, each tablespace mapped to the
member's own directory) and streams from it. What the group is made of is
:mod:`movierec.db.patroni`'s record; this module keeps it in step with what runs.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path

from movierec.cluster.daemon import Daemon
from movierec.db.patroni import (
    Group,
    Member,
    MemberView,
    Timing,
    cluster_view,
    is_group,
    is_ready,
    load_group,
    save_group,
    write_config,
)
from movierec.db.tools import check_server_user_can_enter, give_to_server_user
from movierec.errors import BadInput, DatabaseUnavailable, OpsCommandFailed
from movierec.files import exclusive_lock

MAX_MEMBERS = 5
REST_OFFSET = MAX_MEMBERS  # member i: PostgreSQL on first_port + i, REST on + 5 + i
BOOTSTRAP_TIMEOUT = 120.0
CLONE_TIMEOUT = 600.0  # a replica of a large database takes a while to copy
STOP_TIMEOUT = 60.0


def patroni_binary() -> str:
    """The ``patroni`` script installed beside this Python (the .venv, from PyPI)."""
    path = Path(sys.executable).parent / "patroni"
    if not path.exists():
        raise OpsCommandFailed(
            f"{path} not found; install movierec's dependencies (pip install -e .)"
        )
    return str(path)


def member_name(index: int) -> str:
    """Members are pg1, pg2, ...: names that say nothing of a role that changes."""
    return f"pg{index + 1}"


def new_member(group_root: Path, first_port: int, index: int) -> Member:
    return Member(
        member_name(index),
        group_root / member_name(index),
        first_port + index,
        first_port + REST_OFFSET + index,
    )


def daemon(member: Member) -> Daemon:
    return Daemon(f"patroni {member.name}", member.state_dir / "patroni.pid", member.log_file)


def group_lock(root: Path) -> AbstractContextManager[None]:
    """Hold an exclusive lock so two commands never change a group at the same time."""
    return exclusive_lock(root / "group.lock")


def start_member(group: Group, member: Member) -> bool:
    """Render the member's configuration and start its Patroni unless it runs; True when
    started here. Raises :class:`OpsCommandFailed`."""
    process = daemon(member)
    if process.running():
        return False
    write_config(group, member)
    process.start([patroni_binary(), str(member.config_file)], as_server_user=True)
    return True


def stop_member(member: Member) -> bool:
    """Stop the member's Patroni, which first stops its PostgreSQL (fast shutdown); False
    when it did not run. Raises :class:`OpsCommandFailed`."""
    return daemon(member).stop(timeout=STOP_TIMEOUT)


def running_members(group: Group) -> list[Member]:
    return [m for m in group.members if daemon(m).running()]


def wait_until(
    group: Group,
    ready: Callable[[list[MemberView]], bool],
    what: str,
    timeout: float,
    watch: Member | None = None,
) -> list[MemberView]:
    """Poll ``GET /cluster`` until ``ready`` holds; the last view. Raises
    :class:`OpsCommandFailed` after ``timeout`` (or when ``watch``'s Patroni exits), quoting
    the end of its log."""
    deadline = time.monotonic() + timeout
    views: list[MemberView] = []
    while True:
        try:
            views = cluster_view(group)
            if ready(views):
                return views
        except DatabaseUnavailable:
            pass
        if watch is not None and not daemon(watch).running():
            raise OpsCommandFailed(f"Patroni of {watch.name} exited: {daemon(watch).log_tail()}")
        if time.monotonic() > deadline:
            seen = ", ".join(f"{v.name} {v.role} {v.state}" for v in views) or "no answer"
            tail = f"; {daemon(watch).log_tail()}" if watch is not None else ""
            raise OpsCommandFailed(f"group {group.scope}: not {what} after {timeout:.0f} s "
                                   f"({seen}){tail}")  # fmt: skip
        time.sleep(0.2)


def has_running_leader(views: list[MemberView]) -> bool:
    return any(v.is_leader and v.state == "running" for v in views)


def has_sync_standby(views: list[MemberView]) -> bool:
    return any(v.role == "sync_standby" and v.state == "streaming" for v in views)


def streams(member: Member) -> Callable[[list[MemberView]], bool]:
    """Whether ``member`` is a replica streaming from the running leader."""
    return lambda views: (
        has_running_leader(views)
        and any(v.name == member.name and not v.is_leader for v in views)
        and is_ready(member)
    )


def open_group(
    root: Path,
    scope: str,
    etcd_url: str,
    first_port: int,
    primary_port: int,
    replica_port: int,
    synchronous: bool = True,
    timing: Timing | None = None,
    settings: dict[str, str] | None = None,
) -> tuple[Group, bool]:
    """The group under ``root``, bootstrapping it with one member when it is new; its
    members that were stopped are started again. ``(group, started_here)``; returns once it
    has a running leader. Raises :class:`BadInput` when ``root`` holds a plain server,
    :class:`OpsCommandFailed` when Patroni does not come up."""
    if (root / "pgdata").exists():
        raise BadInput(
            f"{root} holds a server movierec runs without Patroni; replicas need a group "
            "made by Patroni: use another state directory (or move this one away)"
        )
    with group_lock(root):
        if is_group(root):
            group = load_group(root)
        else:
            check_server_user_can_enter(root)
            root.chmod(0o755)
            give_to_server_user(root)
            group = Group(
                scope, root.resolve(), etcd_url, (new_member(root.resolve(), first_port, 0),),
                primary_port, replica_port, synchronous, timing or Timing(),
                settings=dict(settings or {}),
            )  # fmt: skip
            save_group(group)
        started = [start_member(group, m) for m in group.members]
    first = group.members[0]
    wait_until(group, has_running_leader, "led by a primary", BOOTSTRAP_TIMEOUT, first)
    return group, any(started)


def add_member(root: Path, timeout: float = CLONE_TIMEOUT) -> Member:
    """Add a member to the group under ``root``: Patroni clones it from the leader and it
    streams. Returns it. Raises :class:`NotFound` without a group, :class:`BadInput` when it
    has :data:`MAX_MEMBERS` already, :class:`OpsCommandFailed` when it does not stream
    within ``timeout`` (it is removed again)."""
    with group_lock(root):
        group = load_group(root)
        taken = {m.name for m in group.members}
        index = next((i for i in range(MAX_MEMBERS) if member_name(i) not in taken), None)
        if index is None:
            raise BadInput(f"group {group.scope} has {MAX_MEMBERS} members already")
        first_port = group.members[0].pg_port - _index(group.members[0])
        member = new_member(group.root, first_port, index)
        if member.state_dir.exists():
            shutil.rmtree(member.state_dir)  # left by a failed add: Patroni wants it empty
        group = group.with_member(member)
        save_group(group)
        start_member(group, member)
    try:
        wait_until(group, streams(member), f"streaming to {member.name}", timeout, member)
    except BaseException:
        remove_member(root, member.name)
        raise
    return member


def _index(member: Member) -> int:
    return int(member.name.removeprefix("pg")) - 1


def remove_member(root: Path, name: str) -> Member:
    """Stop member ``name`` and delete its files; Patroni forgets it and drops its slot on
    the leader. Raises :class:`NotFound` for an unknown member, :class:`BadInput` for the
    leader (switch over first) or the last member."""
    with group_lock(root):
        group = load_group(root)
        member = group.member(name)
        if len(group.members) == 1:
            raise BadInput(f"{name} is the last member of {group.scope}")
        try:
            views = cluster_view(group)
        except DatabaseUnavailable:
            views = []
        if any(v.name == name and v.is_leader for v in views):
            raise BadInput(
                f"{name} is the primary of {group.scope}; promote another member first "
                f"(`movierec db replica promote NAME`)"
            )
        stop_member(member)
        shutil.rmtree(member.state_dir, ignore_errors=True)
        save_group(group.without(name))
    return member


def stop_group(group: Group) -> list[str]:
    """Stop every member, replicas first and the leader last (so no needless failover);
    the names stopped."""
    try:
        views = cluster_view(group)
        leaders = {v.name for v in views if v.is_leader}
    except DatabaseUnavailable:
        leaders = set()
    ordered = sorted(group.members, key=lambda m: m.name in leaders)
    return [m.name for m in ordered if stop_member(m)]


def add_tablespace_dirs(group: Group, name: str) -> Group:
    """Record tablespace ``name`` on the group and make its directory on every member (the
    leader's is the one CREATE TABLESPACE names); members' configurations map it from then
    on, so a clone never shares the directory. Re-renders the running members' configs."""
    for member in group.members:
        directory = group.tablespace_dir(member, name)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        give_to_server_user(directory.parent)
        give_to_server_user(directory)
    if name not in group.tablespaces:
        group = replace(group, tablespaces=(*group.tablespaces, name))
        save_group(group)
    for member in running_members(group):
        write_config(group, member)  # read at the member's next clone (reinit) or start
    return group
