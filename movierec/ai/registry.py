"""Which version of each kind is live: a pointer file per kind, swapped atomically.

``<model_dir>/LIVE-ranking`` and ``LIVE-rating`` hold JSON ``{"version": ..., "previous":
[...]}``; a promotion writes a temporary file and ``os.replace``-s it over the pointer, so a
reader sees the old or the new pointer, never half of one. ``previous`` is the stack that
:func:`rollback` pops. Without a pointer the newest artifact of the kind is served, which keeps
``movierec model train`` → serving working on a fresh install.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from movierec.ai.artifact import ArtifactInfo, list_artifacts, read_artifact, version_names
from movierec.errors import BadInput, NotFound

KINDS = ("ranking", "rating")
HISTORY = 20  # how many earlier live versions a pointer remembers


def kind_of(meta: dict) -> str:
    """An artifact's kind; artifacts from before kinds existed are SVD rating models."""
    return str(meta.get("kind", "rating"))


def _pointer(model_dir: Path, kind: str) -> Path:
    if kind not in KINDS:
        raise BadInput(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    return Path(model_dir) / f"LIVE-{kind}"


def _read_pointer(model_dir: Path, kind: str) -> dict:
    try:
        state = json.loads(_pointer(model_dir, kind).read_text())
    except (OSError, ValueError):
        return {"version": None, "previous": []}
    return {"version": state.get("version"), "previous": list(state.get("previous", []))}


def _write_pointer(model_dir: Path, kind: str, state: dict) -> None:
    path = _pointer(model_dir, kind)
    fd, tmp = tempfile.mkstemp(prefix=".live-", dir=model_dir)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(state, fh)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def live_version(model_dir: Path, kind: str) -> str | None:
    """The promoted version of ``kind``, if any and still on disk."""
    version = _read_pointer(model_dir, kind)["version"]
    return version if version in version_names(model_dir) else None


def newest_of_kind(model_dir: Path, kind: str) -> str | None:
    infos = [info for info in list_artifacts(model_dir) if kind_of(info.meta) == kind]
    return infos[-1].version if infos else None


def serving_version(model_dir: Path, kind: str) -> str | None:
    """What a server should answer with: the live version, else the newest of ``kind``."""
    return live_version(model_dir, kind) or newest_of_kind(model_dir, kind)


def promote(model_dir: Path, version: str) -> ArtifactInfo:
    """Make ``version`` live for its kind. Raises :class:`NotFound` for an unknown version."""
    info = read_artifact(Path(model_dir), version)
    kind = kind_of(info.meta)
    state = _read_pointer(model_dir, kind)
    current = live_version(model_dir, kind)
    if current != version:
        previous = ([current] if current else []) + state["previous"]
        _write_pointer(model_dir, kind, {"version": version, "previous": previous[:HISTORY]})
    return info


def pin_serving(model_dir: Path, kind: str) -> str | None:
    """Write the pointer for what is served now (when there is none), so that new artifacts
    are not served before they are promoted. Returns the live version."""
    current = live_version(model_dir, kind)
    if current is None:
        newest = newest_of_kind(model_dir, kind)
        if newest is not None:
            promote(model_dir, newest)
        return newest
    return current


def rollback(model_dir: Path, kind: str) -> str:
    """Make the previously live version of ``kind`` live again and return it.

    Raises :class:`NotFound` when no earlier version is recorded (or none still exists).
    """
    state = _read_pointer(model_dir, kind)
    existing = set(version_names(model_dir))
    previous = [v for v in state["previous"] if v in existing]
    if not previous:
        raise NotFound(f"no earlier live {kind} model to roll back to in {model_dir}")
    _write_pointer(model_dir, kind, {"version": previous[0], "previous": previous[1:]})
    return previous[0]


def history(model_dir: Path, kind: str) -> list[str]:
    """The live version first, then the earlier ones, newest first."""
    state = _read_pointer(model_dir, kind)
    return [v for v in [state["version"], *state["previous"]] if v]
