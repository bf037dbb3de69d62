"""Bring a local cluster up, report on it, and take it down.

``up`` starts, on 127.0.0.1: the PostgreSQL primary under ``state_dir/postgres`` (reused when
it already runs), streaming replicas, shard servers, a second tablespace and a pgBackRest
repository when asked (:mod:`movierec.cluster.layout`), the AI instances, the web instances and
two directors (HAProxy) in front of the web instances; it waits until each answers its health
check, writes ``state_dir/cluster.json`` and returns while they keep running. ``down`` stops
what that file lists as started by ``up``, whatever runs as those members now (one restarted by
hand included, :mod:`movierec.cluster.member_control`): a database that was already running
stays up. ``cluster restart`` is :mod:`movierec.cluster.restart`.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from movierec import director
from movierec.cluster import ha, layout
from movierec.cluster.launch import Launch, start_instance
from movierec.cluster.member_control import (
    HEALTH_TIMEOUT,
    absent_detail,
    stop_member,
    wait_for,
)
from movierec.cluster.members import (
    DATABASE_ROLES,
    ClusterRecord,
    Member,
    is_running,
    load_record,
    member_alive,
    postgres_member,
    record_path,
    save_record,
    start_time,
)
from movierec.cluster.redis_server import start_redis
from movierec.cluster.spec import ClusterSpec
from movierec.config import Settings
from movierec.db import Database, LocalPostgres, upgrade
from movierec.db.backup import PRIMARY_STANZA
from movierec.db.roles import AI_ROLE, APP_ROLES, WEB_ROLE
from movierec.db.topology import PRIMARY_DIR
from movierec.director.haproxy import haproxy_binary
from movierec.errors import MovierecError, NotFound, OpsCommandFailed, first_line
from movierec.processes import Child

DATABASE = "movierec"
# Servers of every kind the cluster runs PostgreSQL in: movierec's own, and Patroni's.
ALL_DATABASE_ROLES = (*DATABASE_ROLES, *ha.HA_ROLES)

Say = Callable[[str], None]
Prepare = Callable[[Database, Settings], None]


def secret(path: Path, make: Callable[[], str]) -> str:
    """A value kept in ``path`` (mode 0600), made once: the site's secret key, a password."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    path.touch(mode=0o600)
    path.write_text(value + "\n")
    return value


def admin_url_file(settings: Settings) -> Path:
    """Where ``up`` leaves the owner's database URL (mode 0600) for admin commands."""
    return LocalPostgres(settings.state_dir.resolve() / PRIMARY_DIR).url_file


def _running_record(state: Path) -> ClusterRecord | None:
    record = load_record(state)
    if record is None:
        return None
    if any(is_running(m) for m in record.members if m.role not in ALL_DATABASE_ROLES):
        return record
    return None


def up(
    settings: Settings, spec: ClusterSpec, say: Say, prepare: Prepare | None = None
) -> ClusterRecord:
    """Start the cluster of ``spec`` and return its record once every server is healthy
    (and every replicated group has its synchronous standby: :func:`ha.wait_protected`).

    ``prepare`` runs after the schema is migrated and before the AI servers start (sample
    data, a model). On any failure, what was started is stopped again. Raises
    :class:`OpsCommandFailed` when a cluster already runs here or a server does not come up,
    :class:`BadInput` when a port is taken.
    """
    state = settings.state_dir.resolve()
    running = _running_record(state)
    if running is not None:
        raise OpsCommandFailed(
            f"a cluster already runs from {record_path(state)} ({running.url}); "
            "`movierec cluster restart` starts its missing members, `cluster down` stops it"
        )
    spec.check_ports_free()
    if spec.replicas or spec.shard_replicas:
        groups = 1 + (spec.shards if spec.shard_replicas else 0)
        ha.check_ports_free(state, spec.base_port, groups)
    record = ClusterRecord(url="")
    try:
        settings = _start_database(settings, spec, record, say)
        if prepare is not None:
            # The primary alone: training reads right after the data load, before a replica
            # need have replayed it (a replica then trained on no ratings at all).
            database = Database(settings.replace(replica_url=None))
            try:
                prepare(database, settings)
            finally:
                database.dispose()
        _start_layout(settings, spec, record, say)
        settings = _start_redis(settings, record, say)
        _start_servers(settings, spec, record, say)
        _start_director(settings, spec, record, say)
        if spec.replicas or spec.shard_replicas:
            ha.wait_protected(state, say)  # last: the servers' start-up overlaps the wait
    except BaseException:
        _stop(settings, record, lambda _text: None)
        raise
    save_record(state, record)
    return record


