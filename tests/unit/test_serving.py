"""What movierec.serving sets up in each gunicorn worker."""

import gc
import subprocess
import sys

from movierec.db.waiting import wait_cooperatively
from movierec.serving import freeze_startup_objects


def test_a_worker_freezes_what_it_holds_once_started():
    assert gc.get_freeze_count() == 0
    try:
        freeze_startup_objects()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


# In a child interpreter: gevent's patch cannot be undone in the test process.
AFTER_LATE_PATCH = """
import psycopg
from psycopg import waiting

chosen_at_import = waiting.wait
from gevent import monkey

monkey.patch_all()
from movierec.db.waiting import wait_cooperatively

wait_cooperatively()
print(chosen_at_import is waiting.wait_c, waiting.wait is waiting.wait_poll)
"""


def test_a_gevent_worker_makes_psycopg_wait_cooperatively():
    """The CLI imports psycopg before the gevent worker patches select; the worker must not
    keep psycopg's C wait, which would block every greenlet of the worker on each query."""
    done = subprocess.run(
        [sys.executable, "-c", AFTER_LATE_PATCH], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True"]


def test_a_threaded_worker_keeps_psycopgs_own_wait():
    from psycopg import waiting

    before = waiting.wait
    wait_cooperatively()
    assert waiting.wait is before
