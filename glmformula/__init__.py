"""glmformula: a formula language for Poisson GLMs of spike trains.

    >>> import glmformula as gf
    >>> f = gf.parse("spikes ~ cyclic(hd, 12) + history(8, log, window=100ms)")
    >>> f.terms
    ('cyclic(hd, 12)', 'history(8, log, window=100ms)')

The pipeline, one package per stage: :mod:`~glmformula.syntax` (text -> syntax tree),
:mod:`~glmformula.terms` (Wilkinson algebra, the registry of term functions),
:mod:`~glmformula.graph` (feature graph -> design matrices from pynapple objects),
:mod:`~glmformula.backend` (JAX Poisson GLM solvers), :mod:`~glmformula.results` (named tables,
curves, scores), plus :mod:`~glmformula.compare`, :mod:`~glmformula.spec` and the command line.
"""

from . import datasets
from . import functions as _functions  # noqa: F401  (registers the built-in term functions)
from .backend.regularizers import ElasticNet, GroupLasso, Lasso, Ridge
from .compare import Selection, compare, select
from .config import config
from .errors import (
                     BinSizeWarning,
                     ConvergenceWarning,
                     DataError,
                     FitError,
                     FormulaError,
                     FormulaSyntaxError,
                     GlmformulaWarning,
                     NoSpikesWarning,
                     RankDeficientWarning,
                     ResultError,
                     ScoreWarning,
                     SeparationWarning,
                     SimulationWarning,
                     SpecError,
                     TermArgumentError,
                     UnknownNameError,
)
from .graph.design import DesignMatrix
from .results import FitResult, design_matrix, fit, load_result
from .spec import ModelSpec, load_spec, run_spec
from .terms.formula import Formula, parse
from .terms.registry import Param, registered, term_function, unregister

__version__ = "0.1.0"

__all__ = [
    "parse", "Formula", "design_matrix", "DesignMatrix", "fit", "FitResult", "load_result",
    "compare", "select", "Selection", "load_spec", "run_spec", "ModelSpec", "Ridge", "Lasso",
    "ElasticNet", "GroupLasso", "datasets", "config", "term_function", "Param", "registered",
    "unregister", "FormulaError", "FormulaSyntaxError", "UnknownNameError", "TermArgumentError",
    "DataError", "SpecError", "FitError", "ResultError", "GlmformulaWarning",
    "ConvergenceWarning", "NoSpikesWarning", "SeparationWarning", "RankDeficientWarning",
    "BinSizeWarning", "SimulationWarning", "ScoreWarning",
    "__version__",
]
