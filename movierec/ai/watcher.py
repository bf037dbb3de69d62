"""The model a server answers with, switched to a newer artifact when one appears.

Checking is a directory listing, done at most once per ``interval`` seconds and only when a
request asks for the model, so an idle worker does no work and ``movierec model train`` while
serving takes effect within ``interval`` seconds. A damaged or half-visible new version is
logged and skipped; the old model keeps serving.

With a ``kind``, the watcher follows that kind's live pointer (see :mod:`movierec.ai.registry`)
so promotions and rollbacks reach every server within ``interval``. The switch is one
reference assignment: a request holds the model object it got from :meth:`current` until it
ends, so it is answered by exactly one version even while another is swapped in.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from movierec.ai.artifact import META_FILE, newest_version
from movierec.ai.base import Recommender
from movierec.ai.loader import load_model
from movierec.ai.registry import serving_version
from movierec.errors import ModelNotReady, MovierecError

log = logging.getLogger(__name__)


class ModelWatcher:
    """Holds the newest loadable model of ``model_dir`` (or of ``kind``, or one pinned model)."""

    def __init__(
        self,
        model_dir: Path | None,
        interval: float = 5.0,
        pinned: Recommender | None = None,
        clock: Callable[[], float] = time.monotonic,
        kind: str | None = None,
        load: Callable[[Path, str], Recommender] = load_model,
    ):
        """``load(model_dir, version)`` loads a version (e.g. restricted to a shard)."""
        self.model_dir = model_dir
        self._load = load
        self.kind = kind
        self.interval = interval
        self._model = pinned
        self._pinned = pinned is not None
        self._clock = clock
        self._checked_at: float | None = None
        self._failed: tuple[str, tuple[int, int]] | None = None  # a version that failed
        self._lock = threading.Lock()

    def current(self) -> Recommender | None:
        """The model to answer with, or None while no artifact exists."""
        if self._pinned or self.model_dir is None:
            return self._model
        now = self._clock()
        if self._checked_at is not None and now - self._checked_at < self.interval:
            return self._model
        with self._lock:
            if self._checked_at is None or now - self._checked_at >= self.interval:
                self._checked_at = now
                self._refresh()
        return self._model

    def _refresh(self) -> None:
        if self.kind is None:
            newest = newest_version(self.model_dir)
        else:
            newest = serving_version(self.model_dir, self.kind)
        loaded = self._model.version if self._model else None
        if newest is None or newest == loaded:
            return
        # A version that failed is retried only if rewritten (removed, then trained again).
        attempt = (newest, _identity(self.model_dir / newest / META_FILE))
        if attempt == self._failed:
            return
        try:
            model = self._load(self.model_dir, newest)
            if self.kind is not None and model.kind != self.kind:
                raise ModelNotReady(f"model {newest} is a {model.kind} model, not {self.kind}")
            self._model = model
        except MovierecError as exc:
            self._failed = attempt
            log.warning("cannot load model %s, keeping %s: %s", newest, loaded, exc)
            return
        log.info("serving model %s (was %s)", newest, loaded)


def _identity(path: Path) -> tuple[int, int]:
    """What tells a rewritten file from the one that failed, though the name is the same."""
    try:
        stat = path.stat()
    except OSError:
        return (0, 0)
    return (stat.st_ino, stat.st_mtime_ns)
