"""Promote a standby to primary, never leaving two writable primaries.

The order is what keeps it safe. First check that the standby is up and in recovery, so that
fencing never leaves the cluster with nothing to promote. Then fence the old primary: stop
it when movierec runs it (fast shutdown streams all WAL to the connected standbys before the
server exits), refuse when it still answers and cannot be stopped. Then wait until the standby
has replayed the old primary's last checkpoint, so no commit is lost. Then mark the old data
directory with standby.signal, so that restarting it (``movierec db start-local``) brings it up
read-only, and only then ``pg_ctl promote``.

The other standbys of the old primary then follow the new one: each gets a slot on it, its
``primary_conninfo`` is pointed there, and a reload restarts its WAL receiver, which follows
the new timeline (``recovery_target_timeline`` is ``latest``). Since the old primary sent them
everything before it stopped, none is ahead of the point where the timelines part. One that
is down, or does not stream from the new primary in time, is reported as an orphan to be
recreated.
"""

from __future__ import annotations

import dataclasses
import time
from contextlib import suppress
from dataclasses import dataclass

from psycopg import sql
from psycopg.conninfo import make_conninfo

from movierec.config import Settings
from movierec.db.local_server import LocalPostgres
from movierec.db.replicas import drop_slot, slot_exists, slot_name
from movierec.db.tools import give_to_server_user, run_pg_tool
from movierec.db.topology import (
    PromotionRefused,
    ReplicationError,
    Role,
    Server,
    Topology,
    connect,
    load_topology,
    reachable,
    save_topology,
    server_url,
    topology_lock,
)
from movierec.errors import BadInput, DatabaseUnavailable, OpsCommandFailed


@dataclass(frozen=True)
class Promotion:
    """What ``promote`` did, for the admin."""

    primary: Server  # the promoted server, now the primary
    url: str  # its database URL (password masked): the new MOVIEREC_DATABASE_URL
    former: Server  # the old primary, now a former primary
    fencing: str  # how the old primary was fenced, in words
    followers: tuple[str, ...] = ()  # the old primary's other standbys, now following this one
    orphans: tuple[str, ...] = ()  # other standbys still following the old primary


def promote(settings: Settings, name: str, force: bool = False, wait: float = 60.0) -> Promotion:
    """Fence the primary and promote standby ``name`` in its place.

    With ``force``, promote even when the standby has not replayed everything the old primary
    wrote (those commits are lost). Raises :class:`NotFound` for an unknown name,
    :class:`BadInput` for a server that is not a local standby, :class:`DatabaseUnavailable`
    when the standby is down, :class:`PromotionRefused` when the old primary cannot be fenced
    or the standby lags behind it, and :class:`OpsCommandFailed` / :class:`ReplicationError`
    when pg_ctl promote fails.
    """
    with topology_lock(settings):
        topology = load_topology(settings)
        target = topology.get(name)
        if target.role is not Role.STANDBY or target.local is None:
            raise BadInput(f"{name} is a {target.role} not run here; only a local standby")
        with connect(settings, target) as conn:
            if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                raise PromotionRefused(f"{name} is not in recovery: it is writable already")
        old = topology.primary()
        fencing, final_lsn = _fence(settings, old)
        if final_lsn is not None:
            _wait_for_replay(settings, target, final_lsn, force, wait)
        if old.local is not None:
            _mark_standby(old.local)
        run_pg_tool(
            "pg_ctl",
            ["promote", "-D", str(target.local.data_dir), "-w", "-t", str(int(wait))],
            timeout=wait + 30,
        )
        _wait_until_writable(settings, target, wait)
        _forget_standby_settings(settings, target)
        new = dataclasses.replace(target, role=Role.PRIMARY, slot=None, upstream=None)
        former = dataclasses.replace(old, role=Role.FORMER_PRIMARY)
        topology = topology.with_server(new).with_server(former)
        save_topology(settings, topology)
        followers, orphans = _repoint(settings, topology, old.name, new, wait)
    url = server_url(settings, new)
    return Promotion(new, url, former, fencing, followers, orphans)


