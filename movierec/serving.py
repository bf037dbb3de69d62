"""Run a WSGI app factory under gunicorn, in this process (``movierec serve ...``).

Each worker calls the factory itself after the fork, so database pools and memory-mapped model
files are opened per worker, never shared across a fork.
"""

from __future__ import annotations

import gc
import importlib
from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication

from movierec.config import Settings
from movierec.errors import BadInput
from movierec.ports import port_free

FACTORIES = {
    "web": "movierec.web:create_app",
    "ai": "movierec.ai.server:create_app",
}


def load_factory(kind: str) -> Callable[..., Any]:
    module_name, _, attr = FACTORIES[kind].partition(":")
    return getattr(importlib.import_module(module_name), attr)


class _Gunicorn(BaseApplication):
    def __init__(self, factory: Callable[[], Any], options: dict[str, Any]):
        self._factory = factory
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return self._factory()


def freeze_startup_objects(worker: Any = None) -> None:
    """Move everything the worker holds once its app is loaded (modules, the app and what it
    built: about 150,000 objects in a web worker) out of the garbage collector's reach.

    A full collection walks every tracked object and stops the whole process meanwhile. Over
    3,000 cold "for you" pages in one web process the longest took 89 ms with these objects
    and 11 ms without: such pauses showed in the 99th percentile. Garbage among them is never
    freed; there is little, as they live as long as the worker."""
    gc.freeze()


def serve(kind: str, settings: Settings, host: str, port: int, workers: int) -> None:
    """Serve the ``web`` or ``ai`` app until SIGINT/SIGTERM. Blocks. Raises
    :class:`BadInput` when something already listens on ``host:port``."""
    # Checked here: SO_REUSEPORT would let a second server on the port share it silently.
    if not port_free(port, host):
        raise BadInput(f"{host}:{port} is in use; pick another --port or stop what listens there")
    factory = load_factory(kind)
    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "gthread",
        # Each worker listens on a socket of its own and the kernel spreads new connections
        # over them. On one shared socket, whichever worker was idle took a whole burst of
        # connections: a director's kept-alive connections then all went to one worker, which
        # served up to 99 % of the requests while the other idled.
        "reuse_port": True,
        "threads": 4,
        "timeout": 60,
        "graceful_timeout": 5,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "proc_name": f"movierec-{kind}",
        "post_worker_init": freeze_startup_objects,
    }
    _Gunicorn(lambda: factory(settings), options).run()
