"""REML for the other observation families against R's mgcv (``gam(..., paraPen=,
method="REML")``) on our design and penalties: Bernoulli (logit link, no scale), gamma (log
link) and gaussian (identity link), whose scale is estimated as the strengths are chosen, and
the negative binomial, whose dispersion alternates with the strengths (mgcv at our final
dispersion, fixed: ``negbin(theta = 1 / a)``). Simulated data with known smooth tuning
(labelled simulated)."""

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
FORMULA = "y ~ cyclic(hd, 12) + bspline(x, 8)"


def _recording(family: str, seed: int, n_bins: int = 5000) -> dict:
    """A simulated response (counts of events for bernoulli; a signal for gamma and gaussian)
    driven by smooth tuning to an angle and a position."""
    rng = np.random.default_rng(seed)
    t = (np.arange(n_bins) + 0.5) * BIN
    hd = np.mod(np.cumsum(rng.normal(0, 0.2, n_bins)), 2 * np.pi)
    x = np.cumsum(rng.normal(0, 0.05, n_bins))
    x = (x - x.min()) / (x.max() - x.min())
    drive = 0.8 * np.cos(hd - 1.0) + 0.6 * np.sin(2 * np.pi * x)
    epochs = nap.IntervalSet(0.0, n_bins * BIN)
    data = {"hd": nap.Tsd(t, hd, time_support=epochs), "x": nap.Tsd(t, x, time_support=epochs)}
    if family == "negative_binomial":  # overdispersed counts: a = 0.5
        counts = rng.poisson(rng.gamma(2.0, 0.5 * np.exp(np.log(0.8) + drive)))
        times = np.repeat(t, counts) + rng.uniform(-BIN / 2, BIN / 2, counts.sum())
        data["y"] = nap.TsGroup({0: nap.Ts(np.sort(times))}, time_support=epochs)
    elif family == "bernoulli":
        fired = rng.uniform(size=n_bins) < 1.0 / (1.0 + np.exp(-(-1.0 + drive)))
        times = t[fired] + rng.uniform(-BIN / 4, BIN / 4, fired.sum())
        data["y"] = nap.TsGroup({0: nap.Ts(np.sort(times))}, time_support=epochs)
    elif family == "gamma":
        data["y"] = nap.Tsd(t, rng.gamma(4.0, np.exp(0.3 + drive) / 4.0), time_support=epochs)
    else:
        data["y"] = nap.Tsd(t, 1.0 + drive + rng.normal(0, 0.8, n_bins), time_support=epochs)
    return data


@pytest.mark.parametrize("family, seed", [("bernoulli", 1), ("gamma", 2), ("gaussian", 3),
                                          ("negative_binomial", 4)])
def test_selected_strengths_edf_and_weights_match_mgcv(family, seed):
    data = _recording(family, seed)
    res = gf.fit(FORMULA, data, bin_size=BIN, family=family)
    theta = 1.0 / res.dispersion[0] if family == "negative_binomial" else None
    setup, oracle, mgcv_weights, n = fit_our_design(FORMULA, data, BIN, family=family,
                                                    theta=theta)
    assert res.n_rows == n
    # the scale families: our scale is Pearson's over (rows - edf) at every iteration where
    # mgcv's REML estimates it with the strengths; both are within a fraction of a percent
    assert_matches_mgcv(res, setup, oracle, mgcv_weights)
    if family in ("gamma", "gaussian"):
        np.testing.assert_allclose(res.dispersion[0], oracle.scale, rtol=0.02)
    if family == "negative_binomial":  # the simulated dispersion, within its sampling error
        assert 0.35 < res.dispersion[0] < 0.7
