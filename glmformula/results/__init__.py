"""Results layer: fitted models read in terms of the formula."""

from .fit_result import FitResult

__all__ = ["FitResult"]
