"""Whether a TCP port is free to listen on."""

from __future__ import annotations

import socket


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether nothing listens on ``host:port``. The test socket does not set SO_REUSEPORT,
    so it fails next to listeners that did (gunicorn's workers, see
    :func:`movierec.serving.serve`) as it does next to any other."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True