def _repoint(
    settings: Settings, topology: Topology, old: str, new: Server, wait: float
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Make the standbys of ``old`` follow ``new``, each saved in the topology once it
    streams; the names of those that do, and of those left behind (orphans)."""
    followers, orphans = [], []
    for standby in topology.standbys():
        if standby.upstream != old:
            continue
        moved = _follow(settings, new, standby, wait)
        if moved is None:
            orphans.append(standby.name)
            continue
        followers.append(standby.name)
        topology = topology.with_server(moved)
        save_topology(settings, topology)
    return tuple(followers), tuple(orphans)


def _follow(settings: Settings, primary: Server, standby: Server, wait: float) -> Server | None:
    """Point ``standby`` at the new ``primary`` through a slot of its own there; its new
    entry, or None when it is not run here, is down, or does not stream within ``wait``
    (its slot is dropped again, or it would keep WAL on the primary forever)."""
    if standby.local is None or not reachable(settings, standby):
        return None
    slot = slot_name(standby.name)
    with connect(settings, primary) as conn:
        if not slot_exists(conn, slot):
            # Reserved now: WAL from here on stays until the standby has it.
            conn.execute("SELECT pg_create_physical_replication_slot(%s, true)", (slot,))
    try:
        _point_at(settings, standby, primary, slot)
        if _streams_from(settings, standby, primary, wait):
            return dataclasses.replace(standby, slot=slot, upstream=primary.name)
    except (DatabaseUnavailable, ReplicationError):
        pass  # the promotion stands; this standby is reported as an orphan
    with suppress(ReplicationError):  # still in use after its wait: the standby came late
        drop_slot(settings, primary, slot)
    return None


def _point_at(settings: Settings, standby: Server, primary: Server, slot: str) -> None:
    """Set ``standby``'s primary_conninfo and slot to ``primary``'s, and reload it."""
    with connect(settings, standby) as conn:
        current = conn.execute("SHOW primary_conninfo").fetchone()[0]
        # The same user, application_name and password file; the new primary's address.
        conninfo = make_conninfo(current, host=primary.host, port=primary.live_port())
        for setting, value in (("primary_conninfo", conninfo), ("primary_slot_name", slot)):
            # ALTER SYSTEM takes no parameters: the value goes in as a quoted literal.
            change = sql.SQL("ALTER SYSTEM SET {} = {}")
            conn.execute(change.format(sql.Identifier(setting), sql.Literal(value)))
        conn.execute("SELECT pg_reload_conf()")


def _streams_from(settings: Settings, standby: Server, primary: Server, wait: float) -> bool:
    """Whether ``standby``'s WAL receiver streams from ``primary`` within ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        with suppress(DatabaseUnavailable), connect(settings, standby) as conn:
            found = conn.execute(
                "SELECT sender_port FROM pg_stat_wal_receiver WHERE status = 'streaming'"
            ).fetchone()
            if found is not None and found[0] == primary.live_port():
                return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def _fence(settings: Settings, old: Server) -> tuple[str, str | None]:
    """Make sure ``old`` accepts no more writes; return what was done and its final WAL LSN.

    The LSN is that of its shutdown checkpoint, or None when it is unknown (not local, or it
    crashed). Raises :class:`PromotionRefused` when it still answers.
    """
    local = old.local
    if local is None:
        if reachable(settings, old):
            raise PromotionRefused(
                f"the primary {old.name} ({old.address}) still answers and movierec does not run"
                " it, so it cannot fence it: stop it, then promote"
            )
        return "unreachable and not run by movierec: make sure it stays down", None
    if local.is_running():
        try:
            local.stop()
        except OpsCommandFailed as exc:
            raise PromotionRefused(f"cannot stop the primary {old.name}: {exc}") from exc
        how = "stopped (fast shutdown)"
    else:
        how = "was already stopped"
    if reachable(settings, old):
        raise PromotionRefused(
            f"a server still answers at {old.address} after stopping {old.name}; stop it first"
        )
    cluster_state, checkpoint = _control_data(local)
    if cluster_state != "shut down":
        how += f"; it did not shut down cleanly ({cluster_state}): unstreamed commits are lost"
        return how, None
    return how + "; marked standby, so a restart comes up read-only", checkpoint


def _control_data(local: LocalPostgres) -> tuple[str, str]:
    """The cluster state and latest checkpoint LSN pg_controldata reads from the data dir."""
    values = {}
    for line in run_pg_tool("pg_controldata", [str(local.data_dir)], timeout=30).splitlines():
        key, _, value = line.partition(":")
        values[key.strip()] = value.strip()
    return values.get("Database cluster state", "unknown"), values["Latest checkpoint location"]


def _wait_for_replay(settings: Settings, target: Server, lsn: str, force: bool, wait: float):
    """Wait until ``target`` replayed WAL up to ``lsn``; raises :class:`PromotionRefused`."""
    deadline = time.monotonic() + wait
    while True:
        with connect(settings, target) as conn:
            done = conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)).fetchone()[
                0
            ]
        if done or force:
            return
        if time.monotonic() > deadline:
            raise PromotionRefused(
                f"{target.name} has not replayed the primary's WAL up to {lsn}; promoting would"
                " lose commits. Restart the old primary (movierec db start-local), or --force"
            )
        time.sleep(0.1)


def _mark_standby(local: LocalPostgres) -> None:
    """standby.signal: if anyone starts the old primary again, it is a read-only standby."""
    signal = local.data_dir / "standby.signal"
    signal.touch()
    give_to_server_user(signal)


def _wait_until_writable(settings: Settings, server: Server, wait: float) -> None:
    deadline = time.monotonic() + wait
    while True:
        try:
            with connect(settings, server) as conn:
                if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                    return
        except DatabaseUnavailable:
            pass  # the server may drop connections at the end of recovery
        if time.monotonic() > deadline:
            raise ReplicationError(f"{server.name} is still in recovery after {wait:.0f} s")
        time.sleep(0.05)


def _forget_standby_settings(settings: Settings, server: Server) -> None:
    """Drop what the new primary copied from its standby days.

    synchronous_standby_names came from the old primary's postgresql.auto.conf when the base
    backup ran with sync on; with no standby of its own, every commit would wait forever.
    """
    with connect(settings, server) as conn:
        conn.execute("ALTER SYSTEM RESET synchronous_standby_names")
        conn.execute("ALTER SYSTEM RESET primary_conninfo")
        conn.execute("ALTER SYSTEM RESET primary_slot_name")
        conn.execute("SELECT pg_reload_conf()")
