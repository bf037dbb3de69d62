"""The MovieLens importer: format detection, validating parsers, the all-or-nothing load."""

from movierec.data.movielens.importer import import_movielens
from movierec.data.movielens.release import Release, detect_release

__all__ = ["Release", "detect_release", "import_movielens"]
