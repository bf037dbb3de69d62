"""The PostgreSQL server tools (initdb, pg_ctl, ...): where they are, and running them as the
server's OS user.

When the caller is root the tool runs as the ``postgres`` OS user (PostgreSQL refuses to run
as root) from ``/``, a directory that user can enter. The one runner,
:func:`movierec.processes.run`, builds no shell strings, sets ``LC_ALL=C`` (messages stay
parseable), applies a timeout, and raises :class:`OpsCommandFailed` with the exit code and the
end of stderr.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from movierec.errors import OpsCommandFailed
from movierec.processes import run

PG_BIN_CANDIDATES = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin")
SERVER_USER = "postgres"


def pg_bin_dir() -> Path:
    """The directory holding initdb and pg_ctl (``MOVIEREC_PG_BIN`` overrides the search)."""
    override = os.environ.get("MOVIEREC_PG_BIN")
    candidates = [override] if override else list(PG_BIN_CANDIDATES)
    found = shutil.which("pg_ctl")
    if found and not override:
        candidates.append(str(Path(found).parent))
    for candidate in candidates:
        if candidate and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    raise OpsCommandFailed(
        "PostgreSQL server tools not found (looked in "
        + ", ".join(c for c in candidates if c)
        + "); install postgresql-15 or set MOVIEREC_PG_BIN"
    )


def running_as_root() -> bool:
    return os.geteuid() == 0


def give_to_server_user(path: Path) -> None:
    """Make ``path`` owned by the server's OS user when we are root (else it is ours already)."""
    if running_as_root():
        shutil.chown(path, user=SERVER_USER, group=SERVER_USER)


def check_server_user_can_enter(path: Path) -> None:
    """Raise :class:`OpsCommandFailed` if the server's OS user cannot reach ``path``.

    A root-owned 0700 directory anywhere above the data directory (``mkdtemp`` makes those)
    stops initdb with a bare "Permission denied"; name the culprit instead.
    """
    if not running_as_root():
        return
    for ancestor in reversed(path.resolve().parents):
        mode = ancestor.stat().st_mode
        if ancestor.stat().st_uid != 0 or mode & 0o001:
            continue
        raise OpsCommandFailed(
            f"the {SERVER_USER} OS user cannot enter {ancestor} (mode {oct(mode & 0o777)}); "
            "choose a state directory below world-traversable directories"
        )


def run_as_server_user(name: str, argv: list[str], timeout: float = 60.0) -> str:
    """Run ``argv`` (as the server's OS user when we are root) and return its stdout.

    ``name`` is what error messages call the command. Raises :class:`OpsCommandFailed` with
    the exit code and the end of stderr, or when it outlives ``timeout``
    (:func:`movierec.processes.run`).
    """
    user = SERVER_USER if running_as_root() else None
    return run(name, argv, timeout, user=user).stdout


def run_pg_tool(tool: str, args: list[str], timeout: float = 60.0) -> str:
    """Run ``tool`` from the PostgreSQL bin dir and return its stdout."""
    return run_as_server_user(tool, [str(pg_bin_dir() / tool), *args], timeout)
