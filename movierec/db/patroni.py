"""PostgreSQL groups run by Patroni: what a group is made of, each member's Patroni
configuration, and the one client of Patroni's REST API.

A group (the main database ``main``, or a shard ``shard1`` ...) is a primary and its
replicas; Patroni elects the primary through etcd, fails over, switches over, rewinds and
rebuilds members. Its record, ``<group dir>/group.json``, names the members (each a
:class:`LocalPostgres`-shaped state directory ``<group dir>/<member>``: ``pgdata``,
``patroni.yml``, ``postgres.log``), their PostgreSQL and REST ports, and the ports of the
director's TCP frontends that follow the primary (and the replicas). The role passwords of the
group (superuser, app roles, Patroni's replication and rewind users, its REST API user) are
kept once in ``<group dir>/passwords.json`` (mode 0600) and copied to each member.

Starting and stopping members is :mod:`movierec.cluster.patroni`'s job; this module only
describes and asks.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from string import Template
from typing import Any

import requests

from movierec.db.local_server import HBA, SERVER_SETTINGS, LocalPostgres
from movierec.db.tools import SERVER_USER, give_to_server_user, pg_bin_dir, running_as_root
from movierec.errors import BadInput, ConfigError, DatabaseUnavailable, MovierecError, NotFound
from movierec.files import write_atomically

OPS_DIR = Path(__file__).resolve().parents[2] / "ops" / "patroni"
GROUP_FILE = "group.json"
REST_USER = "patroni"
REPLICATION_USER = "replicator"
REWIND_USER = "rewinder"
REST_TIMEOUT = 5.0
ETCD_USER_KEY = "etcd"  # the group's etcd password, in its passwords.json
# In a group's settings, stands for each member's own data directory (an archive_command
# names it: pgBackRest checks that it runs in the stanza's pg1-path).
MEMBER_DATA_DIR = "@member_data_dir@"
# Settings every member runs with. Durable: a group worth replicating is one whose data
# matters, and pg_rewind needs full_page_writes. Commits wait for the synchronous standby
# (synchronous_commit = on) when the group's synchronous_mode names one.
DURABLE = {"fsync": "on", "full_page_writes": "on", "synchronous_commit": "on"}
DCS_PARAMETERS = {
    "wal_level": "replica",
    "hot_standby": "on",
    "max_wal_senders": 10,
    "max_replication_slots": 10,
    "wal_keep_size": "256MB",
    "max_connections": 200,
    **DURABLE,
}


def etcd_user(scope: str) -> str:
    """The etcd user the Patroni members of group ``scope`` log in as."""
    return f"patroni-{scope}"


class PatroniRefused(MovierecError):
    """Patroni answered, and refused what was asked (its reason is the message)."""


@dataclass(frozen=True)
class Timing:
    """The leader lock's TTL, Patroni's loop period and its retry budget, in seconds
    (Patroni's defaults). A dead leader is replaced within about ``ttl``, a crashed
    postmaster within about ``loop_wait``."""

    ttl: int = 30
    loop_wait: int = 10
    retry_timeout: int = 10


@dataclass(frozen=True)
class Member:
    """One Patroni member of a group: its state directory and ports."""

    name: str
    state_dir: Path
    pg_port: int
    rest_port: int

    @property
    def local(self) -> LocalPostgres:
        """The member's server as a :class:`LocalPostgres` (its port, passwords, log)."""
        return LocalPostgres(self.state_dir, port=self.pg_port)

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def config_file(self) -> Path:
        return self.state_dir / "patroni.yml"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "patroni.log"


@dataclass(frozen=True)
class Group:
    """A Patroni group as recorded in ``<root>/group.json``."""

    scope: str
    root: Path
    etcd_url: str
    members: tuple[Member, ...]
    primary_port: int  # the director's TCP frontend that follows the primary
    replica_port: int  # ... and the one that spreads reads over the replicas
    synchronous: bool = True
    timing: Timing = field(default_factory=Timing)
    tablespaces: tuple[str, ...] = ()  # created on the group, each mapped per member
    settings: dict[str, str] = field(default_factory=dict)  # extra local parameters

    @property
    def passwords_owner(self) -> LocalPostgres:
        """The group's own state directory as a :class:`LocalPostgres`: its passwords file
        and admin URL file are the group's."""
        return LocalPostgres(self.root)

    def member(self, name: str) -> Member:
        """Member ``name``; raises :class:`NotFound` naming the known ones."""
        for member in self.members:
            if member.name == name:
                return member
        known = ", ".join(m.name for m in self.members) or "none"
        raise NotFound(f"group {self.scope} has no member {name!r} (members: {known})")

    def with_member(self, member: Member) -> Group:
        others = tuple(m for m in self.members if m.name != member.name)
        return replace(self, members=(*others, member))

    def without(self, name: str) -> Group:
        return replace(self, members=tuple(m for m in self.members if m.name != name))

    def tablespace_dir(self, member: Member, name: str) -> Path:
        """Where tablespace ``name`` lives on ``member``: a directory of its own, never
        one another member uses."""
        return member.state_dir / "tablespaces" / name

    def settings_for(self, member: Member) -> dict[str, str]:
        """The group's extra PostgreSQL parameters as ``member`` runs them."""
        own = str(member.local.data_dir)
        return {key: value.replace(MEMBER_DATA_DIR, own) for key, value in self.settings.items()}

    def to_json(self) -> str:
        data = asdict(self)
        data["root"] = str(self.root)
        data["members"] = [{**asdict(m), "state_dir": str(m.state_dir)} for m in self.members]
        return json.dumps({"version": 1, **data}, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Group:
        """Raises :class:`ConfigError` when ``text`` is not a record we wrote."""
        try:
            data = json.loads(text)
            data.pop("version", None)
            members = tuple(
                Member(m["name"], Path(m["state_dir"]), int(m["pg_port"]), int(m["rest_port"]))
                for m in data.pop("members")
            )
            return cls(
                root=Path(data.pop("root")),
                members=members,
                timing=Timing(**data.pop("timing")),
                tablespaces=tuple(data.pop("tablespaces", ())),
                **data,
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"{GROUP_FILE} is malformed ({exc})") from exc


def group_file(root: Path) -> Path:
    return root / GROUP_FILE


def is_group(root: Path) -> bool:
    """Whether ``root`` holds a Patroni group's record."""
    return group_file(root).exists()


def load_group(root: Path) -> Group:
    """The group recorded under ``root``. Raises :class:`NotFound` when there is none,
    :class:`ConfigError` when the record is malformed."""
    try:
        text = group_file(root).read_text()
    except FileNotFoundError:
        raise NotFound(
            f"no Patroni group in {root}: replicas need a cluster started with replicas "
            "(`movierec cluster up --replicas 1` or `--topology full`)"
        ) from None
    return Group.from_json(text)


def save_group(group: Group) -> None:
    write_atomically(group_file(group.root), group.to_json(), ".group-")


# --- configuration ----------------------------------------------------------------------------


def _template() -> Template:
    path = OPS_DIR / "patroni.yml.template"
    try:
        return Template(path.read_text())
    except OSError as exc:
        raise ConfigError(f"Patroni template {path} is missing ({exc.strerror})") from exc


def _ident_user() -> str:
    import pwd

    return SERVER_USER if running_as_root() else pwd.getpwuid(os.geteuid()).pw_name


def _basebackup_options(group: Group, member: Member) -> list[Any]:
    """pg_basebackup options for ``member``: a fast checkpoint, and for every tablespace of
    the group a map from each other member's directory (whichever one is cloned from) to
    this member's own."""
    options: list[Any] = [{"checkpoint": "fast"}]
    for name in group.tablespaces:
        mine = group.tablespace_dir(member, name)
        for other in group.members:
            if other.name != member.name:
                theirs = group.tablespace_dir(other, name)
                options.append({"tablespace-mapping": f"{theirs}={mine}"})
    return options


def render_config(group: Group, member: Member, socket_dir: Path) -> str:
    """The text of ``member``'s patroni.yml. Raises :class:`ConfigError` when the template
    is missing."""
    passwords = group.passwords_owner.passwords
    parameters: dict[str, Any] = {
        key: value.strip("'")
        for key, value in SERVER_SETTINGS.items()
        if key not in ("listen_addresses", "fsync", "synchronous_commit", "full_page_writes")
    }
    parameters.update(
        unix_socket_directories=str(socket_dir),
        logging_collector="on",
        log_directory=str(member.state_dir),
        log_filename="postgres.log",
        log_file_mode="0600",
        **group.settings_for(member),
    )
    pg_hba = [line for line in HBA.splitlines() if line and not line.startswith("#")]
    values = {
        "name": member.name,
        "scope": group.scope,
        "rest_port": member.rest_port,
        "rest_user": REST_USER,
        "rest_password": json.dumps(passwords.get(REST_USER)),
        "etcd_hosts": json.dumps([group.etcd_url.removeprefix("http://")]),
        "etcd_user": etcd_user(group.scope),
        "etcd_password": json.dumps(passwords.get(ETCD_USER_KEY)),
        "ttl": group.timing.ttl,
        "loop_wait": group.timing.loop_wait,
        "retry_timeout": group.timing.retry_timeout,
        "synchronous_mode": json.dumps(group.synchronous),
        "dcs_parameters": json.dumps(DCS_PARAMETERS),
        "pg_port": member.pg_port,
        "data_dir": json.dumps(str(member.local.data_dir)),
        "bin_dir": json.dumps(str(pg_bin_dir())),
        "pgpass": json.dumps(str(member.state_dir / "pgpass")),
        "superuser_password": json.dumps(passwords.get("postgres")),
        "replication_password": json.dumps(passwords.get(REPLICATION_USER)),
        "rewind_password": json.dumps(passwords.get(REWIND_USER)),
        "parameters": json.dumps(parameters),
        "pg_hba": json.dumps(pg_hba),
        "pg_ident": json.dumps([f"server_user {_ident_user()} postgres"]),
        "basebackup": json.dumps(_basebackup_options(group, member)),
    }
    return _template().substitute(values)


def write_config(group: Group, member: Member) -> Path:
    """Render ``member``'s patroni.yml (mode 0600, the server user's) with a fresh socket
    directory, and record that directory and the port where :class:`LocalPostgres` and
    pgBackRest look for them (``server.json``). Returns the file."""
    member.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    give_to_server_user(member.state_dir)
    socket_dir = _socket_dir(member)
    text = render_config(group, member, socket_dir)  # makes the passwords the group lacks
    group.passwords_owner.passwords.copy_to(member.state_dir)  # LocalPostgres.url() reads it
    fd = os.open(member.config_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    give_to_server_user(member.config_file)
    info = {"port": member.pg_port, "socket_dir": str(socket_dir)}
    member.local.info_file.write_text(json.dumps(info))
    return member.config_file


def _socket_dir(member: Member) -> Path:
    """The member's Unix socket directory: the one it has while that still exists (a running
    server keeps its socket there until restarted), else a new one. Short and outside the
    state directory: a socket path has at most 107 bytes."""
    try:
        known = Path(json.loads(member.local.info_file.read_text())["socket_dir"])
    except (OSError, ValueError, KeyError, TypeError):
        known = None
    if known is not None and known.is_dir():
        return known
    socket_dir = Path(tempfile.mkdtemp(prefix="movierec-pgsock-"))
    give_to_server_user(socket_dir)
    return socket_dir


# --- the REST API -----------------------------------------------------------------------------


@dataclass(frozen=True)
class MemberView:
    """One member as Patroni's ``GET /cluster`` shows it."""

    name: str
    role: str  # leader, sync_standby, replica, standby_leader
    state: str  # running, streaming, stopped, starting, ...
    host: str
    port: int
    timeline: int | None = None
    lag: int | None = None  # bytes of WAL the member has not replayed; None when unknown

    @property
    def is_leader(self) -> bool:
        return self.role == "leader"


def _auth(group: Group) -> tuple[str, str]:
    return REST_USER, group.passwords_owner.passwords.get(REST_USER)


def _one_line(answer: requests.Response) -> str:
    text = answer.text.strip()
    try:
        data = answer.json()
        if isinstance(data, dict):
            text = str(data.get("message") or data.get("state") or data)
    except ValueError:
        pass
    return " ".join(text.split()) or f"HTTP {answer.status_code}"


def cluster_view(group: Group) -> list[MemberView]:
    """Every member Patroni knows in the group (``GET /cluster`` of the first member that
    answers), the leader first. Raises :class:`DatabaseUnavailable` when no member's REST
    API answers."""
    errors = []
    for member in group.members:
        try:
            answer = requests.get(f"{member.rest_url}/cluster", timeout=REST_TIMEOUT)
            answer.raise_for_status()
            data = answer.json()
        except (requests.RequestException, ValueError) as exc:
            errors.append(f"{member.name}: {type(exc).__name__}")
            continue
        views = [
            MemberView(
                m["name"], m.get("role", "?"), m.get("state", "?"), m.get("host", "?"),
                int(m.get("port") or 0), m.get("timeline"),
                m.get("lag") if isinstance(m.get("lag"), int) else None,
            )
            for m in data.get("members", [])
        ]  # fmt: skip
        return sorted(views, key=lambda v: (not v.is_leader, v.name))
    raise DatabaseUnavailable(
        f"no Patroni member of {group.scope} answers ({', '.join(errors) or 'no members'})"
    )


def leader(group: Group) -> str | None:
    """The name of the group's leader (its primary), or None when it has none now."""
    return next((v.name for v in cluster_view(group) if v.is_leader), None)


def _post(group: Group, member: Member, path: str, body: dict[str, Any]) -> str:
    """POST ``body`` to ``member``'s REST API; Patroni's answer in one line.

    Raises :class:`PatroniRefused` with Patroni's reason on a 4xx/5xx answer and
    :class:`DatabaseUnavailable` when the member's API does not answer.
    """
    try:
        answer = requests.post(f"{member.rest_url}{path}", json=body, auth=_auth(group), timeout=60)
    except requests.RequestException as exc:
        raise DatabaseUnavailable(
            f"Patroni of {member.name} does not answer on {member.rest_url}: {type(exc).__name__}"
        ) from exc
    if answer.status_code >= 400:
        raise PatroniRefused(f"Patroni refused {path.strip('/')}: {_one_line(answer)}")
    return _one_line(answer)


def _any_answering(group: Group) -> Member:
    for member in group.members:
        try:
            requests.get(f"{member.rest_url}/liveness", timeout=2)
        except requests.RequestException:
            continue
        return member
    raise DatabaseUnavailable(f"no Patroni member of {group.scope} answers")


def synchronous_mode(group: Group) -> bool:
    """Whether the group's dynamic configuration (in etcd, what Patroni applies now; `db
    replica sync` changes it, not the record) asks for a synchronous standby. Raises
    :class:`DatabaseUnavailable` when no member's REST API answers."""
    member = _any_answering(group)
    try:
        answer = requests.get(f"{member.rest_url}/config", auth=_auth(group), timeout=REST_TIMEOUT)
        answer.raise_for_status()
        return bool(answer.json().get("synchronous_mode"))
    except (requests.RequestException, ValueError) as exc:
        raise DatabaseUnavailable(f"Patroni of {member.name}: {type(exc).__name__}") from exc


def promote(group: Group, candidate: str) -> str:
    """Make ``candidate`` the primary: a switchover (the healthy leader hands over cleanly,
    no commit lost) when the group has a running leader, a failover when it has none.
    Patroni's answer in one line. Raises :class:`NotFound` for an unknown member,
    :class:`BadInput` when it already is the leader, :class:`PatroniRefused` when Patroni
    refuses (a lagging or unhealthy candidate, ...)."""
    group.member(candidate)
    views = cluster_view(group)
    current = next((v for v in views if v.is_leader and v.state == "running"), None)
    if current is not None and current.name == candidate:
        raise BadInput(f"{candidate} is the primary already")
    if current is not None:
        body = {"leader": current.name, "candidate": candidate}
        return _post(group, group.member(current.name), "/switchover", body)
    return _post(group, _any_answering(group), "/failover", {"candidate": candidate})


def reinitialize(group: Group, name: str) -> str:
    """Throw away member ``name``'s data and clone it afresh from the leader (Patroni's
    reinit). Raises :class:`PatroniRefused` when Patroni refuses (e.g. it is the leader)."""
    return _post(group, group.member(name), "/reinitialize", {"force": True})


def restart(group: Group, name: str) -> str:
    """Restart member ``name``'s PostgreSQL through Patroni (to apply a setting that needs
    it). Raises :class:`PatroniRefused`."""
    return _post(group, group.member(name), "/restart", {})


def apply_settings(group: Group, settings: dict[str, str]) -> Group:
    """Give every member the PostgreSQL parameters ``settings`` (kept in the group's record,
    rendered into each member's configuration): Patroni reloads them, then each member that
    runs is restarted through Patroni, replicas first and the primary last (archive_mode, say,
    needs a restart). Returns the group as recorded. Raises :class:`PatroniRefused`,
    :class:`DatabaseUnavailable`."""
    wanted = {**group.settings, **settings}
    if wanted == group.settings:
        return group
    group = replace(group, settings=wanted)
    save_group(group)
    for member in group.members:
        write_config(group, member)
    views = {v.name: v for v in cluster_view(group)}
    running = [m for m in group.members if m.name in views and views[m.name].state != "stopped"]
    running.sort(key=lambda m: views[m.name].is_leader)
    for member in running:
        _post(group, member, "/reload", {})
    for member in running:
        _post(group, member, "/restart", {})
    return group


def patch_config(group: Group, patch: dict[str, Any]) -> dict[str, Any]:
    """PATCH the group's dynamic configuration (kept in etcd, applied by every member);
    the new configuration. Raises :class:`PatroniRefused`, :class:`DatabaseUnavailable`."""
    member = _any_answering(group)
    try:
        answer = requests.patch(
            f"{member.rest_url}/config", json=patch, auth=_auth(group), timeout=REST_TIMEOUT
        )
    except requests.RequestException as exc:
        raise DatabaseUnavailable(f"Patroni of {member.name}: {type(exc).__name__}") from exc
    if answer.status_code >= 400:
        raise PatroniRefused(f"Patroni refused the configuration change: {_one_line(answer)}")
    return answer.json()


def is_ready(member: Member) -> bool:
    """Whether ``member`` serves as it should now: the leader is running, a replica is
    running and streaming from it (Patroni's ``GET /readiness``, asked of the member itself,
    so it answers at once rather than after the next loop updates etcd)."""
    try:
        return requests.get(f"{member.rest_url}/readiness", timeout=2).status_code == 200
    except requests.RequestException:
        return False
