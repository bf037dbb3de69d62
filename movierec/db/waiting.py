"""How the driver waits for the database in a gevent worker (see :mod:`movierec.serving`)."""

from __future__ import annotations


def wait_cooperatively() -> None:
    """Make psycopg wait on the database the way gevent can switch greenlets on.

    psycopg chooses its wait function when imported: its C one, unless select is patched by
    then, which is what it does after a gevent patch. ``movierec serve`` imported it before
    the worker patched (the CLI imports the db layer), so choose again here, in the worker,
    before the app opens a connection: with the C function, a greenlet waiting on a query
    would stop every other one of its worker."""
    from gevent import monkey
    from psycopg import waiting

    if monkey.is_module_patched("select"):
        waiting.wait = waiting.wait_poll
