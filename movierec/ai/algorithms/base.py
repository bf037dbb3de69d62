"""The one trainer interface every algorithm implements, and its typed hyper-parameters.

An :class:`Algorithm` turns ratings into a :class:`Fitted` model; a fitted model can score
(for evaluation, on the rows it was fitted on) and can describe itself as artifact arrays.
Two kinds exist: ``rating`` models estimate stars (RMSE/MAE, ``/predict``), ``ranking`` models
order movies (NDCG@10, ``/recommend``). Rating models can rank too, by estimated stars.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from movierec.ai.dataset import RatingsData
from movierec.errors import BadInput

RATING = "rating"
RANKING = "ranking"
KINDS = (RATING, RANKING)


@dataclass(frozen=True)
class Param:
    """One hyper-parameter: its type (int, float, bool or str), default and allowed range."""

    name: str
    type: type
    default: Any
    help: str
    check: Callable[[Any], bool] = lambda value: True
    rule: str = ""

    def coerce(self, raw: Any) -> Any:
        """``raw`` (a string from the CLI, or a TOML value) as this parameter's type.

        Raises :class:`BadInput` when it does not convert or is out of range.
        """
        try:
            if self.type is bool and isinstance(raw, str):
                if raw.strip().lower() not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError("expected true/false")
                value: Any = raw.strip().lower() in ("1", "true", "yes")
            elif self.type is int and isinstance(raw, float) and not raw.is_integer():
                raise ValueError("expected an integer")
            else:
                value = self.type(raw)
        except (TypeError, ValueError) as exc:
            raise BadInput(f"parameter {self.name}={raw!r} is malformed ({exc})") from exc
        if not self.check(value):
            raise BadInput(f"parameter {self.name}={value!r}: must be {self.rule}")
        return value


def positive(value: float) -> bool:
    return value > 0


def non_negative(value: float) -> bool:
    return value >= 0


class Fitted(ABC):
    """A model fitted on some rows of a :class:`RatingsData`, indexed by its dense indices."""

    kind: str
    form: str  # how the artifact is laid out, and so which class serves it

    def estimate_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Clipped star estimates for parallel dense-index arrays (rating models only)."""
        raise BadInput(f"a {self.form} model estimates no ratings")

    @abstractmethod
    def score_users(self, users: np.ndarray, seen: sp.csr_matrix) -> np.ndarray:
        """Scores ``(len(users), n_items)``, higher is better; ``seen`` is the user-item matrix
        the model was fitted on (rating values), from which ranking models fold users in."""

    @abstractmethod
    def arrays(self) -> dict[str, np.ndarray]:
        """The form-specific arrays of the artifact (the shared ones are added by training)."""

    def meta(self) -> dict[str, Any]:
        """Form-specific metadata stored in meta.json."""
        return {}


class Algorithm(ABC):
    """A named algorithm with typed hyper-parameters; :meth:`fit` returns a :class:`Fitted`."""

    name: str
    kind: str
    summary: str
    params: tuple[Param, ...] = ()
    library: str = "numpy"
    can_rank: bool = True  # False when scoring every movie for every user is impractical

    def resolve(self, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults overridden by ``given``, coerced and checked.

        Raises :class:`BadInput` naming unknown parameters and every malformed value.
        """
        given = dict(given or {})
        known = {p.name: p for p in self.params}
        unknown = sorted(set(given) - set(known))
        if unknown:
            names = ", ".join(known) or "none"
            raise BadInput(f"{self.name} has no parameter {', '.join(unknown)} (it has: {names})")
        values, problems = {}, []
        for name, param in known.items():
            try:
                values[name] = param.coerce(given[name]) if name in given else param.default
            except BadInput as exc:
                problems.append(str(exc))
        if problems:
            raise BadInput("; ".join(problems))
        return values

    @abstractmethod
    def fit(
        self, data: RatingsData, rows: np.ndarray | None, params: Mapping[str, Any], seed: int
    ) -> Fitted:
        """Fit on ``rows`` of ``data`` (all when None) with resolved ``params``.

        Raises :class:`BadInput` when the data is too large or small for this algorithm.
        """
