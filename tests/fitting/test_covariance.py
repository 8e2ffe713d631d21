"""Covariances per unit on its own columns, computed with the fit or on first use."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import glmformula as gf
from glmformula import backend
from glmformula.fitting import engine, information
from glmformula.fitting import identifiability as ident
from glmformula.graph.design import build, prepare
from glmformula.graph.layout import DesignSpec

FORMULA = "spikes ~ cyclic(head_direction, 6) + history(3, log, window=60ms) + coupling(0)"


@pytest.fixture(scope="module")
def recording():
    return gf.datasets.head_direction(n_units=4, duration=200.0, seed=7)


def _fit(recording, formula=FORMULA, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the reference information below has the ridge only: no smoothness penalties
        return gf.fit(formula, recording, bin_size="10ms", epochs="wake",
                      regularizer=gf.Ridge(1e-3), smoothing=None, **options)


@pytest.fixture(scope="module")
def eager(recording):
    return _fit(recording)


def _reference_covariance(recording):
    """The covariance from every stored column at once (the penalised Fisher information of
    the rotated design over all stored columns, masked per unit, inverted in numpy), rotated
    back: the definition, without supports."""
    design = build(prepare(FORMULA, recording, bin_size="10ms", epochs="wake"))
    plan = design.plan
    constraints = engine.design_constraints(design)
    X = ident.rotate_columns(design.storage.copy(), constraints, plan.term_storage)
    mask = ident.mask_constant_directions(plan.column_mask(), constraints, plan.term_storage)
    rw = design.valid.astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        solution = backend.solve(backend.Problem(X=X, y=design.counts, column_mask=mask,
                                                 offset=design.offset, row_weight=rw),
                                 regularizer=gf.Ridge(1e-3), tol=1e-10)
    P = plan.n_storage
    T = np.zeros((P + 1,) * 2)
    T[0, 0] = 1.0
    T[1:, 1:] = ident.rotation(constraints, plan.term_storage, P)
    A = np.concatenate([np.ones((len(X), 1)), X], axis=1)  # intercept first
    covariances = []
    for u in range(len(plan.unit_ids)):
        rate = np.exp(X @ solution.weights[:, u] + solution.intercept[u])
        H = (A * (rw * rate)[:, None]).T @ A
        keep = np.r_[0, np.flatnonzero(mask[u]) + 1]
        H[keep[1:], keep[1:]] += rw.sum() * 1e-3  # the ridge of the mean objective
        cov = np.zeros((P + 1, P + 1))
        cov[np.ix_(keep, keep)] = np.linalg.inv(H[np.ix_(keep, keep)])
        covariances.append(T @ cov @ T.T)
    return np.stack(covariances), constraints


def test_unit_supports_equal_the_full_information(recording):
    """Each unit reads 6 + 3 + 3 of the 18 stored columns (its own history, coupling to unit
    0 only, a constrained cyclic term): the covariance formed on those columns equals the one
    formed on all stored columns and masked."""
    res = _fit(recording, tol=1e-10)
    reference, constraints = _reference_covariance(recording)
    assert constraints, "the cyclic term should be constrained (it spans the constant)"
    ours = np.asarray(res.covariance)
    assert ours.shape == reference.shape
    assert np.max(np.abs(ours - reference)) < 1e-7 * np.max(np.abs(reference))
    # a unit's covariance is 0 outside its columns (plus the intercept)
    for u, columns in enumerate(res.unit_columns):
        outside = np.setdiff1d(np.arange(len(res.storage_columns)), columns) + 1
        assert not np.any(ours[u][outside]) and not np.any(ours[u][:, outside])


def test_lazy_covariance_equals_eager_and_computes_only_what_is_asked(recording, eager,
                                                                       monkeypatch):
    monkeypatch.setattr(information, "EAGER_MULTIPLY_ADDS", 0.0)
    lazy = _fit(recording)
    assert lazy.covariance.computed_units.size == 0
    assert np.array_equal(lazy.weights, eager.weights)
    se = lazy.standard_errors(unit=2)
    assert lazy.covariance.computed_units.tolist() == [2]
    assert np.allclose(se[2], eager.standard_errors()[2], rtol=1e-10, equal_nan=True)
    table = lazy.table("history", unit=1)
    assert lazy.covariance.computed_units.tolist() == [1, 2]
    assert np.allclose(table["std_error"].to_numpy(),
                       eager.table("history", unit=1)["std_error"].to_numpy(), rtol=1e-10)
    assert np.allclose(np.asarray(lazy.covariance), np.asarray(eager.covariance),
                       rtol=1e-10, atol=1e-14)


def test_lazy_blocked_fit(recording, eager, monkeypatch):
    monkeypatch.setattr(information, "EAGER_MULTIPLY_ADDS", 0.0)
    blocked = _fit(recording, chunk_size=2000, tol=1e-10)
    reference = _fit(recording, tol=1e-10)
    assert blocked.covariance.computed_units.size == 0
    assert np.allclose(blocked.standard_errors(), reference.standard_errors(), rtol=1e-6,
                       equal_nan=True)


def test_saved_result_keeps_the_computed_units(recording, monkeypatch, tmp_path):
    monkeypatch.setattr(information, "EAGER_MULTIPLY_ADDS", 0.0)
    lazy = _fit(recording)
    before = lazy.standard_errors(unit=0)
    loaded = gf.load_result(lazy.save(tmp_path / "lazy"))
    assert np.array_equal(loaded.standard_errors(unit=0), before, equal_nan=True)
    with pytest.raises(gf.FitError, match="not been computed when the result was saved"):
        loaded.standard_errors(unit=3)
    assert np.isfinite(lazy.standard_errors(unit=3)[3].dropna()).all()  # the fit still can


def test_without_standard_errors_says_so(recording):
    design = build(prepare(FORMULA, recording, bin_size="10ms", epochs="wake"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = engine.fit_design(design, engine.FitOptions(regularizer=gf.Ridge(1e-3)),
                                   covariance=False)
    res = gf.FitResult.from_engine(DesignSpec.from_design(design), fitted)
    with pytest.raises(gf.FitError, match="covariance=False"):
        res.table("history")


def test_design_is_aligned_so_the_solver_does_not_copy_it(recording):
    design = build(prepare(FORMULA, recording, bin_size="10ms", epochs="wake"))
    problem = backend.Problem(X=design.storage, y=design.counts)
    assert problem.X is design.storage
