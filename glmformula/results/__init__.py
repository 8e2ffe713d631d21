"""Results layer: fitted models read in terms of the formula.

:class:`FitResult` holds the fit; one module per job reads it: :mod:`.curves` (tuning curves,
maps and filters with bands; the coupling matrix), :mod:`.summary` (per-term Wald tests,
deviance explained), :mod:`.simulate` (spike counts drawn from the model), :mod:`.plotting`
(figures), :mod:`.persistence` (npz + JSON files) and :mod:`.scores`.
"""

from ..errors import ResultError  # noqa: F401  (kept for old imports)
from .evaluation import CovariateRange
from .fit_result import FitResult

__all__ = ["FitResult", "ResultError", "CovariateRange"]
