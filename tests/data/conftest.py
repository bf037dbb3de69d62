"""Fixtures of the data tests: tiny MovieLens releases written into tmp_path.

``make_release(name)`` returns the release directory; ``replace`` swaps a whole file's bytes
(to break one line), ``drop`` leaves files out, ``directory`` names the directory.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from data_samples import RELEASES

MakeRelease = Callable[..., Path]


@pytest.fixture
def make_release(tmp_path) -> MakeRelease:
    def make(
        name: str,
        replace: Mapping[str, bytes] | None = None,
        drop: tuple[str, ...] = (),
        directory: str | None = None,
    ) -> Path:
        files = {**RELEASES[name], **(replace or {})}
        target = tmp_path / (directory or name)
        target.mkdir(parents=True, exist_ok=True)
        for file_name, content in files.items():
            if file_name not in drop:
                (target / file_name).write_bytes(content)
        return target

    return make
