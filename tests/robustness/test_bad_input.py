"""The bad-input catalogue of docs/robustness.md, one test (or a few) per class of bad input.

Responses that are not spike counts, covariates with inf, constant values, unsorted or
duplicate timestamps, different sampling rates, gaps; empty, overlapping, touching and too
short epochs; bin sizes and windows that do not fit; units with no spikes; data too short for
the folds; rank-deficient and separable designs; float32 overflow. Each either raises a
``gf.FormulaError`` subclass that names the problem, or is handled as documented with finite
results and only the documented warnings.

Fits share a few small problem shapes so that the JAX solver compiles only a few times.
"""

from __future__ import annotations

import warnings

import numpy as np
import pynapple as nap
import pytest

import glmformula as gf
from glmformula.errors import NoSpikesWarning, RankDeficientWarning, SeparationWarning

T_END = 20.0
BIN = 0.01


def recording(seed: int = 0, *, rates=(20.0, 8.0, 3.0)) -> dict:
    """Units firing at ``rates`` (Hz) over 20 s, a covariate at 100 Hz, an angle at 40 Hz."""
    rng = np.random.default_rng(seed)
    support = nap.IntervalSet(0.0, T_END)
    spikes = nap.TsGroup({u: nap.Ts(np.sort(rng.uniform(0, T_END, rng.poisson(r * T_END))))
                          for u, r in enumerate(rates)}, time_support=support)
    t = np.arange(0.0, T_END, 0.01)
    x = nap.Tsd(t=t, d=rng.normal(0.0, 1.0, len(t)), time_support=support)
    ta = np.arange(0.0, T_END, 0.025)
    angle = nap.Tsd(t=ta, d=np.mod(np.cumsum(rng.normal(0, 0.2, len(ta))), 2 * np.pi),
                    time_support=support)
    return {"spikes": spikes, "x": x, "angle": angle}


