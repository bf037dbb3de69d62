"""What a local cluster is made of: how many web, AI and replica servers, on which ports.

From CLI options or a ``cluster.toml``::

    [cluster]
    web = 2          # web instances (movierec serve web), ports port+1 ... port+web
    ai = 2           # AI instances (movierec serve ai), ports port+101 ... port+100+ai
    replicas = 0     # streaming replicas of the primary; web instances read from the first
    port = 8000      # the first director (HAProxy), the second on port+100; without
    director = true  # directors, web-1 is the site's address
    directors = 2    # 1 or 2: two, so that the director is no single point of failure
    web_workers = 2  # gunicorn workers per instance (default: the cores split between them)
    ai_workers = 1
    topology = "full"  # "demo" (default) or "full": replicas 1, shards 2, tablespace, backup
    shards = 2       # shard servers (postgres_fdw); shard k gets partition p(4-shards+k-1)
    shard_replicas = 0  # > 0: each shard is a Patroni group with this many replicas
    tablespace = true  # a second tablespace (state_dir/tablespaces/disk2) holding ratings_p0
    backup = true    # a pgBackRest repository with one stanza per server (primary, shards)

Explicit settings win over what ``topology`` implies.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from movierec.errors import BadInput, ConfigError
from movierec.ports import port_free

AI_OFFSET = 101
MAX_WEB = AI_OFFSET - 2
SECOND_DIRECTOR_OFFSET = AI_OFFSET - 1  # the port between the last web and the first AI
MAX_DIRECTORS = 2
MAX_SHARDS = 3  # of the 4 hash partitions, p0 always stays on the primary
TOPOLOGIES = {
    "demo": {},
    "full": {"replicas": 1, "shards": 2, "tablespace": True, "backup": True},
}


@dataclass(frozen=True)
class ClusterSpec:
    """The servers of one cluster. Raises :class:`BadInput` when they cannot be laid out."""

    web_ports: tuple[int, ...]
    ai_ports: tuple[int, ...]
    director_ports: tuple[int, ...] = ()
    replicas: int = 0
    web_workers: int | None = None
    ai_workers: int | None = None
    shards: int = 0
    tablespace: bool = False
    backup: bool = False
    shard_replicas: int = 0

    def __post_init__(self) -> None:
        problems = []
        if not self.web_ports:
            problems.append("at least one web instance is needed")
        if not self.ai_ports:
            problems.append("at least one AI instance is needed")
        if not 0 <= self.replicas <= 3:
            problems.append(f"replicas must be 0 to 3, not {self.replicas}")
        if not 0 <= self.shards <= MAX_SHARDS:
            problems.append(f"shards must be 0 to {MAX_SHARDS}, not {self.shards}")
        if len(self.director_ports) > MAX_DIRECTORS:
            problems.append(f"at most {MAX_DIRECTORS} directors")
        ports = [*self.director_ports, *self.web_ports, *self.ai_ports]
        if not 0 <= self.shard_replicas <= 3:
            problems.append(f"shard_replicas must be 0 to 3, not {self.shard_replicas}")
        problems += [f"port {p} is out of range 1-65535" for p in ports if not 0 < p < 65536]
        if len(set(ports)) != len(ports):
            problems.append("two servers would share a port")
        for name in ("web_workers", "ai_workers"):
            value = getattr(self, name)
            if value is not None and value < 1:
                problems.append(f"{name} must be at least 1")
        if problems:
            raise BadInput("cluster: " + "; ".join(problems))

    @classmethod
    def on_port(
        cls,
        port: int = 8000,
        web: int = 2,
        ai: int = 2,
        replicas: int = 0,
        director: bool = True,
        directors: int = MAX_DIRECTORS,
        web_workers: int | None = None,
        ai_workers: int | None = None,
        shards: int = 0,
        tablespace: bool = False,
        backup: bool = False,
        shard_replicas: int = 0,
    ) -> ClusterSpec:
        """The directors on ``port`` and ``port + 100``, web instances on the ports after
        ``port``, AI instances from ``port + 101``. Raises :class:`BadInput`."""
        if not 1 <= web <= MAX_WEB:
            raise BadInput(f"cluster: web must be 1 to {MAX_WEB}, not {web}")
        if not 1 <= directors <= MAX_DIRECTORS:
            raise BadInput(f"cluster: directors must be 1 to {MAX_DIRECTORS}, not {directors}")
        director_ports = (port, port + SECOND_DIRECTOR_OFFSET)[:directors] if director else ()
        return cls(
            web_ports=tuple(port + 1 + i for i in range(web)),
            ai_ports=tuple(port + AI_OFFSET + i for i in range(ai)),
            director_ports=director_ports,
            replicas=replicas,
            web_workers=web_workers,
            ai_workers=ai_workers,
            shards=shards,
            tablespace=tablespace,
            backup=backup,
            shard_replicas=shard_replicas,
        )

    def workers_per_web(self, cores: int | None = None) -> int:
        """Gunicorn workers each web instance runs: ``web_workers`` when given, else the
        machine's ``cores`` (those this process may use) split evenly between the instances,
        at least one each.

        The instances of a local cluster share one machine, and a web worker is busy on the
        CPU for most of a page (its threads share one GIL): workers beyond one per core only
        take the cores from each other. Measured here (2 cores, 2 web instances, 1 AI, cold
        "for you" pages through the director): 2 workers each served 270 pages/s with a 99th
        percentile of 150 ms, 1 worker each 315-340 pages/s and 95 ms.
        """
        if self.web_workers is not None:
            return self.web_workers
        if cores is None:
            cores = len(os.sched_getaffinity(0))
        return max(1, cores // len(self.web_ports))

    @property
    def director_port(self) -> int | None:
        """The first director's port: the site's address (None without a director)."""
        return self.director_ports[0] if self.director_ports else None

    @property
    def base_port(self) -> int:
        """The port the others are counted from (the director's, used or not)."""
        return self.web_ports[0] - 1

    def ports(self) -> list[int]:
        return [*self.director_ports, *self.web_ports, *self.ai_ports]

    def check_ports_free(self) -> None:
        """Raise :class:`BadInput` naming every port something already listens on."""
        taken = [p for p in self.ports() if not port_free(p)]
        if taken:
            raise BadInput(
                f"port(s) {', '.join(map(str, taken))} on 127.0.0.1 are in use; pick another "
                "--port or stop what listens there"
            )


_KEYS = {
    "web", "ai", "replicas", "port", "director", "directors", "web_workers", "ai_workers",
    "topology", "shards", "tablespace", "backup", "shard_replicas",
}  # fmt: skip


def with_topology(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` (for :meth:`ClusterSpec.on_port`) with the defaults of its ``topology``
    (``demo`` or ``full``) filled in; explicit options win. Raises :class:`BadInput`."""
    options = dict(options)
    name = options.pop("topology", None) or "demo"
    if name not in TOPOLOGIES:
        raise BadInput(f"cluster: topology must be one of {', '.join(TOPOLOGIES)}, not {name!r}")
    return {**TOPOLOGIES[name], **options}


def read_cluster_toml(path: Path) -> dict[str, Any]:
    """The ``[cluster]`` table of ``path`` as keyword arguments for :meth:`ClusterSpec.on_port`.

    Raises :class:`ConfigError` when the file cannot be read or has unknown keys.
    """
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    table = data.get("cluster", data)
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown cluster setting(s) {', '.join(unknown)}")
    return dict(table)


SPEC_FIELDS = tuple(f.name for f in fields(ClusterSpec))