def _start_database(
    settings: Settings, spec: ClusterSpec, record: ClusterRecord, say: Say
) -> Settings:
    state = settings.state_dir.resolve()
    if spec.replicas:  # replicas are Patroni's: the clients reach the group through the switch
        archiving = layout.archive_settings(settings) if spec.backup else {}
        group = ha.start_main_group(state, spec.base_port, record.members, say, archiving)
        if spec.backup:  # before the data step writes the catalogue's WAL
            layout.archive_from_start(settings, [(PRIMARY_STANZA, group)], say)
        server = ha.frontend(group)
    else:
        server = layout.cluster_server(state / PRIMARY_DIR)
        was_running = server.is_running()
        say(f"PostgreSQL: {'using the running' if was_running else 'starting a'} server in "
            f"{server.state_dir}")  # fmt: skip
        server.start()
        record.members.append(postgres_member("postgres", "primary", server, not was_running))
    url = server.create_database(DATABASE)
    upgrade(url)
    server.give_passwords(*APP_ROLES)  # the roles the migrations made
    server.save_url(url)
    settings = settings.replace(
        database_url=url,
        secret_key=settings.secret_key or secret(state / "secret_key", secrets.token_hex),
        ai_key=settings.ai_key or secret(state / "ai_key", secrets.token_urlsafe),
        model_dir=settings.model_dir.resolve(),
        state_dir=state,
        replica_url=None,
    )
    if spec.replicas:  # reads go to the switch's read frontend (the replicas)
        settings = settings.replace(replica_url=ha.frontend(group, reads=True).url(DATABASE))
    return settings


def _start_layout(settings: Settings, spec: ClusterSpec, record: ClusterRecord, say: Say) -> None:
    """Shards, the tablespace and backups (after the data is loaded, so partitions move with
    their rows). Backup setup may restart servers: their members get the new pids."""
    if spec.shards and spec.shard_replicas:  # each shard a Patroni group of its own
        groups = layout.start_shard_groups(
            settings, spec.shards, spec.shard_replicas, spec.base_port, DATABASE,
            record.members, say, spec.backup,
        )  # fmt: skip
        layout.register_shards(settings, groups, DATABASE, say)
    elif spec.shards:
        shards = layout.start_shards(settings, spec.shards, DATABASE, say)
        for name, server, owned in shards:
            record.members.append(postgres_member(name, "shard", server, owned))
        layout.register_shards(settings, [(n, s) for n, s, _ in shards], DATABASE, say)
    if spec.tablespace:
        layout.add_disk2(settings, say)
    if spec.replicas:  # after the tablespace: each replica maps it to a directory of its own
        ha.add_replicas(settings.state_dir, spec.replicas, record.members, say)
    if spec.backup:
        layout.setup_backups(settings, say)
        for i, member in enumerate(record.members):
            if member.role in DATABASE_ROLES and member.state_dir:
                server = LocalPostgres(Path(member.state_dir), port=member.port)
                fresh = postgres_member(member.name, member.role, server, member.owned)
                record.members[i] = fresh


def _start_redis(settings: Settings, record: ClusterRecord, say: Say) -> Settings:
    """The cluster's Redis (:mod:`movierec.cluster.redis_server`), unless the settings name
    another store; the settings with its URL."""
    if not settings.ratelimit_storage_uri.startswith("memory://"):
        return settings
    started = start_redis(settings, secret, say)
    if started is None:
        return settings
    member, url = started
    record.members.append(member)
    return settings.replace(ratelimit_storage_uri=url)


