"""A comparison's folds run side by side on threads (``gf.config.threads``): the same table,
the same warning records and the same warnings as one fold after another."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pandas as pd

import glmformula as gf
from glmformula.backend.solve import DEFAULT_TOL
from glmformula.compare.comparison import Comparison
from glmformula.fitting import engine

RUN_TASK = Comparison.run_task
MODELS = {"hd": "spikes ~ cyclic(head_direction, 12)",
          "hd+hist": "spikes ~ cyclic(head_direction, 12) + history(8)"}


def _compare(data, n_threads, monkeypatch):
    monkeypatch.setattr(gf.config, "threads", n_threads)
    seen = set()

    def spy(self, *args, **kwargs):
        seen.add(threading.get_ident())
        return RUN_TASK(self, *args, **kwargs)

    monkeypatch.setattr(Comparison, "run_task", spy)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # unpenalised: some folds separate or stop short, so there are warnings to compare
        table = gf.compare(MODELS, data, bin_size="10ms", epochs="wake", cv=5, smoothing=None)
    return table, caught, seen


def test_folds_on_threads_give_the_same_table_and_warnings(monkeypatch):
    data = gf.datasets.head_direction(n_units=4, duration=300.0)
    one, caught_one, seen_one = _compare(data, 1, monkeypatch)
    two, caught_two, seen_two = _compare(data, 2, monkeypatch)
    assert len(seen_one) == 1 and len(seen_two) > 1
    pd.testing.assert_frame_equal(one, two)
    records = one.attrs["warnings"]
    assert len(records), "this comparison has warnings to compare"
    pd.testing.assert_frame_equal(records, two.attrs["warnings"])
    assert [(w.category, str(w.message), w.filename) for w in caught_one] == \
        [(w.category, str(w.message), w.filename) for w in caught_two]


def test_a_fold_fit_on_a_private_copy_leaves_the_design_untouched(monkeypatch):
    """Folds side by side fit copies of their rows: the same weights as the fit that rotates
    the design's constrained columns in place (and back), and the design's values are never
    touched (not even by the rounding of a rotation there and back)."""
    # both fits to the solver's default tolerance, not a comparison's looser ones
    monkeypatch.setattr(engine, "SCORED_FIT_TOL", DEFAULT_TOL)
    monkeypatch.setattr(engine, "PENALISED_SCORED_FIT_TOL", DEFAULT_TOL)
    data = gf.datasets.head_direction(n_units=3, duration=120.0, seed=2)
    comparison = Comparison({"hd+hist": MODELS["hd+hist"]}, data, bin_size="10ms",
                            epochs="wake", cv=5, regularizer=gf.Ridge(1e-3), solver="auto",
                            dtype=None, smoothing=None)
    storage = comparison.designs["hd+hist"].storage
    before = storage.copy()
    train = comparison.valid & ~comparison.folds[1]
    private = comparison.fit("hd+hist", train, private_rows=True)
    np.testing.assert_array_equal(storage, before)  # never touched
    in_place = comparison.fit("hd+hist", train)
    # rotated and back: the same up to rounding
    np.testing.assert_allclose(storage, before, rtol=0, atol=1e-14)
    # the same Newton iterations on rows laid out differently: the same answer to the
    # rounding of the last step (gradient norms ~1e-10; 1.3e-10 apart in the weights)
    np.testing.assert_allclose(private.weights, in_place.weights, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(private.diagnostics.n_iter, in_place.diagnostics.n_iter)
    np.testing.assert_allclose(private.intercepts, in_place.intercepts, rtol=1e-9)
