"""Passes REML saves at its end and in each iteration. Where no standard errors are asked for
(cross-validation folds, ``gf.compare``), REML's own weights are the fit: they are at the
penalised optimum to Newton's criterion, so the confirming Newton fit (one Hessian pass, no
step) is skipped, with the same answer. In each iteration, the model at the full step is
formed at once and Armijo's test made from its loss; the ladder of shorter steps runs only
where a unit refuses the full step."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from glmformula.backend.solve import DEFAULT_TOL
from glmformula.fitting import engine
from glmformula.graph.design import build, prepare

sys.path.insert(0, str(Path(__file__).resolve().parent))  # importlib mode: sibling imports
from _populations import head_direction_population  # noqa: E402

BIN = 0.05
FORMULA = "spikes ~ cyclic(hd, 10) + history(4, window=300ms) + coupling(all)"


def _population(silent: bool):
    return head_direction_population(5, 12_000, 4, BIN, rate=5.0, depth=0.9, silent=silent)


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


def test_a_refused_full_step_takes_the_armijo_ladder_to_the_same_answer(monkeypatch):
    """The performance iteration forms the next model at the full step to the quadratic
    model's optimum and tests Armijo's condition from its loss; from a start far off (rates
    e^-12 per bin: the model's curvature is nearly nil and its full step overshoots) a unit
    refuses it and the
    ladder of shorter steps runs, and the search still ends where it ends from a good start."""
    import jax
    import jax.numpy as jnp

    from glmformula.backend import problem as pb
    from glmformula.backend import reml

    rng = np.random.default_rng(8)
    n, P, U = 6_000, 8, 2
    X = rng.normal(size=(n, P)) * 0.4
    beta_true = np.cumsum(rng.normal(size=(P, U)) * 0.3, axis=0)
    Y = rng.poisson(np.exp(X @ beta_true - 1.5)).astype(float)
    p = P + 1
    D = np.diff(np.eye(P), 2, axis=0)
    S = np.zeros((1, U, p, p))
    S[0, :, :P, :P] = D.T @ D
    fixed = np.zeros((U, p, p))
    mask = np.ones((p, U))
    calls = []
    original = pb.compiled_call

    def recording(fn, static, *args):
        calls.append(fn.__name__)
        return original(fn, static, *args)

    monkeypatch.setattr(pb, "compiled_call", recording)
    with jax.enable_x64(True):
        block = pb.block_from_arrays(X, Y, None, np.ones(n), jnp.float64, U)

        def search(beta0):
            calls.clear()
            out = reml.select(block, mask, S, fixed, beta0, np.zeros((1, U)),
                              present=np.ones((1, U), bool))
            return out, list(calls)

        good, good_calls = search(np.r_[np.zeros((P, U)), np.full((1, U), -1.5)])
        far, far_calls = search(np.r_[np.full((P, U), 1e-3), np.full((1, U), -6.0)])
    assert "damped_step" not in good_calls
    assert "damped_step" in far_calls
    assert np.all(good.converged) and np.all(far.converged)
    np.testing.assert_allclose(far.log_strength, good.log_strength, atol=1e-3)
    # the same optimum, to the search's tolerance (a gradient of 5e-7 |V|)
    np.testing.assert_allclose(far.beta, good.beta, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("cap", [None, "default"], ids=["uncapped", "capped"])
def test_a_cold_search_moves_log_strengths_by_at_most_the_cap(monkeypatch, cap):
    """From a cold start each iteration moves a unit's log-strengths by at most
    ``reml.MAX_COLD_MOVE`` (a trust region while the weights come from the crude start; on
    the real coupled model it kept the search from locking coupling terms at the upper bound).
    Without the cap, this population's first strength step is larger, so the test can fail."""
    from glmformula.backend import reml

    limit = reml.MAX_COLD_MOVE
    if cap is None:
        monkeypatch.setattr(reml, "MAX_COLD_MOVE", np.inf)
    starts = []
    original = reml._minimise_model

    def recording(host, model, rho, *args, **kwargs):
        starts.append(np.array(rho, float))
        return original(host, model, rho, *args, **kwargs)

    monkeypatch.setattr(reml, "_minimise_model", recording)
    design = build(prepare(FORMULA, _population(silent=False), bin_size=BIN))
    fit = _fit(design)
    assert np.all(fit.smoothing.converged)
    # consecutive calls on the same units (all units until some converge)
    moves = [np.nanmax(np.abs(b - a)) for a, b in zip(starts, starts[1:])
             if a.shape == b.shape]
    if cap is None:
        assert max(moves) > limit
    else:
        assert max(moves) <= limit + 1e-9


def _fold_rows(design, fold: int):
    """(held-out rows, training rows) of fold ``fold`` of 5 contiguous folds."""
    valid = np.flatnonzero(design.valid)
    test = np.zeros_like(design.valid)
    test[valid[fold * len(valid) // 5:(fold + 1) * len(valid) // 5]] = True
    return test, design.valid & ~test


def _fit_rows(design, train, init, fold: bool):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return engine.fit_design(design, engine.FitOptions(), row_weight=train, init=init,
                                 covariance=False, log_likelihood=False, fold=fold)


def _held_out_ll(design, test, fit) -> np.ndarray:
    """Each unit's Poisson log-likelihood on the held-out rows (without log y!)."""
    rows = np.flatnonzero(test)
    eta = design.storage[rows] @ fit.weights + fit.intercepts
    return np.sum(design.counts[rows] * eta - np.exp(eta), axis=0)


def test_a_fold_stops_at_mgcvs_tolerance_with_the_same_held_out_fit(design, monkeypatch):
    """A cross-validation fold's strengths are searched to mgcv's own tolerance (``|dV/drho|
    <= 5e-6 |V|``, ``reml.FOLD_RELATIVE_TOL``) rather than a tenth of it: fewer iterations,
    V within 1e-6 of itself and each unit's held-out log-likelihood within 2e-5 of itself
    (measured: 0.001-0.007 nats of ~1,500). Ignoring the setting fails the last assertion."""
    from glmformula.backend import reml

    ends = []
    original = reml.select

    def recording(*args, **kwargs):
        result = original(*args, **kwargs)
        ends.append((np.abs(result.gradient).max(axis=0) / np.abs(result.criterion),
                     result.n_outer))
        return result

    monkeypatch.setattr(reml, "select", recording)
    full = _fit(design)
    fewer, looser = [], []
    for fold in range(2):
        test, train = _fold_rows(design, fold)
        init = (full.weights, full.intercepts,
                full.smoothing.strength * design.valid.sum() / train.sum())
        fits = {}
        for is_fold in (False, True):
            ends.clear()
            fits[is_fold] = _fit_rows(design, train, init, is_fold)
            fits[is_fold, "end"] = ends[-1]
        (tight_grad, tight_n), (fold_grad, fold_n) = fits[False, "end"], fits[True, "end"]
        fewer.append(fold_n < tight_n)
        looser.append(fold_grad.max() > reml.RELATIVE_TOL)
        assert tight_grad.max() <= reml.RELATIVE_TOL and fold_grad.max() <= reml.FOLD_RELATIVE_TOL
        V = {k: fits[k].smoothing.criterion for k in (False, True)}
        np.testing.assert_allclose(V[True], V[False], rtol=1e-6)
        np.testing.assert_allclose(_held_out_ll(design, test, fits[True]),
                                   _held_out_ll(design, test, fits[False]), rtol=2e-5)
    assert any(fewer) and any(looser)


def test_a_fold_steers_by_the_slope_of_the_fit_it_starts_from(design, monkeypatch):
    """A fold started from the fit on all rows with that fit's REML slope at its answer
    (``init[3]``, ``SmoothingFit.slope``) skips the slope pass of its first iteration and
    reaches the same answer: each unit still converges only on a slope of its own, so its
    gradient is within the fold's tolerance, V within 1e-6 and the held-out log-likelihood
    within 2e-5 of the fold searched without it. Ignoring the slope fails the pass count."""
    from glmformula.backend import reml

    passes = []
    original = reml.hessian_change

    def counting(*args, **kwargs):
        passes.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(reml, "hessian_change", counting)
    full = _fit(design)
    assert full.smoothing.slope.shape == full.smoothing.strength.shape
    assert np.isfinite(full.smoothing.slope[np.isfinite(full.smoothing.strength)]).all()
    test, train = _fold_rows(design, 0)
    strengths = full.smoothing.strength * design.valid.sum() / train.sum()
    fits, counts = {}, {}
    for with_slope in (False, True):
        init = (full.weights, full.intercepts, strengths) + (
            (full.smoothing.slope,) if with_slope else ())
        passes.clear()
        fits[with_slope] = _fit_rows(design, train, init, fold=True)
        counts[with_slope] = len(passes)
    assert counts[True] < counts[False], counts
    assert fits[True].smoothing.converged.all()
    np.testing.assert_allclose(fits[True].smoothing.criterion, fits[False].smoothing.criterion,
                               rtol=1e-6)
    np.testing.assert_allclose(_held_out_ll(design, test, fits[True]),
                               _held_out_ll(design, test, fits[False]), rtol=2e-5)


def test_a_sampled_fold_chooses_strengths_on_weights_at_its_models_precision(design,
                                                                           monkeypatch):
    """Where REML's Hessians are sampled float32 estimates (the wide-design path), a fold's
    strengths converge once its weights are within ``reml.FOLD_SAMPLED_WEIGHTS_TOL`` of the
    model's optimum instead of ``reml.WEIGHTS_TOL``: fewer model passes (measured: 3 instead
    of 4), V within 2e-6 (5e-7) and the held-out log-likelihood within 2e-5 (4e-6) of the
    fold searched at the tight tolerance, and
    the weights still refined to Newton's criterion (converged, no confirming solve).
    Without the looser tolerance the pass counts are equal and the first assertion fails."""
    from glmformula.backend import problem as pb
    from glmformula.backend import reml

    monkeypatch.setattr(pb, "SAMPLED_CURVATURE_ABOVE", 0.0)  # every problem is wide
    monkeypatch.setattr(pb, "CURVATURE_SAMPLE_ROWS", 4_000)  # every 3rd of the 12,000 rows
    models = []
    original = pb.compiled_call

    def counting(fn, static, *args):
        models.extend([static.get("stride")] if fn.__name__ == "loss_gradient_hessian" else [])
        return original(fn, static, *args)

    monkeypatch.setattr(pb, "compiled_call", counting)
    full = _fit(design)
    tight = reml.SearchTolerance(reml.FOLD_RELATIVE_TOL, reml.WEIGHTS_TOL)
    fewer = []
    for fold in range(3):
        test, train = _fold_rows(design, fold)
        init = (full.weights, full.intercepts,
                full.smoothing.strength * design.valid.sum() / train.sum(),
                full.smoothing.slope)
        fits, counts = {}, {}
        for name, tolerance in (("tight", tight), ("fold", reml.FOLD_TOLERANCE)):
            monkeypatch.setattr(engine, "FOLD_TOLERANCE", tolerance)
            models.clear()
            fits[name] = _fit_rows(design, train, init, fold=True)
            counts[name] = len(models)
        assert max(models) > 1  # the sampled path ran
        fewer.append(counts["fold"] < counts["tight"])
        assert counts["fold"] <= counts["tight"], counts
        assert fits["fold"].smoothing.converged.all()
        assert fits["fold"].diagnostics.solver == "reml"  # certified: no confirming solve
        assert np.all(fits["fold"].diagnostics.converged)
        np.testing.assert_allclose(fits["fold"].smoothing.criterion,
                                   fits["tight"].smoothing.criterion, rtol=2e-6)
        np.testing.assert_allclose(_held_out_ll(design, test, fits["fold"]),
                                   _held_out_ll(design, test, fits["tight"]), rtol=2e-5)
    assert any(fewer)
