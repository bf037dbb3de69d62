"""Versioned artifacts: names sort by age, writes are all-or-nothing, loads are mmapped."""

import json
from datetime import UTC, datetime

import numpy as np
import pytest

from movierec.ai.artifact import (
    list_artifacts,
    load_arrays,
    newest_version,
    read_artifact,
    version_name,
    write_artifact,
)
from movierec.errors import BadInput, ModelNotReady, NotFound

WHEN = datetime(2026, 11, 24, 11, 30, 0, tzinfo=UTC)


def write(model_dir, when=WHEN, **meta):
    return write_artifact(model_dir, "svd", {"x": np.arange(4.0)}, meta, when=when)


def test_version_is_a_sortable_utc_timestamp():
    assert version_name("svd", WHEN) == "20261124T113000Z-svd"
    with pytest.raises(BadInput):
        version_name("SVD/../x", WHEN)


def test_write_then_read_round_trip_memory_mapped(tmp_path):
    info = write(tmp_path, rmse=0.9)
    assert info.version == "20261124T113000Z-svd"
    assert json.loads((info.path / "meta.json").read_text()) == {
        "version": info.version, "rmse": 0.9,
    }  # fmt: skip
    arrays = load_arrays(read_artifact(tmp_path), ("x",))
    assert arrays["x"].tolist() == [0, 1, 2, 3]
    assert type(arrays["x"]) is np.ndarray and isinstance(arrays["x"].base, np.memmap)
    with pytest.raises(ValueError):
        arrays["x"][0] = 5  # read-only: workers share the pages


def test_same_second_gets_the_next_free_name(tmp_path):
    first, second = write(tmp_path), write(tmp_path)
    assert (first.version, second.version) == ("20261124T113000Z-svd", "20261124T113001Z-svd")
    assert newest_version(tmp_path) == second.version


def test_unfinished_and_foreign_directories_are_ignored(tmp_path):
    write(tmp_path)
    (tmp_path / ".tmp-abc").mkdir()  # a write in progress
    (tmp_path / "20991231T000000Z-svd").mkdir()  # no meta.json yet: not a version
    (tmp_path / "notes").mkdir()
    assert [i.version for i in list_artifacts(tmp_path)] == ["20261124T113000Z-svd"]


def test_a_failed_write_leaves_nothing_behind(tmp_path):
    with pytest.raises(ValueError):
        write_artifact(tmp_path, "svd", {"x": np.array([object()])}, {}, when=WHEN)
    assert list(tmp_path.iterdir()) == []


def test_newest_is_the_default_and_missing_versions_are_errors(tmp_path):
    with pytest.raises(ModelNotReady, match="model train"):
        read_artifact(tmp_path / "none")
    write(tmp_path)
    write(tmp_path, when=datetime(2027, 1, 1, tzinfo=UTC))
    assert read_artifact(tmp_path).version == "20270101T000000Z-svd"
    assert read_artifact(tmp_path, "20261124T113000Z-svd").meta["version"].startswith("2026")
    with pytest.raises(NotFound):
        read_artifact(tmp_path, "20250101T000000Z-svd")


def test_damaged_artifact_is_not_ready(tmp_path):
    info = write(tmp_path)
    (info.path / "x.npy").write_bytes(b"garbage")
    with pytest.raises(ModelNotReady, match="damaged"):
        load_arrays(info, ("x",))
    with pytest.raises(ModelNotReady, match="damaged"):
        load_arrays(info, ("missing",))
