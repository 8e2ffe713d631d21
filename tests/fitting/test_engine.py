"""The fitting engine's own contract: declared solver options, the closed-form mean rate,
and one path for every kind of fit."""

from __future__ import annotations

import warnings

import numpy as np
import pynapple as nap
import pytest

import glmformula as gf
from glmformula.fitting import FitOptions, fit_design
from glmformula.fitting import smoothing as smoothing_module
from glmformula.graph.design import build, prepare


@pytest.fixture(scope="module")
def data():
    return gf.datasets.head_direction(n_units=3, duration=120.0, seed=11)


def test_a_misspelt_solver_option_is_an_error_naming_the_options(data):
    with pytest.raises(gf.FitError, match="unknown option.*'histroy'.*'history'"):
        gf.fit("spikes ~ cyclic(head_direction, 8)", data, bin_size="10ms", epochs="wake",
               solver="lbfgs", solver_options={"histroy": 5})


def test_declared_solver_options_reach_the_solver(data):
    f = "spikes ~ cyclic(head_direction, 8) + history(3, log, window=50ms)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # smoothing off: REML's answer would start L-BFGS at the optimum (one iteration)
        short = gf.fit(f, data, bin_size="10ms", epochs="wake", solver="lbfgs",
                       regularizer=gf.Ridge(1e-4), solver_options={"history": 2, "refresh": 0},
                       smoothing=None)
        long = gf.fit(f, data, bin_size="10ms", epochs="wake", solver="lbfgs",
                      regularizer=gf.Ridge(1e-4), solver_options={"history": 20},
                      smoothing=None)
    assert short.solver == long.solver == "lbfgs"
    assert short.diagnostics.n_matmul_passes != long.diagnostics.n_matmul_passes
    np.testing.assert_allclose(short.weights, long.weights, atol=1e-5)


def test_the_mean_rate_model_is_the_closed_form_mle(data):
    design = build(prepare("spikes ~ 1", data, bin_size="10ms", epochs="wake"))
    fitted = fit_design(design, FitOptions())
    counts = design.counts[design.valid].astype(float)
    np.testing.assert_allclose(fitted.intercepts, np.log(counts.mean(axis=0)), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(fitted.covariance)[:, 0, 0],
                               1.0 / counts.sum(axis=0), rtol=1e-12)
    assert fitted.diagnostics.solver == "closed-form" and fitted.diagnostics.converged.all()


