"""Running the ``movierec`` command as an admin would: a separate process, a state directory,
no database URL inherited from the test's environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def movierec(state_dir: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "MOVIEREC_STATE_DIR": str(state_dir), "COLUMNS": "200", "TERM": "dumb"}
    for name in ("MOVIEREC_DATABASE_URL", "MOVIEREC_REPLICA_URL"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "movierec", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
