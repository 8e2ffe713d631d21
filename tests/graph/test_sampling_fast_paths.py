"""Covariates sampled on the grid's own bin centres are taken as they are (no interpolation),
with the values the interpolation gives there: exactly the same where the sample times are the
centres, and to float precision where they are within float tolerance of them."""

from __future__ import annotations

import numpy as np
import pynapple as nap
import pytest

import glmformula as gf
from glmformula.graph import sampling
from glmformula.graph.grid import TimeGrid

TWO_PI = 2 * np.pi


def interpolated(times, values, grid, rows=None, period=None, support=None):
    """The interpolating path alone (what every covariate went through before)."""
    rows = slice(0, grid.n_rows) if rows is None else rows
    values = np.asarray(values, float).reshape(len(times), -1)
    centers = grid.centers[rows]
    out = sampling._interpolate(times, values, centers, period)
    if support is not None:
        out[~sampling._inside(centers, support)] = np.nan
    return out


def sampled(times, values, grid, rows=None, period=None, support=None):
    rows = slice(0, grid.n_rows) if rows is None else rows
    support = np.array([[times[0] - 1, times[-1] + 1]]) if support is None else support
    return sampling.sample_on_grid(times, values, support, grid, rows, period=period)


@pytest.fixture
def grid():
    return TimeGrid.from_epochs([0.0, 30.0, 61.0], [20.0, 50.0, 90.0], 0.01)


def test_samples_at_the_centres_are_taken_exactly(grid):
    rng = np.random.default_rng(0)
    times = grid.centers.copy()
    values = rng.standard_normal((len(times), 5))
    values[rng.random(values.shape) < 0.01] = np.nan  # missing samples stay missing
    np.testing.assert_array_equal(sampled(times, values, grid),
                                  interpolated(times, values, grid))
    rows = slice(1000, 3500)  # a block of rows, as blocked fits build them
    np.testing.assert_array_equal(sampled(times, values, grid, rows),
                                  interpolated(times, values, grid, rows))


def test_a_view_of_the_samples_is_read_only_and_the_data_are_untouched():
    grid = TimeGrid.from_epochs([0.0], [90.0], 0.01)
    # 0 to 90 s at the bins' phase, as a user writes it: a few centres differ from these
    # times in the last bit, where the interpolation's answer differs in the last bit too
    times = (np.arange(9000) + 0.5) * 0.01
    values = np.arange(9000.0)[:, None] * np.ones((1, 3))
    keep = values.copy()
    out = sampled(times, values, grid)
    np.testing.assert_allclose(out, interpolated(times, values, grid), rtol=1e-15, atol=0)
    np.testing.assert_array_equal(out[:, 0], np.arange(9000.0))  # the samples themselves
    assert not out.flags.writeable
    narrow = np.array([[0.0, 40.0]])  # centres outside the support become NaN: on a copy
    out = sampled(times, values, grid, support=narrow)
    np.testing.assert_allclose(out, interpolated(times, values, grid, support=narrow),
                               rtol=1e-15, atol=0)
    assert np.isnan(out).any()
    np.testing.assert_array_equal(values, keep)


def test_angles_are_unwrapped_and_wrapped_as_before(grid):
    rng = np.random.default_rng(1)
    times = grid.centers.copy()
    angle = np.mod(np.cumsum(rng.normal(0, 0.5, len(times))), TWO_PI)
    angle[rng.random(len(angle)) < 0.01] = np.nan
    out = sampled(times, angle, grid, period=TWO_PI)
    np.testing.assert_array_equal(out, interpolated(times, angle, grid, period=TWO_PI))
    finite = np.isfinite(out)
    assert np.all((out[finite] >= 0) & (out[finite] < TWO_PI))
    # angles given in [-pi, pi) come back in [0, 2 pi), the same as interpolated
    shifted = angle - np.pi
    np.testing.assert_array_equal(sampled(times, shifted, grid, period=TWO_PI),
                                  interpolated(times, shifted, grid, period=TWO_PI))


