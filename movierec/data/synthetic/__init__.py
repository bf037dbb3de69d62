"""Synthetic catalogues: word-list titles, Zipf popularity, users whose tastes drive ratings."""

from movierec.data.synthetic.catalogue import Catalogue, sample_catalogue
from movierec.data.synthetic.generator import SOURCE, generate_catalogue

__all__ = ["SOURCE", "Catalogue", "generate_catalogue", "sample_catalogue"]
