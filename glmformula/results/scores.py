"""Goodness of fit for Poisson spike-count models (pure functions on arrays).

Log-likelihoods are in nats and include the ``-log(y!)`` term, so they are comparable with
statsmodels' ``llf``. Bits per spike compare a model with a homogeneous (mean-rate) Poisson
model of the same counts: ``(LL - LL_mean) / (n_spikes * ln 2)``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import gammaln, xlogy

from ..errors import FormulaError


def poisson_log_likelihood(counts: np.ndarray, expected: np.ndarray,
                           weights: np.ndarray | None = None) -> np.ndarray:
    """Per-unit Poisson log-likelihood (nats): sum_t w_t (y log mu - mu - log y!)."""
    counts = np.asarray(counts, float)
    expected = np.asarray(expected, float)
    terms = xlogy(counts, expected) - expected - gammaln(counts + 1)
    if weights is not None:
        terms = terms * np.asarray(weights, float).reshape(-1, *([1] * (terms.ndim - 1)))
    return terms.sum(axis=0)


def mean_rate_log_likelihood(counts: np.ndarray, weights: np.ndarray | None = None):
    """Log-likelihood of the homogeneous model whose rate is each unit's mean count."""
    counts = np.asarray(counts, float)
    w = np.ones(counts.shape[0]) if weights is None else np.asarray(weights, float)
    mean = (w @ counts) / w.sum()
    return poisson_log_likelihood(counts, np.broadcast_to(mean, counts.shape), w)


def saturated_log_likelihood(counts: np.ndarray, weights: np.ndarray | None = None):
    return poisson_log_likelihood(counts, counts, weights)


def bits_per_spike(counts, expected, weights=None) -> np.ndarray:
    """Information gained per spike over the mean-rate model (bits/spike), per unit."""
    counts = np.asarray(counts, float)
    w = np.ones(counts.shape[0]) if weights is None else np.asarray(weights, float)
    n_spikes = w @ counts
    gain = poisson_log_likelihood(counts, expected, w) - mean_rate_log_likelihood(counts, w)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_spikes > 0, gain / (n_spikes * np.log(2)), np.nan)


def pseudo_r2(counts, expected, weights=None) -> np.ndarray:
    """Deviance-based pseudo-R2 (McFadden's, relative to the saturated model)."""
    saturated = saturated_log_likelihood(counts, weights)
    model = poisson_log_likelihood(counts, expected, weights)
    null = mean_rate_log_likelihood(counts, weights)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1 - (saturated - model) / (saturated - null)


def score_counts(counts, expected, metric, unit_ids, per_unit):
    """Score expected counts against observed ones, per unit or pooled over units."""
    functions = {"bits_per_spike": bits_per_spike, "pseudo_r2": pseudo_r2,
                 "log_likelihood": poisson_log_likelihood}
    if metric not in functions:
        raise FormulaError(f"unknown metric {metric!r}",
                           hint="use one of: " + ", ".join(functions))
    values = functions[metric](counts, expected)
    if per_unit:
        return pd.Series(values, index=pd.Index(unit_ids, name="unit"), name=metric)
    if metric == "log_likelihood":
        return float(values.sum())
    if metric == "bits_per_spike":
        spikes = counts.sum(axis=0)
        gain = values * spikes
        return float(np.nansum(gain) / spikes.sum())
    ll = poisson_log_likelihood(counts, expected).sum()
    sat = saturated_log_likelihood(counts).sum()
    null = mean_rate_log_likelihood(counts).sum()
    return float(1 - (sat - ll) / (sat - null))
