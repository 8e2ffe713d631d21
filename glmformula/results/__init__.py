"""Results layer: fitted models read in terms of the formula.

:func:`fit` runs the fitting engine and returns a :class:`FitResult`: the model's
:class:`~glmformula.graph.layout.DesignSpec` plus weights, covariance and diagnostics. One
module per job reads it: :mod:`.curves` (tuning curves, maps and filters with bands; the
coupling matrix), :mod:`.summary` (per-term Wald tests, deviance explained), :mod:`.simulate`
(spike counts drawn from the model), :mod:`.plotting` (figures), :mod:`.persistence` (npz +
JSON files) and :mod:`.scores`.
"""

from ..graph.layout import CovariateRange
from .fit import design_matrix, fit
from .fit_result import FitResult, load_result

__all__ = ["fit", "design_matrix", "FitResult", "load_result", "CovariateRange"]
