"""gf.fit against statsmodels' GLM(Poisson) IRLS on the very same design."""

from __future__ import annotations

import numpy as np
import pytest

import glmformula as gf

sm = pytest.importorskip("statsmodels.api")


@pytest.fixture(scope="module")
def maze():
    return gf.datasets.linear_maze(seed=3, duration=300.0)


def test_weights_and_standard_errors_equal_statsmodels(maze):
    formula = "spikes[1] ~ rcos(position, 5, log=True) + speed + log(speed)"
    # statsmodels fits the unpenalised GLM: compare with smoothing off
    res = gf.fit(formula, maze, bin_size="20ms", epochs="run", smoothing=None)
    X = gf.design_matrix(formula, maze, bin_size="20ms", epochs="run")
    y = X.response.values
    ref = sm.GLM(y, X.to_numpy(), family=sm.families.Poisson()).fit(tol=1e-12)
    ours = np.r_[res.intercept.values, res.coef[1].values]
    assert np.allclose(ours, ref.params, rtol=1e-6, atol=1e-9)
    se = np.r_[np.sqrt(res.covariance[0, 0, 0]), res.standard_errors()[1].values]
    assert np.allclose(se, ref.bse, rtol=1e-5)
    assert res.log_likelihood == pytest.approx(ref.llf, rel=1e-9)
    table = res.table("speed")
    assert table.loc[(1, "")]["estimate"] == pytest.approx(ref.params[6], rel=1e-6)


def test_constrained_term_keeps_the_fit_and_reports_all_weights(maze):
    """onehot spans the constant: the fit is constrained (mgcv style) but its fitted values
    equal those of statsmodels' unconstrained fit with one column dropped."""
    formula = "spikes[0] ~ onehot(position, 7) + speed"
    res = gf.fit(formula, maze, bin_size="20ms", epochs="run", smoothing=None)
    assert res.constrained_terms == ("onehot(position, 7)",)
    table = res.coef.xs("onehot(position, 7)", level="term")[0]
    assert len(table) == 7
    X = gf.design_matrix(formula, maze, bin_size="20ms", epochs="run")
    A = X.to_numpy()
    y = X.response.values
    # The weights average to zero over the training rows (mgcv's sum-to-zero convention).
    assert abs(A[:, 1:8].mean(axis=0) @ table.values) < 1e-8
    ref = sm.GLM(y, np.delete(A, 1, axis=1), family=sm.families.Poisson()).fit(tol=1e-12)
    eta = A @ np.r_[res.intercept[0], res.coef[0].values]
    assert np.allclose(eta, np.log(ref.fittedvalues), atol=1e-6)
    assert res.n_params == 1 + 6 + 1


def test_population_fit_equals_unit_by_unit(maze):
    # Converged to 1e-10 nats: at the default 1e-8 each fit is only within ~1e-7 (relative,
    # on the smallest weights) of the optimum, and population and single-unit fits take
    # different paths (the lazy Newton's choices are made for all units at once).
    pop = gf.fit("spikes ~ rcos(position, 4, log=True) + speed", maze, bin_size="20ms",
                 epochs="run", tol=1e-10)
    for unit in (0, 1):
        one = gf.fit(f"spikes[{unit}] ~ rcos(position, 4, log=True) + speed", maze,
                     bin_size="20ms", epochs="run", tol=1e-10)
        assert np.allclose(pop.coef[unit], one.coef[unit], rtol=1e-7, atol=1e-10)
