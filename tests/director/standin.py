"""A stand-in web instance: ``python standin.py NAME PORT``.

``/`` answers its own name, so a test sees which backend served; ``/healthz`` answers 200, or
503 after ``/_down`` (as a web instance whose database is down) until ``/_up``; ``/slow``
takes 1.5 s; ``/headers`` echoes the forwarding headers the director adds.
"""

import json
import os
import sys
import threading
import time

from werkzeug.serving import make_server

# Under gunicorn (for benchmarks) the name comes from the environment.
NAME = os.environ.get("STANDIN_NAME", "standin")
healthy = threading.Event()
healthy.set()


def app(environ, start_response):
    path = environ["PATH_INFO"]
    status, body = "200 OK", NAME
    if path == "/healthz":
        status = "200 OK" if healthy.is_set() else "503 Service Unavailable"
    elif path == "/_down":
        healthy.clear()
    elif path == "/_up":
        healthy.set()
    elif path == "/slow":
        time.sleep(1.5)
    elif path == "/headers":
        body = json.dumps(
            {
                "name": NAME,
                "x-forwarded-for": environ.get("HTTP_X_FORWARDED_FOR"),
                "x-request-id": environ.get("HTTP_X_REQUEST_ID"),
            }
        )
    data = body.encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]


if __name__ == "__main__":
    NAME, port = sys.argv[1], int(sys.argv[2])
    make_server("127.0.0.1", port, app, threaded=True).serve_forever()
