"""The training log-likelihood from the solver's objective (no pass over the rows) equals the
one computed from the fitted rates, and the engine uses it only where that holds."""

import numpy as np
import pytest

import glmformula as gf
from glmformula import backend
from glmformula.fitting import poisson


def test_objective_gives_the_log_likelihood_of_the_fitted_rates():
    rng = np.random.default_rng(4)
    T, P = 5000, 4
    X = rng.standard_normal((T, P))
    Y = rng.poisson(np.exp(X @ rng.normal(0, 0.4, (P, 3)) + np.log([0.5, 2.0, 4.0]))).astype(float)
    Y[:, 0] = 0.0  # a unit without spikes: its rate is fixed, not fitted
    weights = (rng.random(T) < 0.7).astype(float)  # a fold
    with pytest.warns(gf.NoSpikesWarning):
        sol = backend.solve(backend.Problem(X=X, y=Y, row_weight=weights), solver="newton")
    eta = X @ sol.weights + sol.intercept
    expected = poisson.log_likelihood(Y, poisson.expected_counts(eta), weights)
    got = poisson.log_likelihood_from_objective(sol.objective, Y, weights)
    np.testing.assert_allclose(got, expected, rtol=1e-11)
    assert Y.max() >= 2  # the log y! term is exercised


def test_penalised_fit_reports_the_likelihood_not_the_objective():
    data = gf.datasets.head_direction(n_units=2, duration=60, seed=1)
    formula = "spikes ~ cyclic(head_direction, 8)"
    res = gf.fit(formula, data, bin_size="25ms", epochs="wake", regularizer=gf.Ridge(1e-2),
                 smoothing=None)
    design = gf.design_matrix(formula, data, bin_size="25ms", epochs="wake")
    X = design.to_numpy(intercept=False)
    counts = np.asarray(design.counts)[np.asarray(design.valid)].astype(float)
    eta = X @ np.asarray(res.weights) + np.asarray(res.intercepts)
    expected = poisson.log_likelihood(counts, poisson.expected_counts(eta))
    assert res.log_likelihood == pytest.approx(expected.sum(), rel=1e-9)  # summed over units
    plain = gf.fit(formula, data, bin_size="25ms", epochs="wake", smoothing=None)
    eta = X @ np.asarray(plain.weights) + np.asarray(plain.intercepts)  # from the objective
    assert plain.log_likelihood == pytest.approx(
        poisson.log_likelihood(counts, poisson.expected_counts(eta)).sum(), rel=1e-9)
    assert res.log_likelihood < plain.log_likelihood
