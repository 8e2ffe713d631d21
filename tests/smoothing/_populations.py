"""Simulated head-direction populations for the REML tests (pynapple objects, as users pass)."""

from __future__ import annotations

import numpy as np
import pynapple as nap


def head_direction_population(seed: int, n_bins: int, n_units: int, bin_size: float,
                              rate: float, depth: float, silent: bool = False) -> dict:
    """``n_units`` cells tuned to a random-walk angle ``hd`` (preferred directions evenly
    spaced): ``rate`` spikes/s at the mean, log-rate modulation ``depth``; spike times jittered
    within their bin. ``silent`` adds a unit without spikes."""
    rng = np.random.default_rng(seed)
    t = (np.arange(n_bins) + 0.5) * bin_size
    hd = np.mod(np.cumsum(rng.normal(0, 0.2, n_bins)), 2 * np.pi)
    groups = {}
    for u in range(n_units):
        counts = rng.poisson(np.exp(np.log(rate * bin_size)
                                    + depth * np.cos(hd - 2 * np.pi * u / n_units)))
        groups[u] = nap.Ts(np.sort(np.repeat(t, counts) + rng.uniform(
            -bin_size / 2, bin_size / 2, counts.sum())))
    if silent:
        groups[n_units] = nap.Ts(np.array([]))
    epochs = nap.IntervalSet(0, n_bins * bin_size)
    return {"spikes": nap.TsGroup(groups, time_support=epochs),
            "hd": nap.Tsd(t, hd, time_support=epochs)}
