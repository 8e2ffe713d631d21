"""Numerical edge cases: every one returns finite numbers, most with a warning that says why."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import statsmodels.api as sm

from glmformula.backend import Problem, Ridge, solve
from glmformula.backend.problem import loss_sum, value_grad_sums
from glmformula.errors import (
    ConvergenceWarning,
    NoSpikesWarning,
    RankDeficientWarning,
    SeparationWarning,
)


def fit(*args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sol = solve(*args, **kwargs)
    assert np.isfinite(sol.weights).all() and np.isfinite(sol.intercept).all()
    assert np.isfinite(sol.objective).all()
    return sol, {type(w.message) for w in caught}, " ".join(str(w.message) for w in caught)


def sm_params(X, y):
    return sm.GLM(y, sm.add_constant(X, has_constant="add"),
                  family=sm.families.Poisson()).fit(tol=1e-13).params


@pytest.mark.parametrize("solver", ["newton", "lbfgs", "proximal"])
def test_unit_without_spikes(population, solver):
    X, Y, _, _ = population
    Y = Y.copy()
    Y[:, 2] = 0
    sol, kinds, text = fit(Problem(X, Y), solver=solver)
    assert NoSpikesWarning in kinds and "units 2" in text and ConvergenceWarning not in kinds
    assert np.all(sol.weights[:, 2] == 0.0)
    assert sol.intercept[2] == pytest.approx(np.log(0.5 / len(Y)))  # half a spike over the rows
    assert sol.status[2] == "no_spikes" and not sol.converged[2]
    assert sol.converged[[0, 1, 3]].all()
    np.testing.assert_allclose(sol.weights[:, 0], sm_params(X, Y[:, 0])[1:], rtol=1e-6)


def test_all_zero_column_is_excluded(population):
    X, Y, _, _ = population
    X = X.copy()
    X[:, 3] = 0.0
    sol, kinds, _ = fit(Problem(X, Y))
    assert not kinds and sol.converged.all()
    assert sol.excluded_columns == (3,) and np.all(sol.weights[3] == 0.0)
    keep = [0, 1, 2, 4, 5]
    np.testing.assert_allclose(sol.weights[keep, 1], sm_params(X[:, keep], Y[:, 1])[1:], rtol=1e-6)


def separated(population):
    X, Y, _, _ = population
    X = X.copy()
    silent = np.flatnonzero(Y[:, 0] == 0)[::7]
    bump = np.zeros(len(Y))
    bump[silent] = 1.0  # a feature active only where unit 0 never fires
    X[:, 5] = bump
    return X, Y


@pytest.mark.parametrize("solver", ["newton", "lbfgs"])
def test_perfect_separation_is_finite_with_warning(population, solver):
    X, Y = separated(population)
    sol, kinds, text = fit(Problem(X, Y), solver=solver)
    assert SeparationWarning in kinds and "columns [5]" in text
    # the advice fits the defaults: smoothing for basis terms, a Ridge for plain covariates
    assert "smoothing='auto' (the default)" in text and "gf.Ridge(1e-3)" in text
    assert sol.weights[5, 0] < -15  # running off to -inf, stopped at a finite value


def test_perfect_separation_is_fine_with_ridge(population):
    X, Y = separated(population)
    sol, kinds, _ = fit(Problem(X, Y), regularizer=Ridge(1e-3))
    assert not kinds and sol.converged.all()
    assert -15 < sol.weights[5, 0] < -1


def test_float32_exp_overflow_is_clipped(population):
    X, Y, _, _ = population
    with jax.enable_x64(False):
        eta = jnp.array([[1e3], [-1e3], [80.0]], jnp.float32)
        y = jnp.ones((3, 1), jnp.float32)
        rw = jnp.ones(3, jnp.float32)
        assert jnp.isfinite(loss_sum(eta, y, rw)).all()
        loss, gw, gb, _ = value_grad_sums(jnp.ones((3, 2), jnp.float32), y, rw, eta)
        assert jnp.isfinite(loss).all() and jnp.isfinite(gw).all() and jnp.isfinite(gb).all()
    # a start whose rates overflow float32 (eta ~ 200): the fit still lands on the optimum
    init = (np.full((X.shape[1], Y.shape[1]), 0.0), np.full(Y.shape[1], 200.0))
    sol32, _, _ = fit(Problem(X, Y), dtype="float32", init=init)
    sol64, _, _ = fit(Problem(X, Y))
    assert sol32.dtype == "float32" and sol32.converged.all()
    np.testing.assert_allclose(sol32.weights, sol64.weights, atol=1e-4)


def test_rank_deficient_design_warns_and_stays_finite(population):
    X, Y, _, _ = population
    X = X.copy()
    X[:, 5] = X[:, 0] - X[:, 1]
    sol, kinds, text = fit(Problem(X, Y))
    assert RankDeficientWarning in kinds and "[0, 1, 5]" in text
    assert "remove the redundant columns or add a Ridge penalty (e.g. gf.Ridge(1e-3))" in text
    assert sol.rank_deficient.all()
    # the identified quantity (the fitted log-rate) is still the MLE
    params = sm_params(X[:, :5], Y[:, 0])
    np.testing.assert_allclose(X @ sol.weights[:, 0] + sol.intercept[0],
                               params[0] + X[:, :5] @ params[1:], atol=1e-6)
    # with a ridge the answer is unique: exact, no warning
    ridge, kinds, _ = fit(Problem(X, Y), regularizer=Ridge(1e-2))
    assert not kinds and ridge.converged.all() and not ridge.rank_deficient.any()
    again = solve(Problem(X, Y), regularizer=Ridge(1e-2), solver="lbfgs")
    np.testing.assert_allclose(ridge.weights, again.weights, rtol=1e-6, atol=1e-8)


def test_convergence_warning_names_units_and_cause(population):
    X, Y, _, _ = population
    sol, kinds, text = fit(Problem(X, Y), solver="lbfgs", max_iter=2)
    assert ConvergenceWarning in kinds and "units 0, 1, 2, 3" in text and "max_iter" in text
    assert not sol.converged.any() and set(sol.status) == {"max_iter"}


def test_invalid_inputs_raise():
    X = np.ones((5, 2))
    with pytest.raises(ValueError, match="rows"):
        Problem(X, np.ones(4))
    with pytest.raises(ValueError, match="NaN"):
        solve(Problem(np.full((5, 2), np.nan), np.ones(5)))
    lone = np.random.default_rng(0).random((9001, 3))
    lone[8000, 1] = np.nan  # one NaN, which XLA's maximum over the rows skipped
    with pytest.raises(ValueError, match="NaN"):
        solve(Problem(lone, np.ones(9001)))
    with pytest.raises(ValueError, match="non-negative"):
        solve(Problem(X, -np.ones(5)))
    with pytest.raises(ValueError, match="column_mask"):
        Problem(X, np.ones((5, 2)), column_mask=np.ones((2, 3), bool))
    with pytest.raises(ValueError, match="solver"):
        solve(Problem(X, np.ones(5)), solver="sgd")


def test_known_column_ranges_replace_the_first_pass_over_the_design(population):
    """``Problem.column_max`` given (a group of units' columns, found on the whole design) the
    solver does not read X for the ranges, with the same answer: the empty column excluded,
    the separated unit warned about; a range that is not finite is refused as the data's own
    NaN is."""
    X, Y = separated(population)
    X[:, 3] = 0.0
    rows = np.arange(len(Y)) % 5 != 0
    ranges = np.abs(X[rows]).max(axis=0)
    alone, kinds, text = fit(Problem(X, Y, row_weight=rows.astype(float)))
    given, kinds_given, text_given = fit(Problem(X, Y, row_weight=rows.astype(float),
                                                 column_max=ranges))
    assert alone.excluded_columns == given.excluded_columns == (3,)
    assert kinds == kinds_given and SeparationWarning in kinds and text == text_given
    np.testing.assert_array_equal(given.weights, alone.weights)
    with pytest.raises(ValueError, match="NaN"):
        solve(Problem(X, Y, column_max=np.where(np.arange(X.shape[1]) == 1, np.nan, ranges)))
    with pytest.raises(ValueError, match="column_max"):
        Problem(X, Y, column_max=ranges[:-1])
