"""``res.tuning_curves(term)``: an xarray.DataArray laid out as pynapple.compute_tuning_curves's.

Same dims, coordinates (unit ids; bin centres to the last bit for the same bins and range) and
units (Hz), so that the two subtract bin by bin without renaming; the band rides along as the
coordinates ``lower`` and ``upper``. On simulated head-direction cells and on the real ADn/PoS
recording (skipped, with a message, where ../shared/data is absent) the shapes agree with
pynapple's for the tuned cells: correlation above 0.95.

A cell counts as *tuned* when the mean vector length of its pynapple tuning curve,
``|sum_b r_b exp(i theta_b)| / sum_b r_b``, exceeds 0.3 (the rule of
tests/results/test_real_head_direction.py).
"""

from __future__ import annotations

import warnings

import numpy as np
import pynapple as nap
import pytest
import xarray as xr

import glmformula as gf
from glmformula.bases import cyclic_bspline

TERM = "cyclic(head_direction, 12)"
TUNED = 0.3  # mean vector length of pynapple's curve


def mean_vector_length(tc: xr.DataArray) -> np.ndarray:
    rates = tc.values
    angles = tc.coords[tc.dims[1]].values
    return np.abs((rates * np.exp(1j * angles)).sum(axis=1)) / rates.sum(axis=1)


def shape_correlations(ours: xr.DataArray, theirs: xr.DataArray) -> np.ndarray:
    return np.array([np.corrcoef(ours.sel(unit=u).values, theirs.sel(unit=u).values)[0, 1]
                     for u in theirs.coords["unit"].values])


