"""Where no standard errors are asked for (cross-validation folds, ``gf.compare``), REML's own
weights are the fit: they are at the penalised optimum to Newton's criterion, so the
confirming Newton fit (one Hessian pass, no step) is skipped, and its answer is identical."""

from __future__ import annotations

import warnings

import numpy as np
import pynapple as nap
import pytest

from glmformula.backend.solve import DEFAULT_TOL
from glmformula.fitting import engine
from glmformula.graph.design import build, prepare

BIN = 0.05
FORMULA = "spikes ~ cyclic(hd, 10) + history(4, window=300ms) + coupling(all)"


def _population(silent: bool):
    rng = np.random.default_rng(5)
    n, U = 12_000, 4
    t = (np.arange(n) + 0.5) * BIN
    hd = np.mod(np.cumsum(rng.normal(0, 0.2, n)), 2 * np.pi)
    groups = {}
    for u in range(U):
        counts = rng.poisson(np.exp(np.log(5 * BIN) + 0.9 * np.cos(hd - 2 * np.pi * u / U)))
        groups[u] = nap.Ts(np.sort(np.repeat(t, counts) + rng.uniform(-BIN / 2, BIN / 2,
                                                                       counts.sum())))
    if silent:
        groups[U] = nap.Ts(np.array([]))
    epochs = nap.IntervalSet(0, n * BIN)
    return {"spikes": nap.TsGroup(groups, time_support=epochs),
            "hd": nap.Tsd(t, hd, time_support=epochs)}


def _fit(design, solver: str = "auto"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return engine.fit_design(design, engine.FitOptions(solver=solver), covariance=False,
                                 log_likelihood=False)


@pytest.fixture(scope="module")
def design():
    return build(prepare(FORMULA, _population(silent=False), bin_size=BIN))


def test_reml_weights_are_the_fit_without_another_pass(design):
    final = _fit(design)
    assert final.diagnostics.solver == "reml"
    assert final.diagnostics.n_hessian_passes == 0 and final.diagnostics.n_matmul_passes == 0
    assert np.all(final.diagnostics.converged)
    # Newton asked for explicitly confirms them: no step, the same weights (to the rounding
    # of the solver's round trip through its own basis)
    confirmed = _fit(design, solver="newton")
    assert confirmed.diagnostics.solver == "newton"
    np.testing.assert_array_equal(confirmed.diagnostics.n_iter, 0)
    np.testing.assert_allclose(final.weights, confirmed.weights, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(final.intercepts, confirmed.intercepts, rtol=1e-9)
    # and what the fit reports is the solver's own view of that point
    np.testing.assert_allclose(final.diagnostics.grad_norm, confirmed.diagnostics.grad_norm,
                               rtol=1e-3, atol=1e-12)
    assert np.all(final.smoothing.newton_criterion <= DEFAULT_TOL)


def test_a_unit_without_spikes_still_goes_to_the_solver():
    design = build(prepare(FORMULA, _population(silent=True), bin_size=BIN))
    fit = _fit(design)
    assert fit.diagnostics.solver == "newton"
    assert fit.diagnostics.status[-1] == "no_spikes"
