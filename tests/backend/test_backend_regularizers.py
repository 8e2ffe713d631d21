"""Penalised fits: ridge against scipy L-BFGS-B, KKT conditions for lasso / elastic net / group
lasso."""

import numpy as np
import pytest
import scipy.optimize

from glmformula.backend import ElasticNet, GroupLasso, Lasso, Problem, Ridge, solve
from glmformula.backend.proximal import kkt_residual

GROUPS = ("a", "a", "b", "b", "c", "c")


def objective(theta, X, y, l2, l1=None):
    w, b = theta[:-1], theta[-1]
    eta = X @ w + b
    f = np.mean(np.exp(eta) - y * eta) + 0.5 * np.sum(l2 * w * w)
    g = np.append(X.T @ (np.exp(eta) - y) / len(y) + l2 * w, np.mean(np.exp(eta) - y))
    return f, g


@pytest.mark.parametrize("solver", ["newton", "lbfgs", "proximal"])
def test_ridge_matches_scipy_lbfgsb(population, solver):
    X, Y, _, _ = population
    strength = {"a": 0.05, "b": 0.2}  # group "c" unpenalised
    sol = solve(Problem(X, Y, column_groups=GROUPS), regularizer=Ridge(strength), solver=solver)
    assert sol.converged.all()
    l2 = np.array([0.05, 0.05, 0.2, 0.2, 0.0, 0.0])
    for u in range(Y.shape[1]):
        res = scipy.optimize.minimize(objective, np.zeros(X.shape[1] + 1), args=(X, Y[:, u], l2),
                                      jac=True, method="L-BFGS-B",
                                      options=dict(ftol=1e-15, gtol=1e-12, maxiter=10_000))
        np.testing.assert_allclose(sol.weights[:, u], res.x[:-1], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(sol.intercept[u], res.x[-1], atol=1e-7)
        assert sol.objective[u] <= res.fun + 1e-12


def smooth_grad(sol, X, Y, l2=0.0):
    eta = X @ sol.weights + sol.intercept
    return X.T @ (np.exp(eta) - Y) / len(Y) + l2 * sol.weights, np.mean(np.exp(eta) - Y, axis=0)


def test_lasso_kkt(population):
    X, Y, _, _ = population
    lam = 0.02
    sol = solve(Problem(X, Y), regularizer=Lasso(lam))
    assert sol.solver == "proximal" and sol.converged.all()
    gw, gb = smooth_grad(sol, X, Y)
    W = sol.weights
    assert np.any(W == 0.0) and np.any(W != 0.0)  # the test exercises both KKT branches
    nz = W != 0
    assert np.max(np.abs(gw[nz] + lam * np.sign(W[nz]))) < 1e-6
    assert np.all(np.abs(gw[~nz]) <= lam + 1e-6)
    assert np.max(np.abs(gb)) < 1e-6
    assert np.max(sol.grad_norm) < 1e-6


def test_elastic_net_kkt_and_ridge_limit(population):
    X, Y, _, _ = population
    a, r = 0.03, 0.5
    sol = solve(Problem(X, Y), regularizer=ElasticNet(a, r))
    gw, gb = smooth_grad(sol, X, Y, l2=(1 - r) * a)
    res = kkt_residual(gw, sol.weights, np.full_like(gw, r * a), np.zeros((0, X.shape[1])),
                       np.zeros((0, Y.shape[1])))
    assert np.max(np.abs(res)) < 1e-6 and np.max(np.abs(gb)) < 1e-6
    # l1_ratio=0 is a ridge and goes to the smooth solvers
    assert solve(Problem(X, Y), regularizer=ElasticNet(a, 0.0)).solver == "newton"


def test_group_lasso_zeroes_whole_groups_and_satisfies_kkt(population):
    X, Y, _, _ = population
    prob = Problem(X, Y, column_groups=GROUPS)
    huge = solve(prob, regularizer=GroupLasso(10.0))
    assert huge.converged.all() and np.all(huge.weights == 0.0)
    lam = 0.01
    sol = solve(prob, regularizer=GroupLasso(lam))
    assert sol.converged.all()
    gw, gb = smooth_grad(sol, X, Y)
    W = sol.weights
    n_zero_groups = 0
    for g in "abc":
        cols = [j for j, name in enumerate(GROUPS) if name == g]
        strength = lam * np.sqrt(len(cols))
        for u in range(Y.shape[1]):
            wg, gg = W[cols, u], gw[cols, u]
            if np.all(wg == 0):
                n_zero_groups += 1
                assert np.linalg.norm(gg) <= strength + 1e-6
            else:
                assert np.all(wg != 0)  # groups enter or leave together
                assert np.max(np.abs(gg + strength * wg / np.linalg.norm(wg))) < 1e-6
    assert 0 < n_zero_groups < 3 * Y.shape[1]
    assert np.max(np.abs(gb)) < 1e-6


def test_group_lasso_per_group_strength_leaves_other_groups_free(population):
    X, Y, _, _ = population
    sol = solve(Problem(X, Y, column_groups=GROUPS), regularizer=GroupLasso({"b": 10.0}))
    assert np.all(sol.weights[2:4] == 0.0) and np.all(sol.weights[[0, 1, 4, 5]] != 0.0)


def test_regularizer_validation():
    with pytest.raises(ValueError):
        Ridge(-1.0)
    with pytest.raises(ValueError):
        ElasticNet(1.0, l1_ratio=1.5)
    X = np.ones((10, 2))
    y = np.ones(10)
    with pytest.raises(ValueError, match="unknown group"):
        solve(Problem(X, y, column_groups=("a", "b")), regularizer=Ridge({"typo": 1.0}))
    with pytest.raises(ValueError, match="column_groups"):
        solve(Problem(X, y), regularizer=GroupLasso(1.0))
    with pytest.raises(ValueError, match="proximal"):
        solve(Problem(X, y), regularizer=Lasso(1.0), solver="newton")
    assert hash(Ridge({"a": 1.0})) == hash(Ridge({"a": 1.0}))