def test_times_within_float_tolerance_of_the_centres(grid):
    rng = np.random.default_rng(2)
    times = grid.centers + rng.uniform(-1, 1, grid.n_rows) * 1e-13
    times[[0, -1]] = grid.centers[[0, -1]]  # (a centre just past the last sample is NaN there)
    values = rng.standard_normal((len(times), 2))
    np.testing.assert_allclose(sampled(times, values, grid), interpolated(times, values, grid),
                               rtol=1e-9, atol=1e-9)
    angle = np.mod(np.cumsum(rng.normal(0, 0.5, len(times))), TWO_PI)
    np.testing.assert_allclose(sampled(times, angle, grid, period=TWO_PI),
                               interpolated(times, angle, grid, period=TWO_PI),
                               rtol=1e-9, atol=1e-9)


def test_some_centres_on_samples_others_between(grid):
    rng = np.random.default_rng(3)
    # extra samples between some centres: every centre is still a sample time
    extra = grid.centers[::7] + 0.004
    times = np.sort(np.r_[grid.centers, extra])
    values = rng.standard_normal((len(times), 2))
    np.testing.assert_array_equal(sampled(times, values, grid),
                                  interpolated(times, values, grid))
    # the covariate starts late: the early centres have no sample (NaN), the rest do
    late = grid.centers[grid.centers > 40.0]
    values = rng.standard_normal((len(late), 1))
    np.testing.assert_array_equal(sampled(late, values, grid),
                                  interpolated(late, values, grid))
    # samples at the centres of the first epoch only, off the phase of the others
    times = np.r_[grid.centers[:2000], np.arange(30.003, 90.0, 0.01)]
    values = rng.standard_normal((len(times), 1))
    for period in (None, TWO_PI):
        np.testing.assert_array_equal(sampled(times, values, grid, period=period),
                                      interpolated(times, values, grid, period=period))


@pytest.mark.parametrize("offset", [0.003, 0.005 + 1e-6])
def test_off_the_grid_phase_is_interpolated(grid, offset, monkeypatch):
    times = np.arange(0, 90, 0.01) + offset
    values = np.sin(times)[:, None]
    np.testing.assert_array_equal(sampled(times, values, grid), interpolated(times, values, grid))
    assert sampling._matching_samples(times, grid.centers, grid.bin_size) == (None, None)


def test_repeated_times_are_merged_as_before(grid):
    times = np.repeat(grid.centers, 2)
    values = np.arange(len(times), dtype=float)
    out = sampled(times, values, grid)
    np.testing.assert_array_equal(out, interpolated(times, values, grid))
    np.testing.assert_array_equal(out[:3, 0], [0.5, 2.5, 4.5])  # the mean of each pair


def _designs(formula, data, monkeypatch, **kwargs):
    fast = gf.design_matrix(formula, data, **kwargs)
    with monkeypatch.context() as patch:  # the interpolating path for every covariate
        patch.setattr(sampling, "_matching_samples", lambda *a: (None, None))
        slow = gf.design_matrix(formula, data, **kwargs)
    return fast, slow