def _start_servers(settings: Settings, spec: ClusterSpec, record: ClusterRecord, say: Say) -> None:
    ai_urls = [f"http://127.0.0.1:{port}" for port in spec.ai_ports]
    env = {
        "MOVIEREC_SECRET_KEY": settings.secret_key or "",
        "MOVIEREC_AI_KEY": settings.ai_key or "",  # the AI instances demand it, the web sends it
        "MOVIEREC_RATELIMIT_STORAGE_URI": settings.ratelimit_storage_uri,
        "MOVIEREC_MODEL_DIR": str(settings.model_dir),
        "MOVIEREC_STATE_DIR": str(settings.state_dir),
        "MOVIEREC_AI_URLS": ",".join(ai_urls),
        "MOVIEREC_AI_SHARDS": "",
        # Behind the director, the client is the one HAProxy names in X-Forwarded-For.
        "MOVIEREC_WEB_PROXY_COUNT": "1" if spec.director_port is not None else "0",
    }
    logs = settings.state_dir / "logs"
    children: list[tuple[Member, Child, int]] = []
    ai_workers = spec.ai_workers or settings.ai_workers
    plan = [("ai", i, port, "/health", ai_workers) for i, port in enumerate(spec.ai_ports)]
    plan += [
        ("web", i, port, "/healthz", spec.workers_per_web())
        for i, port in enumerate(spec.web_ports)
    ]
    for role, index, port, health, workers in plan:
        name = f"{role}-{index + 1}"
        args = ["serve", role, "--port", str(port), "--workers", str(workers)]
        health_url = f"http://127.0.0.1:{port}{health}"
        child_env = {**env, **_database_env(settings, role), "MOVIEREC_INSTANCE_NAME": name}
        launch = Launch.of(name, role, port, args, health_url, logs / f"{name}.log", child_env)
        member, child = start_instance(settings.state_dir, launch)
        record.members.append(member)
        children.append((member, child, workers))
    for member, child, workers in children:
        child.wait_healthy(HEALTH_TIMEOUT)
        say(
            f"{member.name}: http://127.0.0.1:{member.port}/ (pid {member.pid}, "
            f"{workers} worker{'s' if workers != 1 else ''})"
        )
    record.url = f"http://127.0.0.1:{spec.web_ports[0]}/"


def _database_env(settings: Settings, role: str) -> dict[str, str]:
    """The database URLs of a web or AI server: the cluster's, with the role the server
    needs (:mod:`movierec.db.roles`) and its password as the user. Replicas are copies of
    the primary, so the same password works on them."""
    user = WEB_ROLE if role == "web" else AI_ROLE
    primary = LocalPostgres(settings.state_dir.resolve() / PRIMARY_DIR)
    urls = {"DATABASE_URL": settings.database_url, "REPLICA_URL": settings.replica_url}
    return {
        f"MOVIEREC_{name}": primary.as_role(url, user) if url else "" for name, url in urls.items()
    }


def _start_director(settings: Settings, spec: ClusterSpec, record: ClusterRecord, say: Say) -> None:
    """The directors, each a member (and an HAProxy director) named ``director-<n>``, in front
    of every web instance: two by default, so that losing one loses no client that can try
    the other address (README, "Serving at scale")."""
    if not spec.director_ports:
        return
    try:
        haproxy_binary()
    except OpsCommandFailed as exc:
        say(f"director: skipped ({exc}); the site is served by web-1 directly")
        return
    backends = tuple(
        director.Backend(f"web-{i + 1}", "127.0.0.1", port) for i, port in enumerate(spec.web_ports)
    )
    for index, port in enumerate(spec.director_ports):
        name = f"director-{index + 1}"
        pid = director.start(settings, director.DirectorState(name, port, backends))
        health_url = f"http://127.0.0.1:{port}/healthz"
        member = Member(name, "director", port, pid, start_time(pid), True, health_url)
        record.members.insert(index, member)
        wait_for(health_url, name)
        say(f"{name}: http://127.0.0.1:{port}/ (HAProxy pid {pid}) -> {len(backends)} web "
            "instance(s)")  # fmt: skip
    record.url = f"http://127.0.0.1:{spec.director_ports[0]}/"


