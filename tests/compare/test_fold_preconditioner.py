"""A comparison's L-BFGS folds begin with the fit on all rows' last preconditioner
(``comparison.SHARED_PRECONDITIONER``): the same cross-validated scores as folds that form
the Hessian at their start, without those Hessian passes."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

import glmformula as gf
from glmformula.backend import lbfgs
from glmformula.fitting import engine

# by its module path: the attribute glmformula.compare is the function gf.compare
comparison = importlib.import_module("glmformula.compare.comparison")

FIT_DESIGN = engine.fit_design
MODEL = {"coupled": "spikes ~ cyclic(head_direction, 8) + history(4) + coupling(all)"}


def _compare(data, shared: bool, monkeypatch):
    monkeypatch.setattr(comparison, "SHARED_PRECONDITIONER", shared)
    given, hessian_passes = [], []

    def spy(*args, **kwargs):
        given.append(kwargs.get("preconditioner") is not None)
        result = FIT_DESIGN(*args, **kwargs)
        hessian_passes.append(result.diagnostics.n_hessian_passes)
        return result

    monkeypatch.setattr(engine, "fit_design", spy)
    table = gf.compare(MODEL, data, bin_size="10ms", epochs="wake", cv=5, smoothing=None,
                       solver="lbfgs", regularizer=gf.Ridge(1e-3))
    return table, given, hessian_passes


@pytest.fixture(scope="module")
def data():
    return gf.datasets.head_direction(n_units=8, duration=200.0, seed=4)


def test_folds_given_the_preconditioner_score_the_same_with_fewer_hessians(data, monkeypatch):
    own, given_own, passes_own = _compare(data, False, monkeypatch)
    shared, given_shared, passes_shared = _compare(data, True, monkeypatch)
    assert given_own == [False] * 6
    assert given_shared == [False] + [True] * 5  # the fit on all rows, then its folds
    # the same fit on all rows (first); the folds (side by side, in any order) skip the Gram
    # matrix and the Hessian at their starts
    assert passes_shared[0] == passes_own[0]
    assert min(passes_own[1:]) >= 2
    assert sum(passes_shared[1:]) <= sum(passes_own[1:]) - 2 * 5
    np.testing.assert_allclose(shared["cv_bits_per_spike"], own["cv_bits_per_spike"],
                               rtol=0, atol=1e-5)
    assert shared["converged"].all()


def test_a_newton_comparison_carries_no_preconditioner(data, monkeypatch):
    captured = []
    original = lbfgs.LBFGS.run
    monkeypatch.setattr(lbfgs.LBFGS, "run",
                        lambda self, fit_data: captured.append(1) or original(self, fit_data))
    table = gf.compare({"hd": "spikes ~ cyclic(head_direction, 8)"}, data, bin_size="10ms",
                       epochs="wake", cv=5, smoothing=None, solver="newton")
    assert not captured and np.isfinite(table["cv_bits_per_spike"]).all()
