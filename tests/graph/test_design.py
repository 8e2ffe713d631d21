"""Design matrices from pynapple objects: binning, sampling, epochs, columns, errors."""

from __future__ import annotations

import copy

import numpy as np
import pynapple as nap
import pytest

import glmformula as gf
from glmformula.bases import causal_filters, cyclic_bspline, resolvable_time_scaling
from glmformula.graph.design import design_matrix


def _loop_history(counts, starts, kernels):
    """Plain loop reference: row t sums kernels[j-1] * counts[t-j] within its own epoch."""
    T, U = counts.shape
    W, K = kernels.shape
    out = np.zeros((T, U * K))
    for t in range(T):
        for u in range(U):
            for k in range(K):
                total = 0.0
                for j in range(1, W + 1):
                    if t - j >= starts[t]:
                        total += kernels[j - 1, k] * counts[t - j, u]
                out[t, u * K + k] = total
    return out


def test_counts_match_pynapple(small_population):
    X = design_matrix("spikes ~ 1", small_population, bin_size=0.01, epochs="ep")
    expected = small_population["spikes"].count(0.01, small_population["ep"])
    got = X.counts[X.valid]
    assert got.shape == expected.shape
    assert np.array_equal(got, np.asarray(expected.values))
    assert np.allclose(X.times, expected.t)


def test_history_and_coupling_equal_loop_reference_across_epochs(small_population):
    f = "spikes ~ history(3, log, window=50ms) + coupling(all)"
    X = design_matrix(f, small_population, bin_size="10ms", epochs="ep")
    grid = X.grid
    counts = X.counts.astype(float)
    starts = grid.segments[grid.epoch_of_row, 0]
    kernels = causal_filters(5, 3, log=True, time_scaling=resolvable_time_scaling(5, 3))
    reference = _loop_history(counts, starts, kernels)
    # Stored bank: every unit's filtered counts, channel-major.
    bank = X.storage[:, X.plan.term_storage["history(3, log, window=50ms)"]]
    assert np.allclose(bank[X.valid], reference[X.valid], atol=1e-10)
    # First 5 bins of every epoch are dropped, never zero-filled.
    assert X.dropped["window"] == 5 * len(grid.starts)
    assert np.all(grid.row_in_epoch[X.valid] >= 5)
    # Border rows: the first kept row of epoch 2 only sees epoch 2 (compare with the loop).
    first = grid.segments[1, 0] + 5
    assert np.allclose(X.storage[first, :9], reference[first, :9])


def test_single_unit_design_selects_own_history_and_others_coupling(small_population):
    X = design_matrix("spikes[1] ~ history(2, log, window=30ms) + coupling(all)",
                      small_population, bin_size="10ms", epochs="ep")
    assert X.columns[:2] == ("history(2, log, window=30ms)[0]",
                             "history(2, log, window=30ms)[1]")
    assert "coupling(all, 2, log, window=30ms)[unit 0][0]" in X.columns
    assert not any("[unit 1]" in c for c in X.columns)  # never couples to itself
    assert X.term_slices["coupling(all, 2, log, window=30ms)"] == slice(2, 6)
    M = X.to_numpy()
    assert M.shape == (X.n_rows, 7) and np.all(M[:, 0] == 1)
    pop = design_matrix("spikes ~ history(2, log, window=30ms) + coupling(all)",
                        small_population, bin_size="10ms", epochs="ep")
    bank = pop.storage[pop.valid]
    assert np.allclose(M[:, 1:3], bank[:, 2:4])      # unit 1's own bank
    assert np.allclose(M[:, 3:5], bank[:, 0:2])      # unit 0's bank as coupling


def test_cyclic_term_uses_circular_interpolation(small_population):
    X = design_matrix("spikes[0] ~ cyclic(hd, 6)", small_population, bin_size=0.01,
                      epochs="ep")
    hd = small_population["hd"]
    t = X.times
    unwrapped = np.interp(t, hd.t, np.unwrap(hd.values))
    expected = cyclic_bspline(np.mod(unwrapped, 2 * np.pi), 6)
    assert np.allclose(X.to_numpy(intercept=False), expected, atol=1e-12)


def test_fast_covariate_is_bin_averaged():
    t = np.arange(0, 10, 0.001)
    data = {"spikes": nap.TsGroup({0: nap.Ts(np.array([1.0, 2.0, 5.0]))},
                                  time_support=nap.IntervalSet(0, 10)),
            "current": nap.Tsd(t=t, d=np.sin(t * 7), time_support=nap.IntervalSet(0, 10))}
    X = design_matrix("spikes ~ current", data, bin_size=0.1)
    expected = data["current"].bin_average(0.1, nap.IntervalSet(0, 10))
    assert np.allclose(X.to_numpy(intercept=False)[:, 0], expected.values[: X.n_rows],
                       atol=1e-9)


