"""Covariances per unit on its own columns, computed with the fit or on first use."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import glmformula as gf
from glmformula import backend, information
from glmformula.fitting import _groups, _rotated, _rotation
from glmformula.graph.constraints import find_constraints
from glmformula.graph.design import build, prepare

FORMULA = "spikes ~ cyclic(head_direction, 6) + history(3, log, window=60ms) + coupling(0)"


@pytest.fixture(scope="module")
def recording():
    return gf.datasets.head_direction(n_units=4, duration=200.0, seed=7)


def _fit(recording, formula=FORMULA, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gf.fit(formula, recording, bin_size="10ms", epochs="wake",
                      regularizer=gf.Ridge(1e-3), **options)


@pytest.fixture(scope="module")
def eager(recording):
    return _fit(recording)


def _reference_covariance(recording):
    """The covariance from every stored column at once (backend.fisher_covariance on the
    rotated design, masked per unit), rotated back: the definition, without supports."""
    design = build(prepare(FORMULA, recording, bin_size="10ms", epochs="wake"))
    plan = design.plan
    shared = tuple(t.text for t in plan.terms if t.role == "shared")
    constraints = find_constraints(design.storage, design.valid, plan.term_storage, shared)
    with _rotated(design, constraints) as (X, mask):
        problem = backend.Problem(X=X, y=design.counts, column_mask=mask,
                                  offset=design.offset, row_weight=design.valid.astype(float),
                                  column_groups=_groups(plan))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            solution = backend.solve(problem, regularizer=gf.Ridge(1e-3), tol=1e-10)
            cov = backend.fisher_covariance(problem, solution, regularizer=gf.Ridge(1e-3))
    T = np.zeros((plan.n_storage + 1,) * 2)
    T[0, 0] = 1.0
    T[1:, 1:] = _rotation(constraints, plan)
    order = np.r_[plan.n_storage, np.arange(plan.n_storage)]  # intercept first
    return np.stack([T @ c[np.ix_(order, order)] @ T.T for c in cov]), constraints


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
    from glmformula.fitting import fit_design
    design = build(prepare(FORMULA, recording, bin_size="10ms", epochs="wake"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = fit_design(design, regularizer=gf.Ridge(1e-3), covariance=False)
    with pytest.raises(gf.FitError, match="covariance=False"):
        res.table("history")


def test_design_is_aligned_so_the_solver_does_not_copy_it(recording):
    design = build(prepare(FORMULA, recording, bin_size="10ms", epochs="wake"))
    problem = backend.Problem(X=design.storage, y=design.counts)
    assert problem.X is design.storage
