"""Versioned model artifacts on disk: one directory of ``.npy`` arrays and a ``meta.json`` each.

A version is a UTC timestamp and the algorithm, e.g. ``20261124T113000Z-svd``, so names sort
by age. An artifact is written into a hidden temporary directory beside the others and renamed
into place when complete: readers (recommender servers polling for new versions) see a whole
artifact or none. Arrays load memory-mapped, so every gunicorn worker on a machine shares one
copy of the pages (numpy maps a read-only ``.npy`` with ``MAP_SHARED``: the pages belong to
the page cache, not to the process); the ANN index (``ann.faiss``) is mapped the same way.
Files a server derives from an artifact (a shard's slice, see :mod:`movierec.ai.slices`)
are written into a sub-directory of it, the same way, and mapped the same way.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from movierec.errors import BadInput, ModelNotReady, NotFound

META_FILE = "meta.json"
VERSION_PATTERN = re.compile(r"^\d{8}T\d{6}Z-[a-z0-9]+$")
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class ArtifactInfo:
    version: str
    path: Path
    meta: dict[str, Any]


def version_name(algorithm: str, when: datetime) -> str:
    """``<UTC timestamp>-<algorithm>``. Raises :class:`BadInput` for a malformed algorithm."""
    name = f"{when.astimezone(UTC).strftime(STAMP_FORMAT)}-{algorithm}"
    if not VERSION_PATTERN.match(name):
        raise BadInput(f"algorithm name {algorithm!r} must be lower-case letters and digits")
    return name


def write_artifact(
    model_dir: Path,
    algorithm: str,
    arrays: Mapping[str, np.ndarray],
    meta: Mapping[str, Any],
    when: datetime | None = None,
    files: Mapping[str, Callable[[Path], None]] | None = None,
) -> ArtifactInfo:
    """Write ``arrays`` and ``meta`` (plus ``version``) as a new version and return it.

    ``files`` maps other file names (e.g. the ANN index) to a function writing that file at
    the path it is given. The version is stamped with ``when`` (now by default); if that name
    is taken, the next free second is used. Raises :class:`BadInput` for a malformed
    algorithm name.
    """
    when = when or datetime.now(UTC)
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=model_dir))
    try:
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", np.asarray(array), allow_pickle=False)
        for name, write in (files or {}).items():
            write(tmp / name)
            os.chmod(tmp / name, 0o644)
        for attempt in range(3600):
            version = version_name(algorithm, when + timedelta(seconds=attempt))
            full_meta = {"version": version, **meta}
            (tmp / META_FILE).write_text(json.dumps(full_meta, indent=2, sort_keys=False) + "\n")
            final = model_dir / version
            try:
                tmp.rename(final)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                continue
            os.chmod(final, 0o755)  # mkdtemp makes it private; servers may run as another user
            return ArtifactInfo(version, final, full_meta)
        raise BadInput(f"no free version name in {model_dir} for {when:%Y-%m-%d %H:%M}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def version_names(model_dir: Path) -> list[str]:
    """Complete versions in ``model_dir``, oldest first (cheap: no file is read)."""
    try:
        entries = list(os.scandir(model_dir))
    except FileNotFoundError:
        return []
    names = [
        e.name
        for e in entries
        if VERSION_PATTERN.match(e.name) and os.path.exists(os.path.join(e.path, META_FILE))
    ]
    return sorted(names)


def newest_version(model_dir: Path) -> str | None:
    names = version_names(model_dir)
    return names[-1] if names else None


def read_artifact(model_dir: Path, version: str | None = None) -> ArtifactInfo:
    """The artifact ``version`` (the newest when None) with its parsed ``meta.json``.

    Raises :class:`ModelNotReady` when there is no version at all or its meta.json is
    unreadable, :class:`NotFound` when ``version`` does not exist.
    """
    model_dir = Path(model_dir)
    if version is None:
        version = newest_version(model_dir)
        if version is None:
            raise ModelNotReady(f"no trained model in {model_dir}; run `movierec model train`")
    elif version not in version_names(model_dir):
        raise NotFound(f"model version {version!r} not found in {model_dir}")
    path = model_dir / version
    try:
        meta = json.loads((path / META_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise ModelNotReady(f"model {version} has an unreadable {META_FILE}: {exc}") from exc
    return ArtifactInfo(version, path, meta)


def list_artifacts(model_dir: Path) -> list[ArtifactInfo]:
    """Every complete version, oldest first; one with an unreadable meta.json is skipped."""
    infos = []
    for name in version_names(model_dir):
        try:
            infos.append(read_artifact(model_dir, name))
        except ModelNotReady:
            continue
    return infos


def mapped(path: Path) -> np.ndarray:
    """The ``.npy`` file at ``path``, memory-mapped read-only, as a plain array over the
    mapping: worker processes share its pages, and indexing it costs what indexing an array
    does (an ``np.memmap`` wraps every result in a memmap again: 2-3 % of a recommendation's
    CPU, measured in-process over 3,000 of them).

    Raises :class:`OSError` or :class:`ValueError` when it cannot be read."""
    return np.load(path, mmap_mode="r", allow_pickle=False).view(np.ndarray)


def load_arrays(info: ArtifactInfo, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Memory-map the named arrays of an artifact (read-only).

    Raises :class:`ModelNotReady` when one is missing or not a valid ``.npy`` file.
    """
    arrays = {}
    for name in names:
        try:
            arrays[name] = mapped(info.path / f"{name}.npy")
        except (OSError, ValueError) as exc:
            raise ModelNotReady(f"model {info.version} is damaged: {name}.npy: {exc}") from exc
    return arrays


def update_meta(model_dir: Path, version: str, changes: Mapping[str, Any]) -> ArtifactInfo:
    """Merge ``changes`` into a version's meta.json, atomically (temp file + ``os.replace``).

    Raises :class:`NotFound` for an unknown version, :class:`ModelNotReady` when unreadable.
    """
    info = read_artifact(Path(model_dir), version)
    meta = {**info.meta, **changes}
    fd, tmp = tempfile.mkstemp(prefix=".meta-", dir=info.path)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(meta, indent=2, sort_keys=False) + "\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, info.path / META_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return ArtifactInfo(info.version, info.path, meta)
