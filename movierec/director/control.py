"""Start, reload, change, inspect and stop a director: the functions the CLI (and the local
cluster launcher) call.

A change (add or remove a backend, reload) is applied in this order: render the new
haproxy.cfg and have ``haproxy -c`` accept it, install it, signal the running master, wait
until a worker with the new configuration answers, and only then save the new state. A failure
at any step leaves the old configuration serving and the saved state unchanged.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from movierec.config import Settings
from movierec.director.haproxy import (
    MasterInfo,
    process_alive,
    read_pid,
    run_haproxy,
    show_proc,
    socket_command,
)
from movierec.director.render import restore_config, write_checked_config
from movierec.director.state import (
    DEFAULT_NAME,
    Backend,
    DirectorFiles,
    DirectorState,
    director_files,
    load_state,
    save_state,
)
from movierec.director.stats import BackendStats, parse_show_stat
from movierec.errors import OpsCommandFailed

READY_TIMEOUT = 10.0


@dataclass(frozen=True)
class DirectorStatus:
    """A director's saved state and, when it runs, what HAProxy reports about its backends."""

    state: DirectorState
    pid: int | None
    backends: tuple[BackendStats, ...]

    @property
    def running(self) -> bool:
        return self.pid is not None


def running_pid(files: DirectorFiles) -> int | None:
    """The master's pid when this director runs, else None."""
    pid = read_pid(files.pid_file)
    return pid if pid is not None and process_alive(pid) else None


def _wait(
    files: DirectorFiles, ready: Callable[[MasterInfo], bool], what: str, timeout: float
) -> MasterInfo:
    """Poll ``show proc`` until ``ready(info)``; the master socket vanishes briefly while the
    master re-executes itself, so connection errors are retried until ``timeout``."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        pid = read_pid(files.pid_file)
        if pid is not None and not process_alive(pid):
            raise OpsCommandFailed(f"director {files.name}: HAProxy master {pid} exited {what}")
        try:
            info = show_proc(files.master_socket)
        except OpsCommandFailed as exc:
            last = str(exc)
        else:
            if ready(info):
                return info
            last = f"workers {info.workers}, old workers {info.old_workers}"
        time.sleep(0.05)
    raise OpsCommandFailed(f"director {files.name} not ready {what} within {timeout:.0f} s: {last}")


def _remove_runtime_files(files: DirectorFiles) -> None:
    for path in (files.pid_file, files.master_socket, files.stats_socket, files.server_state):
        path.unlink(missing_ok=True)


def start(settings: Settings, state: DirectorState, timeout: float = READY_TIMEOUT) -> int:
    """Start director ``state.name`` as an HAProxy master-worker daemon; return the master pid.

    Returns once a worker serves. Raises :class:`OpsCommandFailed` when it already runs, when
    HAProxy rejects the configuration or cannot bind its ports (the reason is HAProxy's own),
    and :class:`ConfigError` when the state directory makes socket paths too long.
    """
    files = director_files(settings, state.name)
    pid = running_pid(files)
    if pid is not None:
        raise OpsCommandFailed(
            f"director {state.name} already runs (pid {pid}); use add-backend or reload"
        )
    write_checked_config(state, files)
    _remove_runtime_files(files)  # left by a director that was killed
    run_haproxy(
        [
            "-W",  # master-worker: reloads on SIGUSR2 without closing the listening sockets
            "-D",  # daemon: the director outlives the command that started it
            "-f",
            str(files.config),
            "-p",
            str(files.pid_file),
            "-S",
            f"{files.master_socket},mode,600",
        ],
        what=f"starting director {state.name}",
    )
    try:
        info = _wait(files, lambda i: bool(i.workers), "after start", timeout)
    except OpsCommandFailed:
        stop(settings, state.name)  # no half-started daemon without a saved state
        raise
    save_state(settings, state)
    return info.pid


def _apply(settings: Settings, state: DirectorState, timeout: float) -> DirectorState:
    """Install ``state``'s configuration, reload the running director with it, save it."""
    files = director_files(settings, state.name)
    previous = write_checked_config(state, files)
    pid = running_pid(files)
    if pid is not None:
        try:
            _reload_master(files, pid, timeout)
        except OpsCommandFailed:
            restore_config(files, previous)
            raise
    save_state(settings, state)
    return state


def _save_server_state(files: DirectorFiles) -> None:
    """Dump the current worker's view of backend health for the next worker to load."""
    text = socket_command(files.master_socket, "@1 show servers state")
    tmp = files.server_state.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, files.server_state)


