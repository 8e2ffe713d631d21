"""In one process, the fit on all rows of a model starts from that of the largest model
nested in it (``Comparison._nested_start``): the same answer or a better one (a REML criterion
as low or lower) in no more strength iterations (on the real coupled head-direction model: 8
instead of 13, and a lower criterion for 7 of 32 cells; docs/performance_decisions.md)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import glmformula as gf
from glmformula.compare.comparison import Comparison
from glmformula.fitting import engine

MODELS = {"hd+history": "spikes ~ cyclic(head_direction, 8) + history(4, log, window=60ms)",
          "coupled": "spikes ~ cyclic(head_direction, 8) + history(4, log, window=60ms) + "
                     "coupling(all)"}


def _comparison(data, nested_starts: bool) -> Comparison:
    return Comparison(MODELS, data, bin_size="10ms", epochs="wake", cv=2, regularizer=None,
                      solver="auto", dtype=None, nested_starts=nested_starts)


@pytest.fixture(scope="module")
def data():
    return gf.datasets.head_direction(n_units=4, duration=200.0, seed=3)


def test_the_start_carries_the_nested_fit_on_the_columns_both_read(data):
    comparison = _comparison(data, nested_starts=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        comparison.run_task("hd+history", -1)
    weights, intercepts, strengths = comparison._nested_start("coupled")
    small, large = comparison.designs["hd+history"].plan, comparison.designs["coupled"].plan
    fitted = comparison._full["hd+history"]
    np.testing.assert_array_equal(intercepts, fitted.intercepts)
    for u in range(len(large.unit_ids)):
        where = dict(zip(small.unit_labels[u], small.unit_columns[u]))
        for column, label in zip(large.unit_columns[u], large.unit_labels[u]):
            expected = fitted.weights[where[label], u] if label in where else 0.0
            assert weights[column, u] == expected
        # every coupling column starts at 0, every nested one at its fitted weight
        assert any(label[0].startswith("coupling") for label in large.unit_labels[u])
    assert set(strengths) == set(fitted.smoothing.keys)
    assert not any(key.startswith("coupling") for key in strengths)
    assert _comparison(data, nested_starts=False)._nested_start("coupled") is None


def test_a_nested_start_reaches_the_same_or_a_better_optimum(data):
    fits = {}
    for nested in (False, True):
        comparison = _comparison(data, nested_starts=nested)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            comparison.run_task("hd+history", -1)
            comparison.run_task("coupled", -1)
        fits[nested] = comparison._full["coupled"].smoothing
    cold, warm = fits[False], fits[True]
    assert np.all(cold.converged) and np.all(warm.converged)
    assert warm.n_outer <= cold.n_outer
    # V is minimised: never worse than from the cold start beyond the search's tolerance
    assert np.all(warm.criterion <= cold.criterion + 5e-6 * np.abs(cold.criterion))


PLAIN = {"hd": "spikes ~ cyclic(head_direction, 8)",
         "hd+history": "spikes ~ cyclic(head_direction, 8) + history(4, log, window=60ms)",
         "coupled": "spikes ~ cyclic(head_direction, 8) + history(4, log, window=60ms) + "
                    "coupling(all)"}


@pytest.fixture(scope="module")
def population():
    # enough units and rows for the history model's units to be fitted in groups
    return gf.datasets.head_direction(n_units=16, duration=600.0, seed=5)


def _plain(data, nested_starts: bool) -> Comparison:
    return Comparison(PLAIN, data, bin_size="10ms", epochs="wake", cv=2, regularizer=None,
                      solver="auto", dtype=None, smoothing=None, nested_starts=nested_starts)


def test_without_reml_only_units_fitted_in_groups_start_from_the_nested_fit(population,
                                                                           monkeypatch):
    # both fits closer to the optimum than a comparison's (1e-5), so that their weights can be
    # compared to 1e-4
    monkeypatch.setattr(engine, "SCORED_FIT_TOL", 1e-7)
    fits, iterations = {}, {}
    for nested in (False, True):
        comparison = _plain(population, nested_starts=nested)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            comparison.run_task("hd", -1)
            start = comparison._nested_start("hd+history")
            comparison.run_task("hd+history", -1)
        assert (start is not None) == nested
        fits[nested] = comparison._full["hd+history"]
        iterations[nested] = np.asarray(fits[nested].diagnostics.n_iter)
        if nested:
            # Newton on each unit's own columns: the history model is fitted in groups, the
            # coupled model (every unit reads every column, L-BFGS) is not and starts cold
            design = comparison.designs["hd+history"]
            assert engine.fitted_in_groups(design, comparison.model("hd+history").constraints,
                                           comparison.valid)
            assert comparison._nested_start("coupled") is None
    cold, warm = fits[False], fits[True]
    assert np.all(cold.diagnostics.converged) and np.all(warm.diagnostics.converged)
    # the same optimum (weights of nearly separated tuning curves near -20 agree to ~1e-5
    # relative), in fewer iterations in all
    np.testing.assert_allclose(warm.diagnostics.log_likelihood, cold.diagnostics.log_likelihood,
                               rtol=1e-10)
    np.testing.assert_allclose(warm.weights, cold.weights, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(warm.intercepts, cold.intercepts, rtol=1e-4, atol=1e-4)
    assert iterations[True].sum() < iterations[False].sum()
