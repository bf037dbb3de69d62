"""Data in bulk: synthetic catalogues and the MovieLens importer.

>>> from movierec.data import generate_catalogue, import_movielens
>>> import_movielens(database, "../shared/data/movielens/ml-100k")    # doctest: +SKIP
ImportSummary(source='ml-100k', movies=1682, users=943, ratings=100000, seconds=...)
"""

from movierec.data.movielens import Release, detect_release, import_movielens
from movierec.data.results import GenerateSummary, ImportSummary, Progress
from movierec.data.synthetic import Catalogue, generate_catalogue, sample_catalogue

__all__ = [
    "Catalogue",
    "GenerateSummary",
    "ImportSummary",
    "Progress",
    "Release",
    "detect_release",
    "generate_catalogue",
    "import_movielens",
    "sample_catalogue",
]
