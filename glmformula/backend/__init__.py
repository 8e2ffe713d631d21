"""Poisson GLM solvers on plain arrays (the formula layer above builds the arrays).

Public names::

    Problem                      the arrays: X (T, P), y (T, U), column_mask, offset, row_weight, column_groups
    solve(problem, ...)          fit all units (in memory) -> Solution
    solve_blocked(blocks, ...)   fit from row blocks (designs larger than memory) -> Solution
    fisher_covariance(...)       (U, P+1, P+1) inverse penalised Fisher information (intercept last)
    Ridge, Lasso, ElasticNet, GroupLasso
    Newton, LBFGS, ProximalNewton   the solvers as values (solve() builds them)
    ConvergenceWarning, NoSpikesWarning, SeparationWarning, RankDeficientWarning

Precision: the backend enables JAX float64 only inside its own calls, through
the scoped ``jax.enable_x64(True)`` context (see :mod:`.solve`); importing it
changes no global JAX setting.
"""

from .covariance import fisher_covariance, standard_errors
from .lbfgs import LBFGS
from .newton import Newton
from .problem import Problem
from .proximal import ProximalNewton
from .regularizers import ElasticNet, GroupLasso, Lasso, Ridge
from .solve import ColumnRangeError, Solution, choose_solver, default_dtype, solve, solve_blocked
from ..errors import ConvergenceWarning, NoSpikesWarning, RankDeficientWarning, SeparationWarning

__all__ = [
    "Problem",
    "Solution",
    "ColumnRangeError",
    "solve",
    "solve_blocked",
    "choose_solver",
    "default_dtype",
    "fisher_covariance",
    "standard_errors",
    "Ridge",
    "Lasso",
    "ElasticNet",
    "GroupLasso",
    "Newton",
    "LBFGS",
    "ProximalNewton",
    "ConvergenceWarning",
    "NoSpikesWarning",
    "SeparationWarning",
    "RankDeficientWarning",
]
