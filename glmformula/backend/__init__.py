"""GLM solvers on plain arrays (the formula layer above builds the arrays): Poisson, and the
observation families of :mod:`.families` (``solve(..., family=...)``).

Public names::

    Problem                      the arrays: X (T, P), y (T, U), column_mask, offset, row_weight,
                                 column_groups
    BlockedProblem               the same with rows in blocks (designs larger than memory)
    solve(problem, ...)          fit all units -> Solution (the one entry point)
    unit_information(...)        a unit's Fisher information on its own columns (standard errors)
    Ridge, Lasso, ElasticNet, GroupLasso
    Newton, LBFGS, ProximalNewton   the solvers as values (solve() builds them)
    ColdStart                    a start from the data's marginal statistics (Newton begins there)
    start_part(init, ...)        a start's part for some columns and units
    Curvature                    L-BFGS's last preconditioner (Solution.preconditioner), for
                                 warm starts on some of the rows (solve(..., preconditioner=))
    (warnings: glmformula.errors, one home for all of them)

Precision: the backend enables JAX float64 only inside its own calls, through
the scoped ``jax.enable_x64(True)`` context (see :mod:`.solve`); importing it
changes no global JAX setting.
"""

from .covariance import invert_information, unit_information
from .lbfgs import LBFGS, Curvature
from .newton import Newton
from .problem import BlockedProblem, Problem
from .proximal import ProximalNewton
from .regularizers import ElasticNet, GroupLasso, Lasso, Ridge
from .solve import (
    ColdStart,
    ColumnRangeError,
    Solution,
    choose_solver,
    default_dtype,
    solve,
    start_part,
)

__all__ = [
    "Problem",
    "BlockedProblem",
    "Solution",
    "ColdStart",
    "start_part",
    "ColumnRangeError",
    "solve",
    "choose_solver",
    "default_dtype",
    "unit_information",
    "invert_information",
    "Ridge",
    "Lasso",
    "ElasticNet",
    "GroupLasso",
    "Newton",
    "LBFGS",
    "Curvature",
    "ProximalNewton",
]
