"""How a web or AI instance of the cluster was started, kept so that it starts again the same way.

``cluster up`` writes ``state_dir/launch/<name>.json`` for each instance it starts: the
``movierec serve`` arguments (its port among them) and the environment it was given (the
cluster's own variables, and the ``MOVIEREC_*`` settings of whoever ran ``up``). ``cluster
restart`` replays it, so a restarted instance has the port, the database role, the AI
instances and the secret key its predecessor had, whoever restarts it from whatever shell. The
file holds the site's secret key and database URLs: it is written with mode 0600 and never
printed.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from movierec.cluster.members import _CHILDREN, Member, start_time
from movierec.errors import ConfigError, NotFound
from movierec.files import write_atomically
from movierec.processes import Child

LAUNCH_DIR = "launch"
SETTINGS_PREFIX = "MOVIEREC_"


@dataclass(frozen=True)
class Launch:
    """One ``movierec serve`` of the cluster."""

    name: str  # web-1, ai-2
    role: str  # web, ai
    port: int
    args: tuple[str, ...]  # after `movierec`: serve web --port 8001 --workers 1
    health_url: str
    log: str
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(
        cls, name: str, role: str, port: int, args: list[str], health_url: str, log: Path,
        env: dict[str, str],
    ) -> Launch:  # fmt: skip
        """A launch with ``env`` on top of this process's ``MOVIEREC_*`` settings."""
        inherited = {k: v for k, v in os.environ.items() if k.startswith(SETTINGS_PREFIX)}
        return cls(name, role, port, tuple(args), health_url, str(log), {**inherited, **env})

    def environment(self) -> dict[str, str]:
        """This process's environment without its ``MOVIEREC_*`` settings, plus the launch's:
        an admin's MOVIEREC_DATABASE_URL (the owner's) never reaches a restarted instance."""
        base = {k: v for k, v in os.environ.items() if not k.startswith(SETTINGS_PREFIX)}
        return {**base, **self.env}


def launch_path(state_dir: Path, name: str) -> Path:
    return state_dir.resolve() / LAUNCH_DIR / f"{name}.json"


def save_launch(state_dir: Path, launch: Launch) -> Path:
    """Write it atomically with mode 0600 (the temporary file's, kept by the rename)."""
    path = launch_path(state_dir, launch.name)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomically(path, json.dumps(asdict(launch), indent=2) + "\n", f".{launch.name}.")
    return path


def load_launch(state_dir: Path, name: str) -> Launch:
    """Raises :class:`NotFound` when ``name`` was not started by ``cluster up`` here, and
    :class:`ConfigError` when its file is malformed."""
    path = launch_path(state_dir, name)
    try:
        data = json.loads(path.read_text())
        data["args"] = tuple(data["args"])
        return Launch(**data)
    except FileNotFoundError:
        raise NotFound(f"{name}: no launch record {path}; `cluster up` did not start it") from None
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"{path} is malformed ({exc})") from exc


def start_instance(state_dir: Path, launch: Launch) -> tuple[Member, Child]:
    """Record ``launch`` and start it; the member (not yet healthy: see
    :meth:`Child.wait_healthy`) and its child."""
    save_launch(state_dir, launch)
    child = Child.start(
        launch.name, list(launch.args), Path(launch.log), launch.health_url, {},
        base_env=launch.environment(),
    )  # fmt: skip
    _CHILDREN[child.process.pid] = child.process
    pid = child.process.pid
    member = Member(
        launch.name, launch.role, launch.port, pid, start_time(pid), True, launch.health_url,
        launch.log,
    )  # fmt: skip
    return member, child