def test_interaction_is_rowwise_product(small_population):
    X = design_matrix("spikes[0] ~ cyclic(hd, 4):speed", small_population, bin_size=0.01)
    Xa = design_matrix("spikes[0] ~ cyclic(hd, 4) + speed", small_population, bin_size=0.01)
    A = Xa.to_numpy(intercept=False)
    assert np.allclose(X.to_numpy(intercept=False), A[:, :4] * A[:, 4:5])
    assert X.columns[0] == "cyclic(hd, 4):speed[0]"


def test_missing_rows_are_dropped_and_counted(small_population):
    data = dict(small_population)
    values = small_population["speed"].values.copy()
    values[100:140] = np.nan
    data["speed"] = nap.Tsd(t=small_population["speed"].t, d=values)
    X = design_matrix("spikes ~ speed", data, bin_size=0.01, epochs="ep")
    assert X.dropped["missing"] > 0
    assert np.isfinite(X.to_numpy()).all()


def test_user_objects_are_not_modified(small_population):
    before = copy.deepcopy({k: (np.asarray(v.t).copy() if hasattr(v, "t") else None)
                            for k, v in small_population.items()})
    values_before = small_population["hd"].values.copy()
    design_matrix("spikes ~ cyclic(hd, 8) + center(speed) + history(3) + coupling(all)",
                  small_population, bin_size=0.01, epochs="ep")
    assert np.array_equal(small_population["hd"].values, values_before)
    for k, v in small_population.items():
        if hasattr(v, "t"):
            assert np.array_equal(np.asarray(v.t), before[k])


@pytest.mark.parametrize("formula, kwargs, match", [
    ("spikes ~ hdd", {}, "did you mean 'hd'"),
    ("spikes ~ ep2", {}, "unknown name"),
    ("spikes ~ history(3, window=300s)", {}, "window"),
    ("spikes ~ hd", {"bin_size": 1000.0}, "bin_size"),
    ("spikes ~ hd", {"bin_size": "-10ms"}, "bin_size"),
    ("spikes ~ hd", {"bin_size": "10 parsecs"}, "bin_size"),
    ("spikes ~ hd", {"epochs": "hd"}, "not an IntervalSet"),
    ("spikes[7] ~ hd", {}, "not in 'spikes'"),
    ("hd ~ speed", {}, "spike"),
    ("spikes ~ spikes", {}, "response"),
    ("spikes ~ coupling([9])", {}, "not in 'spikes'"),
])
def test_bad_data_gives_formula_error(small_population, formula, kwargs, match):
    options = {"bin_size": 0.01, **kwargs}
    with pytest.raises(gf.FormulaError, match=match):
        design_matrix(formula, small_population, **options)


def test_covariate_not_covering_epochs_is_an_error(small_population):
    data = dict(small_population)
    data["short"] = nap.Tsd(t=np.arange(0, 20, 0.1), d=np.ones(200),
                            time_support=nap.IntervalSet(0, 20))
    with pytest.raises(gf.DataError, match="does not cover"):
        design_matrix("spikes ~ short", data, bin_size=0.01, epochs="ep")
    # Without epochs the default is the intersection of supports, which works.
    X = design_matrix("spikes ~ short", data, bin_size=0.01)
    assert X.grid.ends.max() <= 20


def test_interval_set_is_an_indicator(small_population):
    X = design_matrix("spikes[0] ~ ep", small_population, bin_size=1.0,
                      epochs=nap.IntervalSet(0, 200))
    column = X.to_numpy(intercept=False)[:, 0]
    t = X.times
    inside = ((t > 0) & (t < 50)) | ((t > 60) & (t < 120)) | ((t > 130) & (t < 200))
    assert np.array_equal(column.astype(bool), inside)


def test_to_tsdframe_keeps_time(small_population):
    X = design_matrix("spikes[0] ~ speed + hd", small_population, bin_size=0.05, epochs="ep")
    frame = X.to_tsdframe()
    assert list(frame.columns) == ["Intercept", "speed", "hd"]
    assert np.allclose(frame.t, X.times)
    assert len(frame.time_support) == 3
    assert isinstance(X.response, nap.Tsd)


def test_blocks_equal_the_full_design_across_epoch_borders(small_population):
    from glmformula.graph.design import build, iter_blocks, prepare
    f = ("spikes ~ cyclic(hd, 6) + center(speed) + lag(speed, 30ms) + filter(speed, 3, "
         "window=80ms) + history(4, log, window=50ms) + coupling(all)")
    prepared = prepare(f, small_population, bin_size="10ms", epochs="ep")
    full = build(prepared)
    blocks = list(iter_blocks(prepared, 777))   # block edges fall inside epochs and windows
    assert sum(b.stop - b.start for b in blocks) == full.grid.n_rows
    storage = np.concatenate([b.X for b in blocks])
    valid = np.concatenate([b.valid for b in blocks])
    assert np.array_equal(valid, full.valid)
    assert np.allclose(storage, full.storage, atol=1e-12)
