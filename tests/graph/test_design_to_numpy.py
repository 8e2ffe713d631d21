"""``DesignMatrix.to_numpy`` / ``unit_design`` / ``to_tsdframe`` write the output once; the
values are exactly those of selecting rows, then columns, then prepending the intercept."""

from __future__ import annotations

import numpy as np
import pynapple as nap
import pytest

import glmformula as gf
from glmformula.graph import design as design_module


def old_to_numpy(dm, intercept=None, columns=None):
    if columns is None:
        columns = slice(None) if dm.is_population else dm.plan.unit_columns[0]
    X = dm.storage[dm.rows][:, columns]
    if dm.formula.intercept if intercept is None else intercept:
        X = np.concatenate([np.ones((X.shape[0], 1), X.dtype), X], axis=1)
    return X


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    spikes = nap.TsGroup({i: nap.Ts(np.sort(rng.uniform(0, 100, 800 + 100 * i)))
                          for i in range(4)}, time_support=nap.IntervalSet(0, 100))
    t = np.arange(0, 100, 0.004)
    speed = np.abs(rng.normal(10, 3, len(t)))
    speed[rng.random(len(t)) < 0.05] = np.nan  # scattered missing rows: many short runs
    return {"spikes": spikes,
            "speed": nap.Tsd(t=t, d=speed, time_support=nap.IntervalSet(0, 100)),
            "hd": nap.Tsd(t=t, d=np.mod(np.cumsum(rng.normal(0, 0.1, len(t))), 2 * np.pi),
                          time_support=nap.IntervalSet(0, 100)),
            "ep": nap.IntervalSet([0.0, 40.0, 70.0], [30.0, 65.0, 100.0])}


FORMULAS = [
    "spikes ~ cyclic(hd, 6) + history(3, log, window=50ms) + coupling(all)",
    "spikes[2] ~ cyclic(hd, 6) + history(3, log, window=50ms) + coupling(all)",
    "spikes[1] ~ history(3, window=50ms) + coupling([0, 3], 2, window=40ms) + hd",
    "spikes ~ bspline(speed, 5) + hd",
    "spikes[0] ~ bspline(speed, 5) + history(2, window=40ms) - 1",
]


@pytest.mark.parametrize("formula", FORMULAS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_to_numpy_equals_the_old_result(data, formula, dtype):
    dm = gf.design_matrix(formula, data, bin_size="10ms", epochs=data["ep"], dtype=dtype)
    for intercept in (None, True, False):
        new, old = dm.to_numpy(intercept), old_to_numpy(dm, intercept)
        assert new.dtype == old.dtype and new.shape == old.shape
        np.testing.assert_array_equal(new, old)
        assert new.flags.c_contiguous and new.flags.owndata
    frame = dm.to_tsdframe()
    np.testing.assert_array_equal(frame.values, old_to_numpy(dm))
    for u, unit in enumerate(dm.unit_ids):
        table = dm.unit_design(unit)
        np.testing.assert_array_equal(
            table.values, old_to_numpy(dm, False, dm.plan.unit_columns[u]))


def test_scattered_rows_and_columns(monkeypatch):
    """Both ways of copying (slices of long runs, pieces of short ones) give the old values."""
    rng = np.random.default_rng(1)
    storage = rng.standard_normal((5000, 30))
    for rows in (np.flatnonzero(rng.random(5000) < 0.7), np.r_[10:2000, 2100:4990],
                 np.arange(0), np.array([3])):
        for columns in (np.arange(30), np.r_[0:4, 9:20, 25], np.array([29, 3, 4, 5, 0]),
                        np.arange(0)):
            for intercept in (True, False):
                expected = storage[rows][:, columns]
                if intercept:
                    expected = np.concatenate([np.ones((len(rows), 1)), expected], axis=1)
                monkeypatch.setattr(design_module, "_GATHER_BYTES", 8 * 7)  # tiny pieces
                np.testing.assert_array_equal(
                    design_module.gather(storage, rows, columns, intercept), expected)
                monkeypatch.undo()
                np.testing.assert_array_equal(
                    design_module.gather(storage, rows, columns, intercept), expected)


def test_covariate_ranges_read_in_place_equal_nanmin_nanmax():
    """The training range of a covariate (recorded with every fit) is its nanmin / nanmax over
    the rows used, read without copying them; a column without a finite value gets NaN."""
    import warnings

    from glmformula.graph.layout import _finite_range_on
    rng = np.random.default_rng(5)
    for _ in range(300):
        n, c = int(rng.integers(0, 300)), int(rng.integers(1, 4))
        values = rng.standard_normal((n, c))
        values[rng.random((n, c)) < 0.3] = np.nan
        used = rng.random(n) < rng.choice([0.0, 0.05, 0.5, 0.97, 1.0])
        if rng.random() < 0.5 and n > 10:  # one run of rows, as one epoch gives
            used[:] = False
            start = int(rng.integers(0, n))
            used[start:start + int(rng.integers(1, n))] = True
        low, high = _finite_range_on(values, used)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            rows = values[used]
            expected = ((np.nanmin(rows, axis=0), np.nanmax(rows, axis=0)) if len(rows)
                        else (np.full(c, np.nan), np.full(c, np.nan)))
        np.testing.assert_array_equal(low, expected[0])
        np.testing.assert_array_equal(high, expected[1])
