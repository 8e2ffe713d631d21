"""Unpenalised fits and standard errors against statsmodels' GLM Poisson (IRLS)."""

import numpy as np
import pytest
import statsmodels.api as sm

from glmformula.backend import Problem, invert_information, solve, unit_information

SOLVERS = ["newton", "lbfgs", "proximal"]


def sm_fit(X, y, offset=None, freq_weights=None):
    model = sm.GLM(y, sm.add_constant(X, has_constant="add"), family=sm.families.Poisson(),
                   offset=offset, freq_weights=freq_weights)
    return model.fit(tol=1e-13, maxiter=100)


def rel(a, b):
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12)


@pytest.mark.parametrize("solver", ["newton"])
def test_single_unit_matches_statsmodels(population, solver):
    X, Y, _, _ = population
    sol = solve(Problem(X, Y[:, 0]), solver=solver)
    ref = sm_fit(X, Y[:, 0])
    assert sol.solver == solver and sol.converged.all()
    assert rel(sol.weights[:, 0], ref.params[1:]) < 1e-6
    assert abs(sol.intercept[0] - ref.params[0]) < 1e-6 * max(1, abs(ref.params[0]))


@pytest.mark.parametrize("solver", SOLVERS)
def test_population_each_unit_matches_statsmodels(population, solver):
    X, Y, _, _ = population
    sol = solve(Problem(X, Y), solver=solver)
    assert sol.weights.shape == (X.shape[1], Y.shape[1]) and sol.converged.all()
    for u in range(Y.shape[1]):
        ref = sm_fit(X, Y[:, u])
        assert rel(sol.weights[:, u], ref.params[1:]) < 1e-6
        assert abs(sol.intercept[u] - ref.params[0]) < 1e-6


@pytest.mark.parametrize("solver", SOLVERS)
def test_column_mask_offset_row_weight_match_statsmodels(population, solver):
    X, Y, _, _ = population
    T, P = X.shape
    U = Y.shape[1]
    mask = np.ones((U, P), bool)
    mask[0, :2] = False  # e.g. a unit's own coupling filter
    mask[2, 5] = False
    rng = np.random.default_rng(3)
    offset = 0.2 * rng.standard_normal(T)
    rw = (rng.random(T) < 0.8).astype(float)  # a cross-validation fold
    sol = solve(Problem(X, Y, column_mask=mask, offset=offset, row_weight=rw), solver=solver)
    assert sol.converged.all()
    for u in range(U):
        keep = np.flatnonzero(mask[u])
        assert np.all(sol.weights[~mask[u], u] == 0.0)  # exactly zero
        ref = sm_fit(X[:, keep], Y[:, u], offset=offset, freq_weights=rw)
        assert rel(sol.weights[keep, u], ref.params[1:]) < 1e-6
        assert abs(sol.intercept[u] - ref.params[0]) < 1e-6


def test_objective_is_mean_nll_without_log_factorial(population):
    X, Y, _, _ = population
    sol = solve(Problem(X, Y))
    eta = X @ sol.weights + sol.intercept
    expected = np.mean(np.exp(eta) - Y * eta, axis=0)
    np.testing.assert_allclose(sol.objective, expected, rtol=1e-12)


def test_unit_covariance_matches_statsmodels_bse(population):
    """Each unit's inverse Fisher information on its own columns (intercept last) is
    statsmodels' covariance of the parameters, diagonal and off-diagonal."""
    X, Y, _, _ = population
    mask = np.ones((Y.shape[1], X.shape[1]), bool)
    mask[1, 3] = False
    sol = solve(Problem(X, Y, column_mask=mask))
    for u in range(Y.shape[1]):
        keep = np.flatnonzero(mask[u])
        info = unit_information(X, None, np.ones(len(X)), keep, sol.weights[keep][:, [u]],
                                sol.intercept[[u]], "float64")
        cov, singular = invert_information(info, "float64")
        assert cov.shape == (1, keep.size + 1, keep.size + 1) and not singular.any()
        ref = sm_fit(X[:, keep], Y[:, u])
        se = np.sqrt(np.diag(cov[0]))
        np.testing.assert_allclose(se[:-1], ref.bse[1:], rtol=1e-6)
        np.testing.assert_allclose(se[-1], ref.bse[0], rtol=1e-6)
        order = np.append(np.arange(1, keep.size + 1), 0)
        np.testing.assert_allclose(cov[0], ref.cov_params()[np.ix_(order, order)], rtol=1e-6,
                                   atol=1e-14)
