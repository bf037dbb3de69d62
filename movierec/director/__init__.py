"""The director: HAProxy in front of several web instances (health checks, round robin,
graceful reloads), one per name so that a second director can stand beside the first.

>>> from movierec.director import Backend, DirectorState, start, status
>>> state = DirectorState("d1", port=8080, backends=(Backend("web-1", "127.0.0.1", 8001),))
>>> start(settings, state)                                  # doctest: +SKIP
>>> [(b.name, b.status) for b in status(settings, "d1").backends]   # doctest: +SKIP
[('web-1', 'UP')]
"""

from movierec.director.control import (
    DirectorStatus,
    add_backend,
    reload,
    remove_backend,
    running_pid,
    start,
    status,
    stop,
)
from movierec.director.render import render_config
from movierec.director.state import (
    BALANCES,
    DEFAULT_NAME,
    Backend,
    DirectorState,
    director_files,
    known_directors,
    load_state,
    parse_address,
    parse_backend,
    save_state,
)
from movierec.director.stats import BackendStats

__all__ = [
    "BALANCES",
    "DEFAULT_NAME",
    "Backend",
    "BackendStats",
    "DirectorState",
    "DirectorStatus",
    "add_backend",
    "director_files",
    "known_directors",
    "load_state",
    "parse_address",
    "parse_backend",
    "reload",
    "remove_backend",
    "render_config",
    "running_pid",
    "save_state",
    "start",
    "status",
    "stop",
]
