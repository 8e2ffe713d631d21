"""The fitting engine: a design's rows in, weights, log-likelihoods and covariances out.

:mod:`.engine` runs every fit (``gf.fit`` in memory and blocked, cross-validation folds,
summary refits); :mod:`.identifiability` (sum-to-zero constraints), :mod:`.groups` (units on
the columns they read), :mod:`.sharding` (units over devices and batches),
:mod:`.information` (log-likelihood and Fisher information from passes over row blocks),
:mod:`.covariance` (covariances computed on first use) and :mod:`.poisson` (the observation
model on arrays) are its parts.
"""

from .covariance import CovarianceStack
from .engine import EngineFit, FitDiagnostics, FitOptions, fit_blocked, fit_design, parameter_counts

__all__ = ["FitOptions", "FitDiagnostics", "EngineFit", "fit_design", "fit_blocked",
           "parameter_counts", "CovarianceStack"]
