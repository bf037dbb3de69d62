"""``cluster restart``: bring crashed members of a running cluster back, or restart named ones.

Without names it reconciles: every member whose own process is gone is started again (a web
instance someone restarted by hand on its port is replaced by the cluster's own), and what
runs is kept. With names, those members are stopped and started even when they run. Either
way a member comes back on the port it had, the way ``cluster up`` started it, the databases
first and the directors last, and the record is saved after each one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from movierec.cluster.member_control import start_member, stop_member
from movierec.cluster.members import load_record, member_alive, record_path, save_record
from movierec.config import Settings
from movierec.errors import NotFound

Say = Callable[[str], None]
START_ORDER = {
    "etcd": 0, "patroni": 1, "primary": 1, "shard": 2, "replica": 3, "dbswitch": 3, "redis": 4,
    "ai": 4, "web": 5, "director": 6,
}  # fmt: skip


def restart(settings: Settings, say: Say, names: Sequence[str] = ()) -> list[str]:
    """Restart the members called ``names`` (default: those whose process is gone); the names
    restarted, in order.

    Raises :class:`NotFound` when no cluster was started here or a name is not a member, and
    what :func:`start_member` raises when a member does not come back (those restarted before
    it stay recorded).
    """
    state = settings.state_dir.resolve()
    settings = settings.replace(state_dir=state)
    record = load_record(state)
    if record is None:
        raise NotFound(f"no cluster here: {record_path(state)} does not exist")
    known = [m.name for m in record.members]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise NotFound(f"no member named {', '.join(unknown)} (the cluster has {', '.join(known)})")
    order = sorted(range(len(record.members)), key=lambda i: START_ORDER[record.members[i].role])
    restarted = []
    for index in order:
        member = record.members[index]
        if not (member.name in names if names else not member_alive(member)):
            continue
        if not member.owned:
            say(f"{member.name}: not started by `cluster up`; start it the way it was started")
            continue
        stop_member(settings, record, member, say, alone=True)  # its group keeps serving
        record.members[index] = fresh = start_member(settings, record, member)
        save_record(state, record)
        restarted.append(member.name)
        say(f"restarted {member.name} (pid {fresh.pid}, port {fresh.port})")
    return restarted
