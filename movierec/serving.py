"""Run a WSGI app factory under gunicorn, in this process (``movierec serve ...``).

Each worker calls the factory itself after the fork, so database pools and memory-mapped model
files are opened per worker, never shared across a fork.

The web site runs gthread workers: four threads each, the GIL shared between them. A
recommender runs gevent workers: one thread, a greenlet per connection, switching only where
one waits on a socket (gunicorn's gevent worker patches the standard library for that). Its
requests compute with the GIL held for a millisecond or two and have little to wait on: four
threads per process only took the GIL from each other, and each request went from the
accepting thread to a pool thread and back. Measured here (2 cores, cold "for you" pages
through a 1 x 1 cluster): the recommender's CPU per request fell from 2.5-3.4 to 2.0-2.3 ms.
The site stays on threads: under gevent its warm pages came 15 % faster but with a 99th
percentile of 40-100 ms against 20 ms (a greenlet runs until it waits, and a busy worker's
connections queue behind each other's pages).
"""

from __future__ import annotations

import gc
import importlib
import json
import warnings
from collections.abc import Callable
from typing import Any

from gevent.monkey import MonkeyPatchWarning
from gunicorn import util
from gunicorn.app.base import BaseApplication
from gunicorn.http.errors import LimitRequestHeaders, LimitRequestLine
from gunicorn.workers.ggevent import GeventWorker
from gunicorn.workers.gthread import ThreadWorker

from movierec.config import Settings
from movierec.errors import BadInput
from movierec.ports import port_free

WORKER_CLASS = {"web": "movierec.serving.WebWorker", "ai": "movierec.serving.AIWorker"}
# gunicorn's largest bounded request line (its default is 4094; 0 would mean unbounded). A
# longer one is refused before the app sees it, in JSON (see _JsonLimits); below it, each
# parameter's own bound (movierec.wire.params) answers with a 400 naming the value.
LIMIT_REQUEST_LINE = 8190
THREADS = 4  # per gthread worker
# Connections a gevent worker serves at once; its database pool bounds the queries in flight.
WORKER_CONNECTIONS = 100

# Every log line of the server (gunicorn's own and the app's) goes to stderr through one
# handler whose filter hides passwords (movierec.redact): a failed connection's message or a
# traceback must not put the database password into a log file.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "movierec.redact.RedactingFilter"}},
    "formatters": {
        "plain": {
            "format": "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s",
            "datefmt": "[%Y-%m-%d %H:%M:%S %z]",
        }
    },
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["redact"],
            "stream": "ext://sys.stderr",
        }
    },
    "root": {"level": "WARNING", "handlers": ["stderr"]},
    "loggers": {
        "gunicorn.error": {"level": "WARNING", "handlers": ["stderr"], "propagate": False},
        "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
    },
}

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
        # Here, in the worker after its patch; the driver lives in the db package.
        from movierec.db.waiting import wait_cooperatively

        wait_cooperatively()
        return self._factory()


def freeze_startup_objects(worker: Any = None) -> None:
    """Move everything the worker holds once its app is loaded (modules, the app and what it
    built: about 150,000 objects in a web worker) out of the garbage collector's reach.

    A full collection walks every tracked object and stops the whole process meanwhile. Over
    3,000 cold "for you" pages in one web process the longest took 89 ms with these objects
    and 11 ms without: such pauses showed in the 99th percentile. Garbage among them is never
    freed; there is little, as they live as long as the worker."""
    gc.freeze()


class _JsonLimits:
    """gunicorn's answer to a request too large to read, as JSON ``{"error"}`` (like every
    other error of the site's API and the recommender) instead of its HTML page. Other
    errors are gunicorn's own handling."""

    log: Any

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        if isinstance(exc, LimitRequestLine):
            status, message = (
                "414 URI Too Long",
                f"the request line is longer than {exc.max_size} bytes",
            )
        elif isinstance(exc, LimitRequestHeaders):
            status, message = "431 Request Header Fields Too Large", f"request headers: {exc}"
        else:
            super().handle_error(req, client, addr, exc)  # type: ignore[misc]
            return
        self.log.warning("Invalid request from ip=%s: %s", (addr or ("",))[0], exc)
        body = json.dumps({"error": message}).encode()
        head = (
            f"HTTP/1.1 {status}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        try:
            util.write_nonblock(client, head.encode("latin-1") + body)
        except OSError:
            self.log.debug("Failed to send error message.")


class WebWorker(_JsonLimits, ThreadWorker):
    """The site's worker: threads (see the module docstring)."""


class AIWorker(_JsonLimits, GeventWorker):
    """A recommender's worker: greenlets (see the module docstring)."""


def serve(kind: str, settings: Settings, host: str, port: int, workers: int) -> None:
    """Serve the ``web`` or ``ai`` app until SIGINT/SIGTERM. Blocks. Raises
    :class:`BadInput` when something already listens on ``host:port``."""
    # Checked here: SO_REUSEPORT would let a second server on the port share it silently.
    if not port_free(port, host):
        raise BadInput(f"{host}:{port} is in use; pick another --port or stop what listens there")
    factory = load_factory(kind)
    # The gevent worker patches the standard library after the fork, when this process has
    # imported ssl already (the CLI needs urllib3), and gevent warns that it is late. What
    # that leaves unpatched is urllib3's TLS context, which a recommender never uses.
    warnings.filterwarnings("ignore", category=MonkeyPatchWarning)
    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": WORKER_CLASS[kind],
        "limit_request_line": LIMIT_REQUEST_LINE,
        "threads": THREADS,
        "worker_connections": WORKER_CONNECTIONS,
        # Each worker listens on a socket of its own and the kernel spreads new connections
        # over them. On one shared socket, whichever worker was idle took a whole burst of
        # connections: a director's kept-alive connections then all went to one worker, which
        # served up to 99 % of the requests while the other idled.
        "reuse_port": True,
        "timeout": 60,
        "graceful_timeout": 5,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "logconfig_dict": LOGGING,
        "proc_name": f"movierec-{kind}",
        # gunicorn believes X-Forwarded-Proto (and SCRIPT_NAME/PATH_INFO headers) from
        # 127.0.0.1 by default: any local client, or a director passing on what its client
        # sent, would choose the scheme. Nothing is believed here; the site believes exactly
        # its web_proxy_count proxies (ProxyFix in movierec.web.app).
        "forwarded_allow_ips": "",
        "secure_scheme_headers": {},
        "post_worker_init": freeze_startup_objects,
    }
    _Gunicorn(lambda: factory(settings), options).run()