@pytest.fixture(scope="module")
def simulated():
    data = gf.datasets.head_direction(seed=4, duration=400.0, n_units=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = gf.fit(f"spikes ~ {TERM}", data, bin_size="25ms", epochs="wake")
    return data, res


def test_same_dims_coords_and_units_as_pynapple(simulated):
    data, res = simulated
    theirs = nap.compute_tuning_curves(data["spikes"], data["head_direction"], bins=12,
                                       range=(0, 2 * np.pi), epochs=data["wake"])
    ours = res.tuning_curves("head_direction", bins=12, range=(0, 2 * np.pi))
    assert isinstance(ours, xr.DataArray)
    assert ours.dims == theirs.dims == ("unit", "0")
    assert np.array_equal(ours.coords["unit"].values, theirs.coords["unit"].values)
    assert ours.coords["unit"].dtype == theirs.coords["unit"].dtype
    assert np.array_equal(ours.coords["0"].values, theirs.coords["0"].values)  # to the bit
    assert all(np.array_equal(a, b) for a, b in zip(ours.attrs["bin_edges"],
                                                    theirs.attrs["bin_edges"]))
    assert ours.attrs["units"] == "Hz" and ours.attrs["covariates"] == ["head_direction"]
    difference = ours - theirs                      # aligns: no broadcasting, no lost bins
    assert difference.dims == ("unit", "0") and difference.shape == theirs.shape
    assert np.all(np.isfinite(difference.values))
    # pynapple's edges passed back give the same array
    again = res.tuning_curves(TERM, bins=theirs.attrs["bin_edges"])
    assert np.array_equal(again.values, ours.values)
    assert np.array_equal(again.coords["0"].values, ours.coords["0"].values)


def test_values_are_the_model_rate_at_the_bin_centres(simulated):
    _, res = simulated
    tc = res.tuning_curves(TERM, bins=36)           # default range: a full period
    centres = tc.coords["0"].values
    assert np.allclose(centres, (np.arange(36) + 0.5) * 2 * np.pi / 36)
    weights = res.coef.loc[TERM].to_numpy(float)    # (12, units): a tuning-only model
    expected = np.exp(res.intercept.to_numpy(float)[None, :]
                      + cyclic_bspline(centres, 12) @ weights) / res.bin_size
    assert np.allclose(tc.values, expected.T, rtol=1e-10)
    assert np.all(tc.lower.values < tc.values) and np.all(tc.values < tc.upper.values)
    # res.curve(..., scale="rate") evaluates the same rate on its own grid
    frame = res.curve(TERM, scale="rate", n_points=36)
    grid = frame.index.to_numpy(float)
    rate = np.exp(res.intercept.to_numpy(float)[None, :]
                  + cyclic_bspline(grid, 12) @ weights) / res.bin_size
    for i, u in enumerate(res.unit_ids):
        assert np.allclose(frame[(u, "estimate")].to_numpy(), rate[:, i], rtol=1e-10)


def test_shapes_agree_with_pynapple_on_simulated_cells(simulated):
    data, res = simulated
    theirs = nap.compute_tuning_curves(data["spikes"], data["head_direction"], bins=24,
                                       epochs=data["wake"])          # pynapple's own range
    ours = res.tuning_curves(TERM, bins=theirs.attrs["bin_edges"])
    tuned = mean_vector_length(theirs) > TUNED
    r = shape_correlations(ours, theirs)
    assert tuned.sum() >= 3
    assert np.all(r[tuned] > 0.95), r


def test_feature_names_and_unit_selection(simulated):
    data, res = simulated
    theirs = nap.compute_tuning_curves(data["spikes"], data["head_direction"], bins=12,
                                       range=(0, 2 * np.pi), epochs=data["wake"],
                                       feature_names=["hd"])
    ours = res.tuning_curves(TERM, bins=12, range=(0, 2 * np.pi), feature_names=["hd"],
                             unit=[2, 0])
    assert ours.dims == theirs.dims == ("unit", "hd")
    assert list(ours.coords["unit"].values) == [2, 0]
    assert (ours - theirs).sizes == {"unit": 2, "hd": 12}


def test_a_map_over_two_covariates_matches_pynapple_on_a_tsdframe():
    data = gf.datasets.place_2d(seed=2, n_units=2, duration=150.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = gf.fit("spikes ~ rcos(x, 5):rcos(y, 5)", data, bin_size="20ms")
    xy = nap.TsdFrame(t=data["x"].t, d=np.column_stack([data["x"].values, data["y"].values]),
                      time_support=data["x"].time_support)
    theirs = nap.compute_tuning_curves(data["spikes"], xy, bins=[8, 6],
                                       range=[(0.1, 0.9), (0.2, 0.8)])
    ours = res.tuning_curves("rcos(x, 5):rcos(y, 5)", bins=[8, 6],
                             range=[(0.1, 0.9), (0.2, 0.8)])
    assert ours.dims == theirs.dims == ("unit", "0", "1")
    for dim in ("0", "1"):
        assert np.array_equal(ours.coords[dim].values, theirs.coords[dim].values)
    # the map at one bin is the model's rate there
    frame = res.curve("rcos(x, 5):rcos(y, 5)", scale="rate", n_points=3)
    assert frame.index.names == ["x", "y"] and ours.shape == (2, 8, 6)
    assert ours.attrs["covariates"] == ["x", "y"]


@pytest.fixture(scope="module")
def with_history():
    data = gf.datasets.head_direction(seed=4, duration=120.0, n_units=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gf.fit(f"spikes ~ {TERM} + history(3, log, window=100ms)", data,
                      bin_size="25ms", epochs="wake")


@pytest.mark.parametrize("kwargs, words", [
    ({"term": "history"}, ["filter over lag", "res.curve"]),
    ({"bins": 0}, ["bins must be a number of bins"]),
    ({"bins": [0.0, 1.0, 0.5]}, ["increase monotonically"]),
    ({"range": (1.0, 1.0)}, ["low < high"]),
    ({"feature_names": ["a", "b"]}, ["2 name(s) for 1 covariate"]),
    ({"feature_names": "hd"}, ["list of strings"]),
    ({"range": [(0, 1), (0, 2)]}, ["2 specification(s) for 1 covariate(s)"]),
])
def test_bad_arguments_are_refused(with_history, kwargs, words):
    res = with_history
    kwargs = {"term": TERM, **kwargs}
    with pytest.raises(gf.ResultError) as info:
        res.tuning_curves(kwargs.pop("term"), **kwargs)
    for word in words:
        assert word in str(info.value), str(info.value)


def test_real_head_direction_cells_agree_with_pynapple(hd_recording):
    """25 ms bins, cyclic(head_direction, 12) on the valid epochs; pynapple's 36 bins."""
    data = {"spikes": hd_recording["spikes"], "head_direction": hd_recording["head_direction"],
            "valid": hd_recording["valid"]}
    res = gf.fit(f"spikes ~ {TERM}", data, bin_size="25ms", epochs="valid")
    theirs = nap.compute_tuning_curves(hd_recording["spikes"], hd_recording["head_direction"],
                                       bins=36, epochs=hd_recording["valid"])
    ours = res.tuning_curves(TERM, bins=theirs.attrs["bin_edges"])
    assert ours.dims == theirs.dims
    assert np.array_equal(ours.coords["unit"].values, theirs.coords["unit"].values)
    assert np.array_equal(ours.coords["0"].values, theirs.coords["0"].values)
    assert (ours - theirs).shape == theirs.shape
    tuned = mean_vector_length(theirs) > TUNED
    r = shape_correlations(ours, theirs)
    print(f"{tuned.sum()} of {len(r)} cells tuned (mean vector length > {TUNED}); shape "
          f"correlation with pynapple: min {r[tuned].min():.3f}, median "
          f"{np.median(r[tuned]):.3f}; all cells: min {r.min():.3f}")
    assert tuned.sum() >= 20
    assert np.all(r[tuned] > 0.95)