def test_designs_are_identical_to_the_interpolating_path(monkeypatch):
    rng = np.random.default_rng(4)
    T, bs = 20_000, 0.01
    t = (np.arange(T) + 0.5) * bs
    support = nap.IntervalSet(0, T * bs)
    spikes = nap.TsGroup({i: nap.Ts(np.sort(rng.uniform(0, T * bs, 3000))) for i in range(3)},
                         time_support=support)
    data = {"spikes": spikes,
            "x": nap.TsdFrame(t=t, d=rng.standard_normal((T, 4)), time_support=support),
            "speed": nap.Tsd(t=t, d=np.abs(rng.normal(10, 3, T)), time_support=support),
            "hd": nap.Tsd(t=t, d=np.mod(np.cumsum(rng.normal(0, 0.1, T)), TWO_PI),
                          time_support=support)}
    formula = ("spikes ~ x + bspline(speed, 6) + scale(speed) + cyclic(hd, 8) "
               "+ history(4, log, window=50ms)")
    epochs = nap.IntervalSet([0.0, 80.0], [70.0, 200.0])
    # (t: what a user writes; some centres differ from it in the last bit, see above)
    for kwargs in (dict(bin_size=bs), dict(bin_size="10ms", epochs=epochs)):
        fast, slow = _designs(formula, data, monkeypatch, **kwargs)
        np.testing.assert_allclose(fast.storage, slow.storage, rtol=1e-9, atol=1e-10)
        np.testing.assert_array_equal(fast.valid, slow.valid)
    # the same data on the grid's own centres: identical designs
    grid = fast.grid
    exact = {k: v for k, v in data.items()}
    for name in ("x", "speed", "hd"):
        obj = data[name].restrict(nap.IntervalSet(grid.starts, grid.ends))
        rows = np.round(obj.t / bs - 0.5).astype(int)
        keep = np.isin(rows, np.round(grid.centers / bs - 0.5).astype(int))
        exact[name] = type(obj)(t=grid.centers, d=obj.values[keep], time_support=epochs)
    fast, slow = _designs(formula, exact, monkeypatch, bin_size="10ms", epochs=epochs)
    np.testing.assert_array_equal(fast.storage, slow.storage)
    # the fits (standard errors included) are the same
    res = gf.fit("spikes ~ x + cyclic(hd, 8)", data, bin_size=bs)
    with monkeypatch.context() as patch:
        patch.setattr(sampling, "_matching_samples", lambda *a: (None, None))
        ref = gf.fit("spikes ~ x + cyclic(hd, 8)", data, bin_size=bs)
    np.testing.assert_allclose(res.coef.values, ref.coef.values, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(res.intercept.values, ref.intercept.values, rtol=1e-9)
    np.testing.assert_allclose(res.standard_errors().values, ref.standard_errors().values,
                               rtol=1e-9)


def test_a_function_writing_into_its_input_leaves_the_data_alone():
    from glmformula.terms.registry import unregister

    @gf.term_function
    def clip_in_place(x):
        x[x < 0] = 0.0
        return x

    try:
        t = (np.arange(5000) + 0.5) * 0.01
        x = nap.Tsd(t=t, d=np.sin(t), time_support=nap.IntervalSet(0, 50))
        keep = x.values.copy()
        spikes = nap.TsGroup({0: nap.Ts(np.sort(np.random.default_rng(0).uniform(0, 50, 500)))},
                             time_support=nap.IntervalSet(0, 50))
        dm = gf.design_matrix("spikes ~ clip_in_place(x) + x", {"spikes": spikes, "x": x},
                              bin_size=0.01)
        np.testing.assert_array_equal(x.values, keep)
        X = dm.to_numpy(intercept=False)
        np.testing.assert_allclose(X[:, 1], np.sin(dm.times), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(X[:, 0], np.maximum(np.sin(dm.times), 0), atol=1e-12)
    finally:
        unregister("clip_in_place")


def test_a_grid_inside_the_samples_is_matched_by_one_comparison():
    # samples on the grid's rate and phase that start before it and end after it: the centres
    # are consecutive samples, found without a search per centre, with the search's index
    grid = TimeGrid.from_epochs([2.0], [50.0], 0.01)
    times = (np.arange(6000) + 0.5) * 0.01
    index = sampling._consecutive_samples(times, grid.centers, 1e-9)
    np.testing.assert_array_equal(index, np.searchsorted(times, grid.centers - 1e-9))
    values = np.random.default_rng(1).standard_normal((len(times), 2))
    np.testing.assert_array_equal(sampled(times, values, grid), values[index])
    # one sample off the grid: not consecutive samples at every centre
    times[3000] += 0.003
    assert sampling._consecutive_samples(times, grid.centers, 1e-9) is None
