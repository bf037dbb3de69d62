"""What movierec.serving sets up in each gunicorn worker."""

import gc

from movierec.serving import freeze_startup_objects


def test_a_worker_freezes_what_it_holds_once_started():
    assert gc.get_freeze_count() == 0
    try:
        freeze_startup_objects()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
