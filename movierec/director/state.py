"""What a director is: its backends, where it listens, and the JSON file that remembers it.

Each director has a name (``d1``, ``d2``, ...) so that two can run side by side. Its state is
kept in ``<state_dir>/director/<name>.json``, replaced atomically, and its runtime files
(rendered haproxy.cfg, pid file, sockets) live in ``<state_dir>/director/<name>/``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from movierec.config import Settings
from movierec.errors import BadInput, ConfigError, NotFound
from movierec.files import write_atomically

BALANCES = ("roundrobin", "leastconn")
DEFAULT_NAME = "d1"
# HAProxy names servers in its config, its CSV and its runtime commands; keeping to these
# characters means a name never needs quoting anywhere.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Host names and IPv4/IPv6 literals: no spaces, quotes or line breaks can reach the config.
_HOST = re.compile(r"^[A-Za-z0-9:][A-Za-z0-9_.:-]{0,252}$")
# sockaddr_un holds 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107


def _check_name(kind: str, name: str) -> str:
    if not _NAME.match(name):
        raise BadInput(
            f"{kind} name {name!r}: use letters, digits, '_', '.', '-' (at most 64 characters)"
        )
    return name


def _check_port(what: str, port: int) -> int:
    if not 0 < port < 65536:
        raise BadInput(f"{what} {port} is out of range 1-65535")
    return port


@dataclass(frozen=True)
class Backend:
    """One web instance behind the director. ``backup`` ones only serve when no primary is up.

    Raises :class:`BadInput` when the name, host or port is malformed.
    """

    name: str
    host: str
    port: int
    backup: bool = False

    def __post_init__(self) -> None:
        _check_name("backend", self.name)
        if not _HOST.match(self.host):
            raise BadInput(f"backend {self.name}: {self.host!r} is not a host name or address")
        _check_port(f"backend {self.name}: port", self.port)

    @property
    def address(self) -> str:
        """``host:port`` as HAProxy wants it (IPv6 literals without brackets work there too)."""
        return f"{self.host}:{self.port}"


def parse_address(name: str, text: str, backup: bool = False) -> Backend:
    """``HOST:PORT`` (or ``[v6]:PORT``) for backend ``name``. Raises :class:`BadInput`."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host or not port_text:
        raise BadInput(f"backend {name}: {text!r} is not HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise BadInput(f"backend {name}: port {port_text!r} in {text!r} is not a number") from None
    return Backend(name, host, port, backup)


def parse_backend(spec: str, backup: bool = False) -> Backend:
    """A ``NAME=HOST:PORT`` command-line spec. Raises :class:`BadInput` naming what is wrong."""
    name, sep, address = spec.partition("=")
    if not sep or not name.strip():
        raise BadInput(f"backend {spec!r} is not NAME=HOST:PORT")
    return parse_address(name.strip(), address, backup)


@dataclass(frozen=True)
class DirectorState:
    """Everything needed to render one director's haproxy.cfg.

    Raises :class:`BadInput` when a port is out of range, the ports collide, the balance
    algorithm is unknown, two backends share a name, or no primary backend is configured.
    """

    name: str
    port: int
    backends: tuple[Backend, ...]
    host: str = "127.0.0.1"
    stats_port: int | None = None
    balance: str = "roundrobin"

    def __post_init__(self) -> None:
        _check_name("director", self.name)
        _check_port("director port", self.port)
        if not _HOST.match(self.host):
            raise BadInput(f"director bind address {self.host!r} is not a host name or address")
        if self.stats_port is not None:
            _check_port("stats port", self.stats_port)
            if self.stats_port == self.port:
                raise BadInput(f"stats port {self.stats_port} is also the director port")
        if self.balance not in BALANCES:
            raise BadInput(f"balance {self.balance!r}: choose one of {', '.join(BALANCES)}")
        object.__setattr__(self, "backends", tuple(self.backends))
        names = [b.name for b in self.backends]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise BadInput(f"backend name(s) used twice: {', '.join(twice)}")
        if not any(not b.backup for b in self.backends):
            raise BadInput(f"director {self.name} needs at least one non-backup backend")

    def with_backend(self, backend: Backend) -> DirectorState:
        """A copy with ``backend`` added. Raises :class:`BadInput` if the name is taken."""
        if any(b.name == backend.name for b in self.backends):
            raise BadInput(f"director {self.name} already has a backend named {backend.name}")
        return replace(self, backends=(*self.backends, backend))

    def without_backend(self, name: str) -> DirectorState:
        """A copy without backend ``name``.

        Raises :class:`NotFound` if there is none, :class:`BadInput` if it is the last primary.
        """
        if not any(b.name == name for b in self.backends):
            raise NotFound(f"director {self.name} has no backend named {name}")
        return replace(self, backends=tuple(b for b in self.backends if b.name != name))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> DirectorState:
        """Parse a state file. Raises :class:`ConfigError` when it is not one we wrote."""
        try:
            data = json.loads(text)
            backends = tuple(Backend(**b) for b in data.pop("backends"))
            return cls(backends=backends, **data)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ConfigError(f"director state file is malformed ({exc})") from exc


@dataclass(frozen=True)
class DirectorFiles:
    """Where one director's state and runtime files live."""

    root: Path
    name: str

    @property
    def state_file(self) -> Path:
        return self.root / f"{self.name}.json"

    @property
    def run_dir(self) -> Path:
        return self.root / self.name

    @property
    def config(self) -> Path:
        return self.run_dir / "haproxy.cfg"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "haproxy.pid"

    @property
    def master_socket(self) -> Path:
        """The master CLI (``-S``): ``show proc``, and ``@1 <command>`` for the current worker."""
        return self.run_dir / "master.sock"

    @property
    def stats_socket(self) -> Path:
        """The workers' admin-level stats socket (``show stat``, ``set server ...``)."""
        return self.run_dir / "stats.sock"

    @property
    def server_state(self) -> Path:
        """Backend health saved just before a reload, read by the new worker."""
        return self.run_dir / "servers.state"

    def check_socket_paths(self) -> None:
        """Raise :class:`ConfigError` when a socket path is too long for ``AF_UNIX``."""
        for path in (self.master_socket, self.stats_socket):
            if len(os.fsencode(path)) > _MAX_SOCKET_PATH:
                raise ConfigError(
                    f"{path} is longer than the {_MAX_SOCKET_PATH} bytes a Unix socket path "
                    "may have; choose a shorter MOVIEREC_STATE_DIR"
                )


def director_files(settings: Settings, name: str = DEFAULT_NAME) -> DirectorFiles:
    """The files of director ``name``; the paths are absolute because HAProxy re-executes
    itself on reload from wherever it was started. Raises :class:`BadInput` for a bad name."""
    _check_name("director", name)
    return DirectorFiles(Path(settings.state_dir).resolve() / "director", name)


def save_state(settings: Settings, state: DirectorState) -> Path:
    """Write ``state`` to its JSON file atomically (a reader never sees half a file)."""
    path = director_files(settings, state.name).state_file
    write_atomically(path, state.to_json(), f".{state.name}.")
    return path


def load_state(settings: Settings, name: str = DEFAULT_NAME) -> DirectorState:
    """The saved state of director ``name``.

    Raises :class:`NotFound` when it was never started, :class:`ConfigError` when the file is
    malformed.
    """
    path = director_files(settings, name).state_file
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise NotFound(
            f"no director named {name} (start one with `movierec director start --name {name}`)"
        ) from None
    return DirectorState.from_json(text)


def known_directors(settings: Settings) -> list[str]:
    """Names of every director with a saved state, sorted."""
    root = director_files(settings).root
    return sorted(p.stem for p in root.glob("*.json")) if root.is_dir() else []