def _reload_master(files: DirectorFiles, pid: int, timeout: float) -> MasterInfo:
    before = show_proc(files.master_socket)
    _save_server_state(files)
    os.kill(pid, signal.SIGUSR2)

    def reloaded(info: MasterInfo) -> bool:
        if info.failed_reloads > before.failed_reloads:
            raise OpsCommandFailed(
                f"director {files.name}: HAProxy refused the new configuration at reload; "
                "the old one keeps serving"
            )
        return info.reloads > before.reloads and any(w not in before.workers for w in info.workers)

    info = _wait(files, reloaded, "after reload", timeout)
    # The new worker is forked; wait until it (not the old one) answers on the sockets.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            answer = socket_command(files.stats_socket, "show info")
        except OpsCommandFailed:
            answer = ""
        if any(line == f"Pid: {w}" for w in info.workers for line in answer.splitlines()):
            return info
        time.sleep(0.05)
    raise OpsCommandFailed(f"director {files.name}: the new worker did not answer after reload")


def reload(settings: Settings, name: str = DEFAULT_NAME, timeout: float = READY_TIMEOUT) -> None:
    """Re-render director ``name`` from its saved state and reload it gracefully: requests in
    flight complete on the old worker, new connections go to the new one, none is refused.

    Raises :class:`NotFound` for an unknown director, :class:`OpsCommandFailed` when it is not
    running or HAProxy rejects the configuration (the old one keeps serving).
    """
    state = load_state(settings, name)
    if running_pid(director_files(settings, name)) is None:
        raise OpsCommandFailed(
            f"director {name} is not running (start it with `movierec director start "
            f"--name {name}`)"
        )
    _apply(settings, state, timeout)


def add_backend(
    settings: Settings, name: str, backend: Backend, timeout: float = READY_TIMEOUT
) -> DirectorState:
    """Add ``backend`` to director ``name`` and reload it if it runs; return the new state.

    Raises :class:`NotFound` for an unknown director, :class:`BadInput` when the backend name
    is taken, :class:`OpsCommandFailed` when HAProxy rejects the result (for instance a host
    name that does not resolve); then nothing changes.
    """
    return _apply(settings, load_state(settings, name).with_backend(backend), timeout)


def remove_backend(
    settings: Settings, name: str, backend: str, timeout: float = READY_TIMEOUT
) -> DirectorState:
    """Remove backend ``backend`` from director ``name`` and reload it if it runs.

    Requests the backend is serving complete first (graceful reload). Raises
    :class:`NotFound` when either is unknown, :class:`BadInput` when it is the last primary
    backend, :class:`OpsCommandFailed` when the reload fails (then nothing changes).
    """
    return _apply(settings, load_state(settings, name).without_backend(backend), timeout)


def status(settings: Settings, name: str = DEFAULT_NAME) -> DirectorStatus:
    """Director ``name``'s state, and its backends' health and traffic if it runs.

    Raises :class:`NotFound` for an unknown director and :class:`OpsCommandFailed` when the
    running director does not answer on its master socket.
    """
    state = load_state(settings, name)
    files = director_files(settings, name)
    pid = running_pid(files)
    if pid is None:
        return DirectorStatus(state, None, ())
    # Through the master, `@1` reaches the current worker: an old worker still finishing
    # requests after a reload would report the old configuration.
    text = ""
    deadline = time.monotonic() + 3.0
    while True:
        try:
            text = socket_command(files.master_socket, "@1 show stat")
            break
        except OpsCommandFailed:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)  # the master is re-executing itself for a reload
    return DirectorStatus(state, pid, tuple(parse_show_stat(text)))


def stop(settings: Settings, name: str = DEFAULT_NAME, timeout: float = 15.0) -> bool:
    """Stop director ``name``: requests in flight complete, then HAProxy exits.

    Returns False when it was not running. The saved state is kept, so ``start`` can bring it
    back. Raises :class:`OpsCommandFailed` when it is still alive after a SIGKILL.
    """
    files = director_files(settings, name)
    pid = running_pid(files)
    if pid is None:
        _remove_runtime_files(files)
        return False
    # SIGUSR1 is HAProxy's soft stop: the listeners close at once, the workers finish what
    # they serve, then the master exits. SIGTERM (then SIGKILL) only if that takes too long.
    for sig, wait in ((signal.SIGUSR1, timeout), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not process_alive(pid):
            break
    if process_alive(pid):
        raise OpsCommandFailed(f"director {name}: HAProxy master {pid} survived SIGKILL")
    _remove_runtime_files(files)
    return True