def fit_quietly(*args, expect=(), **kwargs):
    """gf.fit, asserting that the warnings raised are exactly among ``expect``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = gf.fit(*args, **kwargs)
    kinds = {w.category for w in caught}
    assert kinds <= set(expect), [str(w.message) for w in caught]
    assert np.isfinite(res.weights).all() and np.isfinite(res.intercepts).all()
    assert np.isfinite(res.log_likelihood_units).all()
    return res, caught


def counts_frame(bin_size: float, columns=(0, 1), seed: int = 1, start: float = 0.0,
                 stop: float = T_END, **kw) -> nap.TsdFrame:
    rng = np.random.default_rng(seed)
    t = np.arange(start, stop - 1e-9, bin_size) + bin_size / 2
    return nap.TsdFrame(t=t, d=rng.poisson(1.0, (len(t), len(columns))).astype(float),
                        columns=list(columns), **kw)


# ---- responses that are not spike counts ------------------------------------------------------

@pytest.mark.parametrize("bad", [-1.0, 0.5, np.nan, np.inf])
def test_response_with_negative_fractional_or_missing_counts_is_refused(bad):
    data = recording()
    counts = counts_frame(BIN)
    values = counts.values.copy()
    values[10, 1] = bad
    data["counts"] = nap.TsdFrame(t=counts.t, d=values, columns=[0, 1])
    with pytest.raises(gf.DataError, match="spike counts|'counts' contains infinite"):
        gf.design_matrix("counts ~ x", data, bin_size=BIN)


@pytest.mark.parametrize("response, match", [("x ~ angle", "spike counts"),
                                             ("ep ~ x", "must be spike"),
                                             ("spikes ~ spikes", "response")])
def test_covariates_and_intervals_are_not_responses(response, match):
    data = recording()
    data["ep"] = nap.IntervalSet(0, 10)
    with pytest.raises(gf.DataError, match=match):
        gf.design_matrix(response, data, bin_size=BIN)


def test_counts_finer_than_the_bins_are_summed_not_averaged():
    """Regression: counts per 5 ms were averaged (and interpolated) onto 10 ms bins."""
    data = recording()
    fine = data["spikes"].count(0.005, nap.IntervalSet(0, T_END))
    data["counts"] = nap.TsdFrame(t=fine.t, d=np.asarray(fine.values, float),
                                  columns=list(fine.columns))
    X = gf.design_matrix("counts ~ x", data, bin_size=BIN)
    Y = gf.design_matrix("spikes ~ x", data, bin_size=BIN)
    assert np.array_equal(X.counts[X.valid], Y.counts[Y.valid])
    assert X.counts.sum() == sum(len(data["spikes"][u]) for u in data["spikes"].index)


@pytest.mark.parametrize("counts_bin, bin_size", [(0.01, 0.025), (0.02, 0.01)])
def test_counts_that_do_not_fit_the_bins_are_refused(counts_bin, bin_size):
    data = recording()
    data["counts"] = counts_frame(counts_bin)
    with pytest.raises(gf.DataError, match="do not fit inside"):
        gf.design_matrix("counts ~ x", data, bin_size=bin_size)


def test_counts_with_repeated_timestamps_are_refused():
    data = recording()
    c = counts_frame(BIN)
    t = np.sort(np.concatenate([c.t, c.t[:5]]))
    data["counts"] = nap.TsdFrame(t=t, d=np.ones((len(t), 2)), columns=[0, 1])
    with pytest.raises(gf.DataError, match="duplicate"):
        gf.design_matrix("counts ~ x", data, bin_size=BIN)


def test_unit_selection_of_counts_picks_the_columns():
    """Regression: ``counts[1]`` kept every column (and crashed with history)."""
    data = recording()
    data["counts"] = counts_frame(BIN, columns=(0, 1))
    X = gf.design_matrix("counts[1] ~ history(2, log, window=30ms)", data, bin_size=BIN)
    assert X.unit_ids == (1,) and X.counts.shape[1] == 1
    assert np.array_equal(X.counts[:, 0], data["counts"].values[:, 1])
    with pytest.raises(gf.DataError, match=r"unit id\(s\) \[5\]"):
        gf.design_matrix("counts[5] ~ x", data, bin_size=BIN)


def test_bins_the_counts_do_not_cover_are_dropped_not_nan():
    """Regression: a grid bin past the end of the counts got a NaN count and broke the fit."""
    data = recording()
    data["counts"] = counts_frame(BIN, stop=T_END - 0.01,
                                  time_support=nap.IntervalSet(0.0, T_END - 0.01))
    X = gf.design_matrix("counts ~ x + history(3, log, window=50ms)", data, bin_size=BIN,
                         epochs=nap.IntervalSet(0.0, T_END))
    assert X.dropped["missing"] == 1
    assert np.isfinite(X.to_numpy()).all() and np.isfinite(X.counts).all()
    fit_quietly("counts ~ x", data, bin_size=BIN, epochs=nap.IntervalSet(0.0, T_END))


# ---- covariates -------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_infinite_covariate_is_an_error(bad):
    data = recording()
    values = data["x"].values.copy()
    values[7] = bad
    data["x"] = nap.Tsd(t=data["x"].t, d=values)
    with pytest.raises(gf.DataError, match="'x' contains infinite values"):
        gf.design_matrix("spikes ~ x", data, bin_size=BIN)


def test_missing_covariate_values_drop_rows_and_the_fit_stays_finite():
    data = recording()
    values = data["x"].values.copy()
    values[300:400] = np.nan
    data["x"] = nap.Tsd(t=data["x"].t, d=values)
    X = gf.design_matrix("spikes ~ x", data, bin_size=BIN)
    assert 95 <= X.dropped["missing"] <= 102
    res, _ = fit_quietly("spikes ~ x", data, bin_size=BIN)
    assert res.n_rows == X.n_rows


def test_unsorted_timestamps_are_an_error():
    """pynapple sorts timestamps when an object is made (with a warning, and without moving
    the values along); an object whose times were changed afterwards is refused."""
    data = recording()
    data["x"].t[[10, 11]] = data["x"].t[[11, 10]]    # the arrays are writable
    with pytest.raises(gf.DataError, match="timestamps of 'x' are not sorted"):
        gf.design_matrix("spikes ~ x", data, bin_size=BIN)


def test_duplicate_timestamps_are_averaged():
    """Samples sharing a timestamp count once, with their mean: a slow covariate whose samples
    are repeated is still interpolated (regression: it was taken for a fast one and 97 % of the
    rows were dropped), and an angle is averaged on the circle."""
    rng = np.random.default_rng(3)
    data = recording()
    ts = np.arange(0.0, T_END, 0.3)
    slow = rng.normal(size=len(ts))
    data["slow"] = nap.Tsd(t=ts, d=slow)
    data["twice"] = nap.Tsd(t=np.repeat(ts, 2), d=np.repeat(slow, 2))
    noise = rng.normal(0, 0.5, len(ts))
    data["pairs"] = nap.Tsd(t=np.repeat(ts, 2), d=np.stack([slow - noise, slow + noise], 1).ravel())
    a = np.mod(np.cumsum(rng.normal(0, 0.5, len(ts))), 2 * np.pi)
    data["a"] = nap.Tsd(t=ts, d=a)
    data["a_pairs"] = nap.Tsd(t=np.repeat(ts, 2), d=np.mod(
        np.stack([a - 0.2, a + 0.2], 1).ravel(), 2 * np.pi))
    reference = gf.design_matrix("spikes[0] ~ slow + cyclic(a, 6)", data, bin_size=BIN)
    for formula in ("spikes[0] ~ twice + cyclic(a_pairs, 6)",
                    "spikes[0] ~ pairs + cyclic(a_pairs, 6)"):
        X = gf.design_matrix(formula, data, bin_size=BIN)
        assert X.n_rows == reference.n_rows
        np.testing.assert_allclose(X.to_numpy(), reference.to_numpy(), atol=1e-9)


def test_constant_covariates_give_finite_fits():
    """A constant covariate duplicates the intercept (a documented RankDeficientWarning); a
    basis on it spans a range of width 1 around the value; scale() leaves it at 0."""
    data = recording()
    data["c"] = nap.Tsd(t=data["x"].t, d=np.full(len(data["x"]), 4.2))
    X = gf.design_matrix("spikes ~ c + center(c) + scale(c) + bspline(c, 5) + rcos(c, 3)",
                         data, bin_size=BIN)
    M = X.to_numpy()
    assert np.isfinite(M).all() and np.all(M[:, 1] == 4.2)
    assert np.all(np.abs(M[:, 2]) < 1e-12) and np.all(np.abs(M[:, 3]) < 1e-12)
    fit_quietly("spikes ~ c", data, bin_size=BIN, expect=(RankDeficientWarning,))
    res, _ = fit_quietly("spikes ~ scale(c) + x", data, bin_size=BIN,
                         expect=(RankDeficientWarning,))
    assert res.coef.loc["scale(c)"].abs().to_numpy().max() == 0.0  # an all-zero column


def test_different_sampling_rates_in_one_formula():
    """Faster than the bins: averaged over each bin; slower: interpolated at the bin centres
    (circularly for cyclic); irregular samples: interpolated too."""
    rng = np.random.default_rng(4)
    data = recording()
    support = nap.IntervalSet(0.0, T_END)
    tf = np.arange(0.0, T_END, 0.001)
    data["fast"] = nap.Tsd(t=tf, d=np.sin(7 * tf) + rng.normal(0, 0.1, len(tf)),
                           time_support=support)
    ts = np.arange(0.0, T_END + 0.25, 0.25)
    data["slow"] = nap.Tsd(t=ts, d=np.cos(ts), time_support=support)
    ti = np.sort(rng.uniform(0.0, T_END, 300))
    data["irregular"] = nap.Tsd(t=ti, d=np.sin(ti), time_support=support)
    X = gf.design_matrix("spikes[0] ~ fast + slow + irregular + angle", data, bin_size=BIN)
    t = X.times
    M = X.to_numpy(intercept=False)
    fast = data["fast"].bin_average(BIN, support)
    np.testing.assert_allclose(M[:, 0], np.interp(t, fast.t, fast.values), atol=1e-9)
    np.testing.assert_allclose(M[:, 1], np.interp(t, ts, np.cos(ts)), atol=1e-12)
    np.testing.assert_allclose(M[:, 2], np.interp(t, ti, np.sin(ti)), atol=1e-12)
    angle = data["angle"]
    Xc = gf.design_matrix("spikes[0] ~ cyclic(angle, 6)", data, bin_size=BIN)
    expected = np.mod(np.interp(Xc.times, angle.t, np.unwrap(angle.values)), 2 * np.pi)
    from glmformula.bases import cyclic_bspline
    np.testing.assert_allclose(Xc.to_numpy(intercept=False), cyclic_bspline(expected, 6),
                               atol=1e-9)
    # samples irregular enough to leave bins without any: those bins interpolate, never NaN
    assert np.isfinite(M).all()


def test_covariate_gaps_and_partial_cover():
    data = recording()
    gap = nap.IntervalSet([0.0, 12.0], [8.0, T_END])
    data["gappy"] = nap.Tsd(t=data["x"].t, d=data["x"].values, time_support=gap)
    # the default epochs are the intersection of the supports: the gap is left out
    X = gf.design_matrix("spikes ~ gappy", data, bin_size=BIN)
    assert len(X.grid.starts) == 2
    assert X.dropped["missing"] <= 2  # the last centre of each piece lies past its last sample
    # epochs that reach into the gap: the covariate does not cover them
    with pytest.raises(gf.DataError, match="'gappy' does not cover the epochs"):
        gf.design_matrix("spikes ~ gappy", data, bin_size=BIN,
                         epochs=nap.IntervalSet(0.0, T_END))
    data["empty"] = nap.Tsd(t=np.array([]), d=np.array([]))
    with pytest.raises(gf.DataError):
        gf.design_matrix("spikes ~ empty", data, bin_size=BIN)


# ---- epochs -----------------------------------------------------------------------------------

def test_empty_epochs_are_an_error():
    data = recording()
    data["none"] = nap.IntervalSet(start=np.array([]), end=np.array([]))
    with pytest.raises(gf.DataError, match="empty"):
        gf.design_matrix("spikes ~ x", data, bin_size=BIN, epochs="none")
    with pytest.raises(gf.DataError, match="does not cover"):
        gf.design_matrix("spikes ~ x", data, bin_size=BIN, epochs=nap.IntervalSet(50, 60))


def test_overlapping_epochs():
    data = recording()
    with pytest.warns(UserWarning, match="Joining them"):  # pynapple's, when made
        joined = nap.IntervalSet([1.0, 4.0], [6.0, 9.0])
    X = gf.design_matrix("spikes ~ x", data, bin_size=BIN, epochs=joined)
    assert len(X.grid.starts) == 1 and X.n_rows == 800
    forced = nap.IntervalSet([1.0, 7.0], [6.0, 9.0])
    forced.values[0, 1] = 8.0                 # overlapping arrays, bypassing pynapple
    with pytest.raises(gf.DataError, match="the epochs overlap"):
        gf.design_matrix("spikes ~ x", data, bin_size=BIN, epochs=forced)


def test_touching_epochs_are_separate_pieces():
    data = recording()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        touching = nap.IntervalSet([0.0, 5.0], [5.0, 10.0])
    X = gf.design_matrix("spikes ~ history(3, log, window=50ms)", data, bin_size=BIN,
                         epochs=touching)
    assert X.dropped["window"] == 5 * len(X.grid.starts)  # no window reaches across a border


def test_epochs_shorter_than_a_bin():
    data = recording()
    mixed = nap.IntervalSet([0.0, 3.0], [0.005, 5.0])
    X = gf.design_matrix("spikes ~ x", data, bin_size=BIN, epochs=mixed)
    assert len(X.grid.starts) == 1 and X.n_rows == 200
    with pytest.raises(gf.DataError, match="longer than every epoch"):
        gf.design_matrix("spikes ~ x", data, bin_size=BIN,
                         epochs=nap.IntervalSet([0.0, 3.0], [0.005, 3.004]))


# ---- bin sizes and windows --------------------------------------------------------------------

@pytest.mark.parametrize("bin_size", [0, -0.01, float("nan"), float("inf"), True, "10 ms",
                                      "10parsecs", "fast", [0.01], None, "-5ms", "0s"])
def test_bin_sizes_that_are_not_durations(bin_size):
    with pytest.raises(gf.DataError, match="bin_size"):
        gf.design_matrix("spikes ~ x", recording(), bin_size=bin_size)


@pytest.mark.parametrize("formula, kwargs, error, match", [
    ("spikes ~ x", {"bin_size": 30.0}, gf.DataError, "longer than every epoch"),
    ("spikes ~ history(3, log, window=5ms)", {}, gf.TermArgumentError, "shorter than one bin"),
    ("spikes ~ filter(x, 3, window=1ms)", {}, gf.TermArgumentError, "shorter than one bin"),
    ("spikes ~ lag(x, 2ms)", {}, gf.TermArgumentError, "shorter than one bin"),
    ("spikes ~ history(3, log, window=20s)", {}, gf.DataError, "as long as every epoch"),
    ("spikes ~ lag(x, 25s)", {}, gf.DataError, "as long as every epoch"),
    ("spikes ~ coupling(all, 3, log, window=1min)", {}, gf.DataError, "as long as every epoch"),
    ("spikes ~ history(1)", {}, gf.TermArgumentError, "k >= 2"),
    ("spikes ~ rcos(x, 1)", {}, gf.TermArgumentError, "k >= 2"),
])
def test_windows_and_bins_that_do_not_fit(formula, kwargs, error, match):
    options = {"bin_size": BIN, **kwargs}
    with pytest.raises(error, match=match):
        gf.design_matrix(formula, recording(), **options)


# ---- units with no spikes, folds, rank, separation, overflow ----------------------------------

def test_units_with_no_spikes():
    data = recording(rates=(20.0, 0.0, 8.0))
    res, caught = fit_quietly("spikes ~ x + cyclic(angle, 6)", data, bin_size=BIN,
                              expect=(NoSpikesWarning,))
    assert any("units 1 " in str(w.message) for w in caught)
    assert np.all(res.weights[:, 1] == 0.0)
    # the other units are fitted as if the silent one were not there
    alone = recording(rates=(20.0, 0.0, 8.0))
    alone["spikes"] = nap.TsGroup({0: data["spikes"][0], 2: data["spikes"][2]},
                                  time_support=data["spikes"].time_support)
    other, _ = fit_quietly("spikes ~ x + cyclic(angle, 6)", alone, bin_size=BIN)
    np.testing.assert_allclose(res.weights[:, [0, 2]], other.weights, rtol=1e-6, atol=1e-8)
    silent = recording(rates=(0.0, 0.0, 0.0))
    res, _ = fit_quietly("spikes ~ x", silent, bin_size=BIN, expect=(NoSpikesWarning,))
    res, _ = fit_quietly("spikes ~ 1", silent, bin_size=BIN, expect=(NoSpikesWarning,))


def test_data_too_short_for_the_folds():
    data = recording()
    with pytest.raises(gf.DataError, match="use fewer folds"):
        gf.compare({"a": "spikes ~ 1", "b": "spikes ~ x"}, data, bin_size=BIN,
                   epochs=nap.IntervalSet(0.0, 0.3), cv=5)


def test_rank_deficient_design():
    data = recording()
    data["x2"] = nap.Tsd(t=data["x"].t, d=2.0 * data["x"].values - 1.0)
    fit_quietly("spikes ~ x + x2", data, bin_size=BIN, expect=(RankDeficientWarning,))
    fit_quietly("spikes ~ x + x2", data, bin_size=BIN, regularizer=gf.Ridge(1e-3))


def test_perfectly_separable_design():
    """A feature active only in bins where unit 0 never fires: its MLE weight is -inf."""
    data = recording()
    X = gf.design_matrix("spikes ~ 1", data, bin_size=BIN)
    silent = np.flatnonzero(X.counts[:, 0] == 0)[::7]
    bump = np.zeros(X.grid.n_rows)
    bump[silent] = 1.0
    data["bump"] = nap.Tsd(t=X.grid.centers, d=bump, time_support=nap.IntervalSet(0, T_END))
    res, caught = fit_quietly("spikes ~ bump + x", data, bin_size=BIN,
                              expect=(SeparationWarning, gf_convergence()))
    assert any(issubclass(w.category, SeparationWarning) and "units 0" in str(w.message)
               for w in caught)
    assert res.coef.loc[("bump", ""), 0] < -15   # ran off, stopped at a finite value
    res, _ = fit_quietly("spikes ~ bump + x", data, bin_size=BIN, regularizer=gf.Ridge(1e-3))
    assert -15 < res.coef.loc[("bump", ""), 0] < 0


def gf_convergence():
    from glmformula.errors import ConvergenceWarning
    return ConvergenceWarning


def test_float32_overflow():
    """Values a float32 design cannot hold are refused, naming the column (regression: they
    became inf in the design); large rates in a float32 fit stay finite."""
    data = recording()
    data["big"] = nap.Tsd(t=data["x"].t, d=data["x"].values * 1e30)
    with pytest.raises(gf.DataError, match=r"'pow\(big, 2\)' has values beyond the float32"):
        gf.design_matrix("spikes ~ pow(big, 2)", data, bin_size=BIN, dtype="float32")
    X = gf.design_matrix("spikes ~ pow(big, 2)", data, bin_size=BIN, dtype="float64")
    assert np.isfinite(X.to_numpy()).all()
    data["steep"] = nap.Tsd(t=data["x"].t, d=data["x"].values * 40.0)
    fit_quietly("spikes ~ steep", data, bin_size=BIN, dtype="float32",
                expect=(SeparationWarning, gf_convergence(), RankDeficientWarning))


@pytest.mark.parametrize("chunk_size", [None, 500])
def test_columns_too_large_for_the_solver(chunk_size):
    """A column near 1e19 made the solver return NaN weights (its squares overflow in the
    Hessian sums): fits refuse columns beyond 1e15, naming them; designs keep them."""
    data = recording()
    data["huge"] = nap.Tsd(t=data["x"].t, d=data["x"].values * 1e19)
    X = gf.design_matrix("spikes ~ huge", data, bin_size=BIN)
    assert np.isfinite(X.to_numpy()).all()
    with pytest.raises(gf.FitError, match=r"(?s)'huge' reach .*rescale"):
        gf.fit("spikes ~ huge", data, bin_size=BIN, chunk_size=chunk_size)
    data["large"] = nap.Tsd(t=data["x"].t, d=data["x"].values * 1e12)
    res, _ = fit_quietly("spikes ~ large", data, bin_size=BIN, expect=(SeparationWarning,))
    assert np.isfinite(res.weights).all() and np.isfinite(res.standard_errors().to_numpy()).all()
