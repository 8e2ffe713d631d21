"""Fits shared by the results tests (each is a few seconds, so they are fitted once per session)."""

from __future__ import annotations

import warnings

import numpy as np
import pynapple as nap
import pytest

import glmformula as gf
from glmformula.bases import bspline, cyclic_bspline

#: The population model of the simulated head-direction cells. A light Ridge penalty: without it
#: some coupling filters of rarely co-firing pairs are nearly separated at 10 ms bins
#: (SeparationWarning) and the coupling matrix is mostly noise.
HD_FORMULA = ("spikes ~ cyclic(head_direction, 8) + history(4, log, window=100ms) "
              "+ coupling(all)")


@pytest.fixture(scope="session")
def hd_sim():
    """Simulated head-direction population (12 units, 200 s wake, 90 s sleep)."""
    return gf.datasets.head_direction(seed=1, duration=300.0)


@pytest.fixture(scope="session")
def hd_fit(hd_sim):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gf.fit(HD_FORMULA, hd_sim, bin_size="10ms", epochs="wake",
                      regularizer=gf.Ridge(1e-4))


@pytest.fixture(scope="session")
def maze():
    """Simulated linear track: unit 0 a place cell, unit 1 a speed cell (300 s)."""
    return gf.datasets.linear_maze(seed=3, duration=300.0)


@pytest.fixture(scope="session")
def place_fit():
    """2-D place cells (3 units, 300 s) fitted with a 25-column place map."""
    data = gf.datasets.place_2d(seed=2, n_units=3, duration=300.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return data, gf.fit("spikes ~ rcos(x, 5):rcos(y, 5)", data, bin_size="20ms")


@pytest.fixture(scope="session")
def injection_fit():
    """Simulated current clamp (5 sweeps of 20 s) fitted at 2 ms with a stimulus filter over
    200 ms and spike history over 100 ms."""
    data = gf.datasets.current_injection(seed=0, n_sweeps=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return data, gf.fit("spikes ~ filter(current, 10, window=200ms) "
                            "+ history(8, log, window=100ms)", data, bin_size="2ms")


@pytest.fixture(scope="session")
def make_lnp():
    """The simulator below, as a fixture (test modules cannot import conftest by name)."""
    return lnp_population


def lnp_population(seed: int, n_units: int = 40, n_bins: int = 20000, bin_size: float = 0.02):
    """Independent LNP units with a known tuning IN the span of the fitted bases.

    Every unit shares one angle and one speed trace and has its own true weights
    on ``cyclic(angle, 8)`` and ``bspline(speed, 5)`` (the latter on the speed's own range, as
    the fit will learn it). Counts are drawn per bin and passed as a TsdFrame of counts.

    Returns
    -------
    data : dict
        ``counts`` (TsdFrame), ``angle``, ``speed`` (Tsd at bin centres).
    truth : dict
        ``angle_weights`` (8, U), ``speed_weights`` (5, U), ``baseline`` (U,), ``speed_bounds``.
    """
    rng = np.random.default_rng(seed)
    t = (np.arange(n_bins) + 0.5) * bin_size
    angle = np.mod(np.cumsum(rng.normal(0.0, 0.15, n_bins)), 2 * np.pi)
    speed = np.abs(np.convolve(rng.normal(0, 1, n_bins + 99), np.ones(100) / 10, "valid")) * 10
    bounds = (float(speed.min()), float(speed.max()))
    angle_w = rng.normal(0.0, 0.6, (8, n_units))
    speed_w = rng.normal(0.0, 0.4, (5, n_units))
    baseline = np.log(rng.uniform(4.0, 12.0, n_units) * bin_size)
    eta = baseline + cyclic_bspline(angle, 8) @ angle_w + bspline(speed, 5, bounds=bounds) @ speed_w
    counts = rng.poisson(np.exp(eta))
    support = nap.IntervalSet(0.0, n_bins * bin_size)
    data = {"counts": nap.TsdFrame(t=t, d=counts.astype(float), columns=list(range(n_units)),
                                   time_support=support),
            "angle": nap.Tsd(t=t, d=angle, time_support=support),
            "speed": nap.Tsd(t=t, d=speed, time_support=support)}
    truth = {"angle_weights": angle_w, "speed_weights": speed_w, "baseline": baseline,
             "speed_bounds": bounds}
    return data, truth