def test_row_weights_select_the_rows_fitted(data):
    """A fold fit through the engine equals a fit on data restricted to those rows."""
    f = "spikes ~ cyclic(head_direction, 8)"
    design = build(prepare(f, data, bin_size="10ms", epochs="wake"))
    half = np.zeros(design.grid.n_rows, bool)
    half[: design.grid.n_rows // 2] = True
    options = FitOptions(tol=1e-10)  # unpenalised: the constraint does not move the optimum
    first_half = fit_design(design, options, row_weight=half.astype(float))
    assert first_half.diagnostics.n_rows == int((design.valid & half).sum())
    # the same rows as epochs of their own: same weights (the constraint is found on all
    # valid rows in the first fit, on the half in the second, so compare fitted rates)

    end = design.grid.centers[np.flatnonzero(half)[-1]] + 0.005
    start = design.grid.starts[0]
    alone = gf.fit(f, data, bin_size="10ms", epochs=nap.IntervalSet(start, end),
                   tol=1e-10)
    X = alone.design(data, epochs=nap.IntervalSet(start, end))
    eta_alone = X.storage[X.rows] @ alone.weights + alone.intercepts
    eta_fold = X.storage[X.rows] @ first_half.weights + first_half.intercepts
    # the same optimum: equal log-likelihoods on those rows (weights in directions the data
    # barely determine may differ; the likelihood does not); a fit on every row is worse there
    assert abs(alone.n_rows - first_half.diagnostics.n_rows) <= 1
    counts = X.counts[X.rows].astype(float)
    ll = lambda eta: float(np.sum(counts * eta - np.exp(eta)))
    everything = fit_design(design, options)
    eta_all = X.storage[X.rows] @ everything.weights + everything.intercepts
    assert ll(eta_fold) == pytest.approx(ll(eta_alone), rel=1e-6)
    assert ll(eta_all) < ll(eta_alone) - 1.0


@pytest.mark.parametrize("smoothing", [None, "auto"], ids=["unpenalised", "reml"])
def test_units_in_groups_copy_only_their_columns_of_a_folds_rows(monkeypatch, smoothing):
    """Units fitted in groups on their own columns (history without coupling) copy their
    columns of a fold's training rows only, padded to a shared shape; the design is never
    copied whole, and the answer is the fit on the whole design with zero weights."""
    from glmformula.fitting import engine, groups, rows

    data = gf.datasets.head_direction(n_units=3, duration=300.0, seed=12)
    f = "spikes ~ cyclic(head_direction, 8) + history(3, log, window=50ms)"
    design = build(prepare(f, data, bin_size="10ms", epochs="wake"))
    train = np.ones(design.grid.n_rows, bool)
    train[design.grid.n_rows // 5: 2 * design.grid.n_rows // 5] = False
    monkeypatch.setattr(groups, "CALL_OVERHEAD", 0.0)  # groups of one unit pay here
    monkeypatch.setattr(groups, "GROUPING_GAIN", 1.0)
    whole, gathered = [], []
    original_rows, original_gather = engine._fitted_rows, groups._gather_columns

    def fitted_rows(problem, used, always=False):
        out = original_rows(problem, used, always)
        whole.append(out.X.shape)
        return out

    def gather(X, columns, reuse, selection=None, columns_first=False):
        out = original_gather(X, columns, reuse, selection, columns_first)
        gathered.append(out.shape)
        return out

    monkeypatch.setattr(engine, "_fitted_rows", fitted_rows)
    monkeypatch.setattr(groups, "_gather_columns", gather)
    monkeypatch.setattr(smoothing_module, "_gather_columns", gather)
    options = FitOptions(tol=1e-10, smoothing=smoothing)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        own = fit_design(design, options, row_weight=train, covariance=False)
        n_copies = len(gathered)
        monkeypatch.setattr(rows, "COMPACT_ROWS_BELOW", 0.0)
        weighted = fit_design(design, options, row_weight=train, covariance=False)
    n_used = int((design.valid & train).sum())
    n_stored = design.storage.shape[1]
    assert not whole  # the design is not copied for grouped units
    assert n_copies >= 3 and all(n_used <= r < min(n_used + rows.COMPACT_ROW_MULTIPLE,
                                                   design.storage.shape[0]) and c < n_stored
                                 for r, c in gathered[:n_copies])
    assert all(r == design.storage.shape[0] for r, _ in gathered[n_copies:])
    np.testing.assert_allclose(own.weights, weighted.weights, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(own.intercepts, weighted.intercepts, rtol=1e-8)
    np.testing.assert_allclose(own.diagnostics.log_likelihood,
                               weighted.diagnostics.log_likelihood, rtol=1e-10)


@pytest.mark.parametrize("smoothing", [None, "auto"], ids=["unpenalised", "reml"])
def test_a_fold_fit_reads_its_own_rows_with_the_same_answer(monkeypatch, smoothing):
    """A fit on a fold's training rows (80% of the rows) copies them into a design of their
    own, padded to a shared shape (engine._fitted_rows), and finds what the fit on the whole
    design with zero weights finds."""
    from glmformula.fitting import engine, rows

    data = gf.datasets.head_direction(n_units=3, duration=300.0, seed=12)
    f = "spikes ~ cyclic(head_direction, 8) + history(3, log, window=50ms)"
    design = build(prepare(f, data, bin_size="10ms", epochs="wake"))
    train = np.ones(design.grid.n_rows, bool)
    train[design.grid.n_rows // 5: 2 * design.grid.n_rows // 5] = False
    shapes = []
    original = engine._fitted_rows

    def recording(problem, used, always=False):
        out = original(problem, used, always)
        shapes.append(out.X.shape[0])
        return out

    monkeypatch.setattr(engine, "_fitted_rows", recording)
    options = FitOptions(tol=1e-10, smoothing=smoothing)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compact = fit_design(design, options, row_weight=train, covariance=False)
        monkeypatch.setattr(rows, "COMPACT_ROWS_BELOW", 0.0)
        weighted = fit_design(design, options, row_weight=train, covariance=False)
    n_used = int((design.valid & train).sum())
    assert n_used <= shapes[0] < min(n_used + rows.COMPACT_ROW_MULTIPLE,
                                     design.storage.shape[0])
    assert shapes[1] == design.storage.shape[0]
    assert compact.diagnostics.n_rows == weighted.diagnostics.n_rows == n_used
    np.testing.assert_allclose(compact.weights, weighted.weights, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(compact.intercepts, weighted.intercepts, rtol=1e-8)
    np.testing.assert_allclose(compact.diagnostics.log_likelihood,
                               weighted.diagnostics.log_likelihood, rtol=1e-10)


def _design_recording_tolerances(monkeypatch):
    """A small simulated design, and the list that every solver call of ``fit_design`` then
    appends its tolerance to."""
    from glmformula.fitting import engine

    data = gf.datasets.head_direction(n_units=3, duration=300.0, seed=12)
    f = "spikes ~ cyclic(head_direction, 8) + history(6, log, window=100ms)"
    design = build(prepare(f, data, bin_size="10ms", epochs="wake"))
    tolerances = []
    original = engine._solve

    def recording(problem, groups, start, solver_options):
        tolerances.append(solver_options.get("tol"))
        return original(problem, groups, start, solver_options)

    monkeypatch.setattr(engine, "_solve", recording)
    return design, tolerances


def test_a_scored_fit_stops_at_its_tolerance_a_fraction_of_a_standard_error_away(
        monkeypatch):
    """A fit whose weights are only scored (a comparison's: ``reported=False``) stops at
    engine.SCORED_FIT_TOL unless the user set a tolerance: fewer iterations, its weights
    within a small fraction of a standard error of the exact optimum (the criterion bounds the
    remaining Newton step at ``tol sqrt(spikes)`` standard errors) and its log-likelihood
    within ``tol^2 spikes`` nats of the maximum."""
    from glmformula.fitting import engine

    design, tolerances = _design_recording_tolerances(monkeypatch)
    train = np.ones(design.grid.n_rows, bool)
    train[: design.grid.n_rows // 5] = False
    lbfgs = dict(solver="lbfgs", smoothing=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scored = fit_design(design, FitOptions(**lbfgs), row_weight=train, covariance=False,
                            reported=False)
        exact = fit_design(design, FitOptions(tol=1e-12, **lbfgs), row_weight=train,
                           reported=False)
        reported = fit_design(design, FitOptions(**lbfgs), row_weight=train,
                              covariance=False)
    assert tolerances == [engine.SCORED_FIT_TOL, 1e-12, None]
    assert scored.diagnostics.converged.all() and exact.diagnostics.converged.all()
    assert scored.diagnostics.n_iter.sum() < exact.diagnostics.n_iter.sum()
    assert reported.diagnostics.n_iter.sum() > scored.diagnostics.n_iter.sum()
    se = np.sqrt(np.diagonal(np.asarray(exact.covariance), axis1=1, axis2=2))[:, 1:].T
    used = se > 0
    off = np.abs(scored.weights - exact.weights)[used] / se[used]
    bound = engine.SCORED_FIT_TOL * np.sqrt(scored.diagnostics.n_spikes.max())
    assert off.max() <= 2 * bound
    spikes = scored.diagnostics.n_spikes
    gap = exact.diagnostics.log_likelihood - scored.diagnostics.log_likelihood
    assert np.all(gap >= -1e-9) and np.all(gap <= engine.SCORED_FIT_TOL ** 2 * spikes)


def test_a_penalised_scored_fit_stops_closer_because_its_likelihood_moves_at_first_order(
        monkeypatch):
    """With a penalty the log-likelihood is not stationary at the optimum: a scored fit with
    a Ridge stops at engine.PENALISED_SCORED_FIT_TOL (tighter than the unpenalised one's
    engine.SCORED_FIT_TOL), and its log-likelihood is then within 1e-6 relative of the exact
    penalised fit's."""
    from glmformula.fitting import engine

    assert engine.PENALISED_SCORED_FIT_TOL < engine.SCORED_FIT_TOL
    design, tolerances = _design_recording_tolerances(monkeypatch)
    ridge = dict(solver="lbfgs", smoothing=None, regularizer=gf.Ridge(1e-3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scored = fit_design(design, FitOptions(**ridge), covariance=False, reported=False)
        exact = fit_design(design, FitOptions(tol=1e-12, **ridge), covariance=False,
                           reported=False)
    assert tolerances == [engine.PENALISED_SCORED_FIT_TOL, 1e-12]
    np.testing.assert_allclose(scored.diagnostics.log_likelihood,
                               exact.diagnostics.log_likelihood, rtol=1e-6)