def down(settings: Settings, say: Say) -> list[str]:
    """Stop what ``up`` started (in reverse order) and forget the cluster; the names stopped.

    Raises :class:`NotFound` when no cluster was started here, :class:`OpsCommandFailed` when
    a process survives SIGKILL.
    """
    state = settings.state_dir.resolve()
    record = load_record(state)
    if record is None:
        raise NotFound(f"no cluster here: {record_path(state)} does not exist")
    stopped = _stop(settings.replace(state_dir=state), record, say)
    record_path(state).unlink(missing_ok=True)
    return stopped


def _stop(settings: Settings, record: ClusterRecord, say: Say) -> list[str]:
    """Stop the record's members that ``up`` started; keep going past a failure and raise
    the first one at the end."""
    stopped: list[str] = []
    problems: list[MovierecError] = []
    # The director first (no new requests reach the instances), the databases last.
    order = {"director": 0, "web": 1, "ai": 2, "redis": 2, "replica": 3, "shard": 4, "primary": 5,
             "patroni": 6, "dbswitch": 7, "etcd": 8}  # fmt: skip
    for member in sorted(reversed(record.members), key=lambda m: order.get(m.role, 6)):
        if not member.owned or member.role not in order:
            continue
        try:
            done = stop_member(settings, record, member, say)
        except MovierecError as exc:
            problems.append(exc)
            continue
        if done:
            stopped.append(member.name)
            say(f"stopped {member.name}")
    if problems:
        raise problems[0]
    return stopped


@dataclass(frozen=True)
class MemberStatus:
    member: Member
    running: bool
    health: str  # ok, down, HTTP 503, ...
    hit_rate: float | None = None  # web: the answering worker's cache hit rate
    detail: str = ""


def status(settings: Settings) -> tuple[ClusterRecord, list[MemberStatus]]:
    """The cluster's record and each member's state. Raises :class:`NotFound` when no
    cluster was started here."""
    state = settings.state_dir.resolve()
    record = load_record(state)
    if record is None:
        raise NotFound(f"no cluster here: {record_path(state)} does not exist")
    report = []
    patroni_details = ha.details(state)
    for member in record.members:
        # Ok only when the member's own process runs and answers: a server someone started
        # by hand on its port answers too, but `down` and `restart` do not know it as ours.
        running = member_alive(member)
        health = "ok" if running else "down"
        hit_rate, detail = None, ""
        if not running:
            detail = absent_detail(member)
        elif member.health_url:
            health = _health(member.health_url)
        elif member.role in DATABASE_ROLES and member.state_dir:
            health = _pg_health(LocalPostgres(Path(member.state_dir), port=member.port))
        detail = patroni_details.get(member.name, detail)
        if member.role == "web" and health == "ok":
            hit_rate, detail = _hit_rate(member.port)
        if member.role == "director" and running:
            name = record.director_name(member)
            try:
                backends = director.status(settings.replace(state_dir=state), name)
                up_count = sum(1 for b in backends.backends if b.up)
                detail = f"{up_count}/{len(backends.backends)} web instances up"
            except MovierecError as exc:
                detail = str(exc)
        report.append(MemberStatus(member, running, health, hit_rate, detail))
    return record, report


def _health(url: str) -> str:
    try:
        response = requests.get(url, timeout=2)
    except requests.RequestException:
        return "down"
    return "ok" if response.status_code == 200 else f"HTTP {response.status_code}"


def _pg_health(server: LocalPostgres) -> str:
    """``ok`` when ``server`` answers a query."""
    try:
        with server.connect() as conn:
            conn.execute("SELECT 1")
    except MovierecError as exc:
        return f"no answer ({first_line(exc.__cause__ or exc)[:60]})"
    return "ok"


_SAMPLE = re.compile(r"^movierec_cache_(hits|misses)_total\{[^}]*\} (\d+)", re.M)


def _hit_rate(port: int) -> tuple[float | None, str]:
    """Hits / lookups over all caches of the worker that answers ``/metrics``."""
    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except requests.RequestException:
        return None, "no /metrics"
    totals = {"hits": 0, "misses": 0}
    for kind, value in _SAMPLE.findall(text):
        totals[kind] += int(value)
    lookups = totals["hits"] + totals["misses"]
    pid = re.search(r'pid="(\d+)"', text)
    where = f"worker {pid.group(1)}" if pid else ""
    return (totals["hits"] / lookups if lookups else None), f"{where}, {lookups} lookups"
