"""The recommender: training from the database, versioned artifacts, NumPy scoring, a server.

>>> from movierec.ai import load_model
>>> model = load_model(".state/models")          # newest version; doctest: +SKIP
>>> model.recommend(42, k=5).items               # ((movie_id, score), ...); doctest: +SKIP
>>> model.similar(318, k=5).items                 # doctest: +SKIP
>>> model.predict(42, 318)                        # doctest: +SKIP

The server is ``movierec.ai.server:create_app()`` (run by ``movierec serve``).
"""

import importlib

# What this package offers and the module each comes from, imported on first use: a recommender
# server imports movierec.ai.server, and must not pay for (nor import) training, surprise or the
# database driver because this package's front door names them.
_HOMES = {
    "ArtifactInfo": "movierec.ai.artifact",
    "FactorModel": "movierec.ai.scorer",
    "Factors": "movierec.ai.factors",
    "Metrics": "movierec.ai.evaluation",
    "RatingsData": "movierec.ai.dataset",
    "Recommendations": "movierec.ai.base",
    "Recommender": "movierec.ai.base",
    "Shard": "movierec.ai.shard",
    "Similar": "movierec.ai.base",
    "TrainParams": "movierec.ai.train",
    "TrainReport": "movierec.ai.train",
    "fit_svd": "movierec.ai.train",
    "holdout_split": "movierec.ai.evaluation",
    "kfold": "movierec.ai.evaluation",
    "list_artifacts": "movierec.ai.artifact",
    "load_model": "movierec.ai.loader",
    "model_arrays": "movierec.ai.scorer",
    "newest_version": "movierec.ai.artifact",
    "ratings_from_arrays": "movierec.ai.dataset",
    "read_artifact": "movierec.ai.artifact",
    "read_ratings": "movierec.ai.dataset",
    "to_trainset": "movierec.ai.dataset",
    "train_model": "movierec.ai.train",
}

__all__ = [
    "ArtifactInfo",
    "FactorModel",
    "Factors",
    "Metrics",
    "RatingsData",
    "Recommendations",
    "Recommender",
    "Shard",
    "Similar",
    "TrainParams",
    "TrainReport",
    "fit_svd",
    "holdout_split",
    "kfold",
    "list_artifacts",
    "load_model",
    "model_arrays",
    "newest_version",
    "ratings_from_arrays",
    "read_artifact",
    "read_ratings",
    "to_trainset",
    "train_model",
]


def __getattr__(name: str):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
