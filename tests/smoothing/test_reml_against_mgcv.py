"""Smoothness selection against R's mgcv (the oracle): on the same design and penalty matrices,
passed to mgcv as ``paraPen`` with ``method="REML"``, glmformula's ``smoothing="auto"`` selects
the same log-strengths (within 0.1), effective degrees of freedom (within 2%) and weights
(within 1e-3 of their scale), for a Poisson single unit, a cyclic term, a 2-margin tensor
product and a history filter. Skips where ``Rscript`` with mgcv is absent."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pynapple as nap
import pytest

import glmformula as gf

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # importlib mode: no sibling imports otherwise

from mgcv_oracle import assert_matches_mgcv, fit_our_design, requires_mgcv  # noqa: E402

pytestmark = requires_mgcv

BIN = 0.05  # s


def _recording(seed: int, n_bins: int = 6000, history: bool = False):
    """One simulated unit driven by smooth tuning to x (linear), hd (angle) and y."""
    rng = np.random.default_rng(seed)
    t = (np.arange(n_bins) + 0.5) * BIN
    x = np.cumsum(rng.normal(0, 0.05, n_bins))
    x = (x - x.min()) / (x.max() - x.min())
    y = np.cumsum(rng.normal(0, 0.05, n_bins))
    y = (y - y.min()) / (y.max() - y.min())
    hd = np.mod(np.cumsum(rng.normal(0, 0.2, n_bins)), 2 * np.pi)
    log_rate = (np.log(8.0 * BIN) + 0.8 * np.sin(2 * np.pi * x) + 0.6 * np.cos(hd - 1.0)
                + 0.5 * np.cos(3 * y) * x)
    counts = np.zeros(n_bins)
    past = np.zeros(n_bins)
    for i in range(n_bins):
        drive = log_rate[i] - (1.2 * past[i] if history else 0.0)
        counts[i] = rng.poisson(np.exp(drive))
        if history and i + 1 < n_bins:  # refractory decay over ~3 bins
            past[i + 1:i + 4] += counts[i] * np.array([1.0, 0.5, 0.25])[:n_bins - i - 1]
    spikes = np.repeat(t, counts.astype(int)) + rng.uniform(-BIN / 2, BIN / 2, int(counts.sum()))
    epochs = nap.IntervalSet(0.0, n_bins * BIN)
    return {"spikes": nap.TsGroup({0: nap.Ts(np.sort(spikes))}, time_support=epochs),
            "x": nap.Tsd(t, x, time_support=epochs), "y": nap.Tsd(t, y, time_support=epochs),
            "hd": nap.Tsd(t, hd, time_support=epochs)}


@pytest.mark.parametrize("formula, seed", [
    ("spikes ~ bspline(x, 12)", 1),
    ("spikes ~ cyclic(hd, 20)", 2),
    ("spikes ~ bspline(x, 5):bspline(y, 5)", 3),
    ("spikes ~ history(8, log, window=800ms)", 4),
])
def test_selected_strengths_edf_and_weights_match_mgcv(formula, seed):
    data = _recording(seed, history="history" in formula)
    setup, oracle, mgcv_weights, n = fit_our_design(formula, data, BIN)
    res = gf.fit(formula, data, bin_size=BIN)
    assert res.n_rows == n
    assert_matches_mgcv(res, setup, oracle, mgcv_weights)
