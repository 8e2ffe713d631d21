"""Newton on a narrow design shared by many units forms the linear predictor from the
weights in every pass (``second_order_loop(formed=True)``) instead of storing it: the same
iterations and answer as the stored predictor, statsmodels' answer per unit, its line search's
backtracking, row weights, offsets, penalties and rank checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import statsmodels.api as sm

from glmformula.backend import Problem, Ridge, newton, solve
from glmformula.backend import problem as pb

N_UNITS = 16  # problem.FUSED_MODEL_MIN_UNITS: the fewest units that form the predictor


def _population(T: int = 30_000, seed: int = 3):
    """Tuning-curve-like columns (six bumps of a wandering angle, two smooth covariates such
    as speed) and 16 units with strongly modulated rates around 0.02-0.3 spikes per bin."""
    rng = np.random.default_rng(seed)
    angle = np.cumsum(rng.normal(0, 0.05, T))
    centres = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    bumps = np.exp(3.0 * (np.cos(angle[:, None] - centres[None, :]) - 1.0))
    speed = np.convolve(rng.normal(0, 1, T + 99), np.ones(100) / 10, mode="valid")
    X = np.c_[bumps, np.tanh(speed), np.sin(np.cumsum(rng.normal(0, 0.02, T)))]
    W = rng.normal(0, 0.8, (X.shape[1], N_UNITS))
    b = rng.uniform(-4.0, -1.5, N_UNITS)
    Y = rng.poisson(np.exp(X @ W + b)).astype(float)
    return X, Y, W, b


@pytest.fixture(scope="module")
def population():
    return _population()


def _solve_both(monkeypatch, problem, **options):
    """The fit with the predictor formed (the default here) and with it stored."""
    formed = solve(problem, solver="newton", **options)
    monkeypatch.setattr(newton, "FORMED_PREDICTOR", False)
    monkeypatch.setattr(pb, "_COMPILED", {})
    stored = solve(problem, solver="newton", **options)
    monkeypatch.setattr(newton, "FORMED_PREDICTOR", True)
    return formed, stored


def test_formed_only_where_the_fused_sums_apply(population, monkeypatch):
    X, Y, _, _ = population
    seen = []
    real = newton.second_order_loop

    def recorded(*args, **static):
        seen.append(static.get("formed", False))
        return real(*args, **static)

    monkeypatch.setattr(newton, "second_order_loop", recorded)
    monkeypatch.setattr(pb, "_COMPILED", {})
    solve(Problem(X, Y), solver="newton")
    solve(Problem(X, Y[:, :4]), solver="newton")  # too few units: the stored predictor
    assert seen == [True, False]


def test_same_iterations_and_answer_as_the_stored_predictor(population, monkeypatch):
    X, Y, _, _ = population
    rng = np.random.default_rng(0)
    offset = rng.normal(0, 0.1, (len(X), N_UNITS))
    row_weight = (rng.random(len(X)) > 0.2).astype(float)  # a fold's training rows
    problem = Problem(X, Y, offset=offset, row_weight=row_weight)
    formed, stored = _solve_both(monkeypatch, problem, regularizer=Ridge(1e-3))
    assert formed.converged.all() and stored.converged.all()
    np.testing.assert_array_equal(formed.n_iter, stored.n_iter)
    np.testing.assert_allclose(formed.weights, stored.weights, rtol=0, atol=1e-7)
    np.testing.assert_allclose(formed.intercept, stored.intercept, rtol=0, atol=1e-7)
    np.testing.assert_allclose(formed.objective, stored.objective, rtol=1e-12)


def test_matches_statsmodels_and_recovers_the_weights(population):
    X, Y, W_true, b_true = population
    sol = solve(Problem(X, Y), solver="newton")
    assert sol.converged.all() and np.all(sol.criterion <= 1e-8)
    for u in (0, 7, 15):
        ref = sm.GLM(Y[:, u], sm.add_constant(X), family=sm.families.Poisson()).fit(
            tol=1e-13, maxiter=200)
        scale = np.max(np.abs(ref.params[1:]))
        assert np.max(np.abs(sol.weights[:, u] - ref.params[1:])) < 1e-6 * scale
        assert abs(sol.intercept[u] - ref.params[0]) < 1e-6 * max(1.0, abs(ref.params[0]))
    # 30,000 bins recover the simulated log-rates (the bumps' sum is nearly constant, so
    # their weights trade against the intercept: the predictor is what is identified)
    fitted, true = X @ sol.weights + sol.intercept, X @ W_true + b_true
    assert np.corrcoef(fitted.ravel(), true.ravel())[0, 1] > 0.99


def _fit_data(X, Y):
    """The solver's arrays for an unpenalised fit of every unit from zero weights."""
    T, P = X.shape
    U = Y.shape[1]
    zeros = jnp.zeros((P, U))
    block = pb.block_from_arrays(X, Y, None, None, jnp.float64, U)
    return pb.FitData(block, jnp.ones((P, U)), zeros, zeros, jnp.zeros((0, P)),
                      jnp.zeros((0, U)), zeros, jnp.log(jnp.asarray(Y.mean(axis=0))),
                      jnp.asarray(float(T)), jnp.asarray(Y.mean(axis=0)), jnp.ones(U, bool),
                      None)


def test_backtracking_line_search_equals_the_stored_one(population):
    """A step four times too long: both line searches halve to the same steps and reach the
    same objective and gradient; the formed one counts its trial passes."""
    X, Y, _, _ = population
    with jax.enable_x64(True):
        data = _fit_data(X, Y)
        W, b = data.W0, data.b0
        chunk = pb.step_chunk(X.shape[1], 8)
        eta, (f, g, mag) = newton.initial_pass(data, W, b, chunk)
        _, (f2, g2, mag2) = newton.initial_pass(data, W, b, chunk, formed=True)
        np.testing.assert_allclose(f2, f, rtol=1e-13)
        np.testing.assert_allclose(g2, g, rtol=1e-10, atol=1e-13)
        rule = newton.NewtonRule(lazy=False)
        H = pb.penalised_hessian(data, pb.hessian_sum(data.block.X, pb.curvature(
            eta, data.block.rw, data.block.Y), pb.hessian_strategy(N_UNITS, X.shape[1])))
        step, slope, _ = rule.solve(data, rule.factor(H)[0], g, W)
        dW, db = 4.0 * step[:-1], 4.0 * step[-1]
        go = jnp.ones(N_UNITS, bool)
        stored = newton.line_search_pass(data, chunk, eta, W, dW, db, f, 4.0 * slope, mag, go)
        formed = newton.formed_line_search_pass(data, W, b, dW, db, f, 4.0 * slope, mag, go)
    assert np.any(np.asarray(stored[0]) < 1.0)  # some unit backtracked
    np.testing.assert_array_equal(formed[0], stored[0])
    for got, want in zip(formed[3], stored[3]):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    halvings = int(np.max(np.round(-np.log2(np.asarray(formed[0])))))
    assert int(formed[4]) == 2 + halvings  # the full step, each trial, the stopping point


def test_rank_deficiency_reported(population):
    X, Y, _, _ = population
    X2 = np.c_[X, X[:, 0] + X[:, 1]]  # a column that is the sum of two others
    with pytest.warns(Warning, match="(?i)rank|collinear|identif"):
        sol = solve(Problem(X2, Y), solver="newton")
    assert sol.rank_deficient.all()
