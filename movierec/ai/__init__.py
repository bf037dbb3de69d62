"""The recommender: training from the database, versioned artifacts, NumPy scoring, a server.

>>> from movierec.ai import load_model
>>> model = load_model(".state/models")          # newest version; doctest: +SKIP
>>> model.recommend(42, k=5).items               # ((movie_id, score), ...); doctest: +SKIP
>>> model.similar(318, k=5).items                 # doctest: +SKIP
>>> model.predict(42, 318)                        # doctest: +SKIP

The server is ``movierec.ai.server:create_app()`` (run by ``movierec serve``).
"""

from movierec.ai.artifact import ArtifactInfo, list_artifacts, newest_version, read_artifact
from movierec.ai.base import Recommendations, Recommender, Similar
from movierec.ai.candidates import Shard
from movierec.ai.dataset import RatingsData, ratings_from_arrays, read_ratings, to_trainset
from movierec.ai.evaluation import Metrics, holdout_split, kfold
from movierec.ai.factors import Factors
from movierec.ai.scorer import FactorModel, load_model, model_arrays
from movierec.ai.train import TrainParams, TrainReport, fit_svd, train_model

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
