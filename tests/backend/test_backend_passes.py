"""The Newton path: one pass over the design per accepted step, float32 Hessians that never
cost exactness, on well- and ill-conditioned designs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import statsmodels.api as sm

import glmformula.backend as gb


def _objective(X, y, w, b):
    eta = X @ w + b
    return float(np.mean(np.exp(eta) - y * eta))


def test_one_pass_over_the_design_per_full_step():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((20_000, 12)) * 0.3
    y = rng.poisson(np.exp(-2.0 + X @ rng.normal(0, 0.3, 12)))
    sol = gb.solve(gb.Problem(X, y[:, None]), solver="newton")
    assert sol.converged.all()
    # the starting point costs one pass; each iteration one more (line search and gradient
    # from the same pass) when its full step is accepted, two otherwise
    iterations = int(sol.n_iter[0])
    assert iterations + 1 <= sol.n_matmul_passes <= 2 * iterations + 1
    assert sol.n_matmul_passes == iterations + 1  # this problem takes full steps
    # float32 Hessians (and chord steps) only: fewer Hessian passes than iterations
    assert sol.n_hessian_passes < iterations


@pytest.mark.parametrize("eps", [1e-2, 1e-3, 1e-4])
def test_ill_conditioned_designs_reach_the_optimum(eps):
    """Nearly collinear columns (condition number ~1/eps^2, up to 1e8: beyond what float32
    resolves, within float64's rank test): the float32 Hessians give way to float64 ones and
    the fit reaches statsmodels' IRLS optimum."""
    rng = np.random.default_rng(4)
    z = rng.standard_normal((40_000, 4))
    X = np.column_stack([z[:, 0], z[:, 0] + eps * z[:, 1], z[:, 2], z[:, 0] - eps * z[:, 3]])
    y = rng.poisson(np.exp(-2 + 0.3 * z[:, 0] + 0.2 * z[:, 2]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # huge weights trip the separation heuristic
        sol = gb.solve(gb.Problem(X, y[:, None]), solver="newton")
        ref = sm.GLM(y, sm.add_constant(X), family=sm.families.Poisson()).fit(tol=1e-14)
    assert sol.converged.all() and not sol.rank_deficient.any()
    ours = _objective(X, y, sol.weights[:, 0], sol.intercept[0])
    theirs = _objective(X, y, ref.params[1:], ref.params[0])
    assert ours <= theirs + 1e-13 * abs(theirs)
    scale = np.abs(ref.params).max()
    assert np.max(np.abs(np.r_[sol.intercept, sol.weights[:, 0]] - ref.params)) < 1e-5 * scale
