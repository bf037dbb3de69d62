"""From an artifact on disk to the object serving it: one table from ``form`` to class.

Every serving class takes the same arguments (its arrays, the meta, an ANN index, a byte budget
for hot rows) and names the arrays it reads, so loading is the same for every form.

>>> from movierec.ai.loader import load_model
>>> model = load_model(".state/models", kind="ranking")     # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from movierec.ai.ann import ANN_FILE, NPROBE, AnnIndex
from movierec.ai.artifact import ArtifactInfo, load_arrays, read_artifact
from movierec.ai.base import Recommender
from movierec.ai.knn import KnnModel
from movierec.ai.ranking import FORMS as RANKING_FORMS
from movierec.ai.registry import serving_version
from movierec.ai.scorer import FactorModel
from movierec.ai.shard import Shard
from movierec.errors import ModelNotReady

# An artifact's ``form`` (``factors`` when its meta has none) -> the class serving it.
FORMS: dict[str, type[Recommender]] = {"factors": FactorModel, "knn": KnnModel, **RANKING_FORMS}


def model_from_artifact(
    info: ArtifactInfo, shard: Shard | None = None, nprobe: int = NPROBE, hot_bytes: int = 0
) -> Recommender:
    """The serving class for an artifact's ``form``, restricted to ``shard`` when given; its
    ANN index searched with ``nprobe`` (0: exact scoring); up to ``hot_bytes`` of the most
    rated movies' vectors copied into memory.

    Raises :class:`ModelNotReady` when arrays are missing or damaged or the form is unknown.
    """
    form = info.meta.get("form", "factors")
    cls = FORMS.get(form)
    if cls is None:
        raise ModelNotReady(f"model {info.version} has an unknown form {form!r}")
    index = info.path / ANN_FILE
    ann = AnnIndex.open(index, nprobe) if nprobe > 0 and index.exists() else None
    optional = tuple(n for n in cls.optional_arrays if (info.path / f"{n}.npy").exists())
    arrays = load_arrays(info, cls.array_names + optional)
    model = cls(arrays, info.meta, ann=ann, hot_bytes=hot_bytes)
    return model.restrict(shard, info.path) if shard is not None else model


def load_model(
    model_dir: Path | str,
    version: str | None = None,
    kind: str | None = None,
    *,
    shard: Shard | None = None,
    nprobe: int = NPROBE,
    hot_bytes: int = 0,
) -> Recommender:
    """Load an artifact memory-mapped: ``version``; else the live (or newest) one of ``kind``;
    else the newest of all. ``shard``, ``nprobe`` and ``hot_bytes``: see
    :func:`model_from_artifact`.

    Raises :class:`ModelNotReady` when there is no model or it is damaged, and
    :class:`NotFound` when ``version`` does not exist.
    """
    if version is None and kind is not None:
        version = serving_version(Path(model_dir), kind)
        if version is None:
            raise ModelNotReady(f"no {kind} model in {model_dir}; run `movierec model train`")
    info = read_artifact(Path(model_dir), version)
    return model_from_artifact(info, shard, nprobe, hot_bytes)
