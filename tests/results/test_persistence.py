"""save / load_result: every field back exactly, and the loaded model predicts identically."""

from __future__ import annotations

import json
import zipfile

import attrs
import numpy as np
import pandas as pd
import pytest

import glmformula as gf
from glmformula.results import CovariateRange
from glmformula.results.persistence import save_result


def _assert_same(a, b):
    for field in attrs.fields(type(a)):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if field.name in ("spec", "diagnostics"):  # the result's parts, field by field
            _assert_same(x, y)
        elif field.name == "smoothing_fit":
            assert (x is None) == (y is None)
            if x is not None:
                _assert_same(x, y)
        elif field.name == "edf":  # of the smoothing record: term -> per-unit values
            assert list(x) == list(y) and all(np.array_equal(x[k], y[k]) for k in x)
        elif field.name == "formula":
            assert str(x) == str(y) and x == y
        elif field.name == "state":
            assert list(x) == list(y)
            for key in x:
                assert len(x[key]) == len(y[key])
                for u, v in zip(x[key], y[key]):
                    assert np.array_equal(u, v), key
        elif field.name == "covariate_ranges":
            assert list(x) == list(y)
            for key in x:
                assert np.array_equal(x[key].low, y[key].low)
                assert np.array_equal(x[key].high, y[key].high)
                assert x[key].interval == y[key].interval
        elif field.name == "unit_columns":
            assert all(np.array_equal(u, v) for u, v in zip(x, y)) and len(x) == len(y)
        elif field.name == "covariance":
            assert np.array_equal(np.asarray(x), np.asarray(y))
        elif field.name == "regularizer":
            assert type(x) is type(y)
            assert getattr(x, "strength", None) == getattr(y, "strength", None)
        elif isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True), field.name
        elif isinstance(x, float) and np.isnan(x):
            assert np.isnan(y), field.name
        else:
            assert x == y, field.name


def test_population_with_history_and_coupling_round_trips_exactly(hd_sim, hd_fit, tmp_path):
    path = hd_fit.save(tmp_path / "hd")
    assert path.suffix == ".npz"
    loaded = gf.load_result(path)
    _assert_same(hd_fit, loaded)
    pd.testing.assert_frame_equal(hd_fit.coef, loaded.coef)
    # Predictions on new data (the sleep epoch, on the internal heading) are identical.
    sleep = {"spikes": hd_sim["spikes"], "head_direction": hd_sim.truth["virtual_heading"]}
    a, b = hd_fit.predict(sleep), loaded.predict(sleep)
    assert np.array_equal(a.values, b.values) and np.array_equal(a.t, b.t)
    for term in ("cyclic(head_direction, 8)", "history", "coupling"):
        pd.testing.assert_frame_equal(hd_fit.curve(term), loaded.curve(term), check_exact=True)
    pd.testing.assert_frame_equal(hd_fit.coupling_matrix(), loaded.coupling_matrix())
    pd.testing.assert_frame_equal(hd_fit.summary(), loaded.summary())
    assert np.array_equal(hd_fit.simulate(sleep, seed=4).values,
                          loaded.simulate(sleep, seed=4).values)


def test_covariate_ranges_round_trip_and_curves_of_bare_covariates(maze, tmp_path):
    res = gf.fit("spikes ~ speed + log(speed) + run", maze, bin_size="20ms")
    assert set(res.covariate_ranges) == {"speed", "run"}
    assert res.covariate_ranges["run"].interval and not res.covariate_ranges["speed"].interval
    loaded = gf.load_result(res.save(tmp_path / "maze.npz"))
    _assert_same(res, loaded)
    pd.testing.assert_frame_equal(res.curve("log(speed)"), loaded.curve("log(speed)"),
                                  check_exact=True)
    indicator = loaded.curve("run", scale="log")
    assert list(indicator.index) == [0.0, 1.0]
    assert indicator.loc[1.0, (0, "estimate")] == pytest.approx(res.coef.loc[("run", ""), 0])


def test_a_version_1_file_still_loads(hd_fit, tmp_path):
    """Files written before covariate ranges were kept load; curves needing them say so."""
    path = save_result(attrs.evolve(hd_fit, spec=attrs.evolve(hd_fit.spec, covariate_ranges={})),
                       tmp_path / "old.npz")
    with zipfile.ZipFile(path) as archive:
        metadata = json.loads(np.lib.format.read_array(archive.open("metadata.npy")).tobytes())
    metadata["version"] = 1
    del metadata["covariate_ranges"]
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    arrays["metadata"] = np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8)
    np.savez(path, **arrays)
    old = gf.load_result(path)
    assert old.covariate_ranges == {}
    assert np.array_equal(old.weights, hd_fit.weights)
    # cyclic curves span the period and need no recorded range
    pd.testing.assert_frame_equal(old.curve("head_direction"), hd_fit.curve("head_direction"))


def test_covariate_range_values(hd_fit):
    rng = hd_fit.covariate_ranges["head_direction"]
    assert isinstance(rng, CovariateRange) and rng.n_columns == 1
    assert 0 <= rng.low[0] < 0.05 and 2 * np.pi - 0.05 < rng.high[0] < 2 * np.pi
