"""movierec: an open movie recommendation service.

Sub-packages: :mod:`movierec.db` (schema, engines, local server), :mod:`movierec.data`
(synthetic catalogues, MovieLens import), :mod:`movierec.ai` (training, artifacts, scoring,
recommender server), :mod:`movierec.web` (the Flask site), :mod:`movierec.cli` (admin CLI).
"""

__version__ = "0.1.0"
