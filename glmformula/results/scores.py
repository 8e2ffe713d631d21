"""Goodness of fit for Poisson spike-count models (pure functions on arrays).

Log-likelihoods are in nats and include the ``-log(y!)`` term, so they are comparable with
statsmodels' ``llf`` and NeMoS' ``log_likelihood``. Every score compares the model with the
homogeneous (mean-rate) Poisson model of the same counts, the *null* model:

* ``bits_per_spike``: ``(LL - LL_null) / (n_spikes * ln 2)``;
* ``pseudo_r2`` (also ``"mcfadden"``): McFadden's ``1 - LL / LL_null``, as NeMoS 0.2.8's
  ``pseudo_r2(score_type="pseudo-r2-McFadden")`` and statsmodels'
  ``pseudo_rsquared(kind="mcf")`` compute it (log-likelihoods with ``log y!``);
* ``deviance_explained``: ``1 - D / D_null`` with ``D = 2 (LL_saturated - LL)`` (Cohen's
  pseudo-R2 in NeMoS, ``score_type="pseudo-r2-Cohen"``).

On spike counts McFadden's value is the smaller of the two: ``LL_null`` includes the
saturated model's (negative) log-likelihood, which no model can remove.

Other observation families (:mod:`glmformula.fitting.families`) score the same way with their
own likelihood and unit deviance, at the model's fitted dispersion, against the null model
that predicts the mean of the scored response (:func:`family_parts`); bits per spike only
for the count families (poisson, bernoulli, negative_binomial).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import FormulaError, ResultError
from ..fitting.poisson import log_likelihood, mean_rate_log_likelihood, saturated_log_likelihood

poisson_log_likelihood = log_likelihood  # the name the rest of results/ uses


def bits_per_spike(counts, expected, weights=None, *, model_log_likelihood=None) -> np.ndarray:
    """Information gained per spike over the mean-rate model (bits/spike), per unit.
    ``model_log_likelihood``: :func:`poisson_log_likelihood` of ``expected`` if already known
    (held-out scores compute it anyway)."""
    counts = np.asarray(counts, float)
    w = np.ones(counts.shape[0]) if weights is None else np.asarray(weights, float)
    n_spikes = w @ counts
    if model_log_likelihood is None:
        model_log_likelihood = poisson_log_likelihood(counts, expected, w)
    gain = model_log_likelihood - mean_rate_log_likelihood(counts, w)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_spikes > 0, gain / (n_spikes * np.log(2)), np.nan)


def mcfadden_pseudo_r2(counts, expected, weights=None) -> np.ndarray:
    """McFadden's pseudo-R2 per unit, ``1 - LL_model / LL_null`` (NeMoS' and statsmodels')."""
    model = poisson_log_likelihood(counts, expected, weights)
    null = mean_rate_log_likelihood(counts, weights)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1 - model / null


#: The pseudo-R2 of glmformula is McFadden's (the name NeMoS and statsmodels use for it).
pseudo_r2 = mcfadden_pseudo_r2


def deviance_explained(counts, expected, weights=None) -> np.ndarray:
    """Share of the null model's deviance the model explains per unit, ``1 - D / D_null``."""
    saturated = saturated_log_likelihood(counts, weights)
    model = poisson_log_likelihood(counts, expected, weights)
    null = mean_rate_log_likelihood(counts, weights)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1 - (saturated - model) / (saturated - null)


#: Metric name -> per-unit function of (counts, expected), for :func:`score_counts`.
METRICS = {"bits_per_spike": bits_per_spike, "pseudo_r2": mcfadden_pseudo_r2,
           "mcfadden": mcfadden_pseudo_r2, "deviance_explained": deviance_explained,
           "log_likelihood": poisson_log_likelihood}


def check_metric(metric: str, family=None) -> None:
    """Refuse an unknown metric, and bits per spike for a family without spikes."""
    if metric not in METRICS:
        raise FormulaError(f"unknown metric {metric!r}",
                           hint="use one of: " + ", ".join(METRICS))
    if metric == "bits_per_spike" and family is not None and not family.counts:
        raise ResultError(f"bits_per_spike is a score of spike counts; this model's response "
                          f"is continuous (family {family.name!r})",
                          hint="use metric=\"deviance_explained\", \"pseudo_r2\" or "
                               "\"log_likelihood\"")


def family_parts(y, mu, family, dispersion=None, weights=None) -> dict:
    """Per-unit pieces of every score of a family other than Poisson (arrays (U,)).

    Returns ``ll`` and ``ll_null`` (nats, at ``dispersion``; the null model predicts the
    weighted mean of ``y``), ``deviance`` and ``null_deviance`` (unit deviances) and
    ``spikes`` (the sum of ``y``: spikes for the count families).
    """
    y = np.asarray(y, float)
    mu = np.asarray(mu, float)
    w = np.ones(y.shape[0]) if weights is None else np.asarray(weights, float)
    null = np.broadcast_to(family.null_mean(y, w), y.shape)
    return {"ll": family.log_likelihood(y, mu, w, dispersion),
            "ll_null": family.log_likelihood(y, null, w, dispersion),
            "deviance": family.deviance(y, mu, w, dispersion),
            "null_deviance": family.deviance(y, null, w, dispersion),
            "spikes": w @ y}


def _family_scores(parts: dict, metric: str, per_unit: bool):
    ll, ll0, dev, dev0, spikes = (parts[k] for k in ("ll", "ll_null", "deviance",
                                                     "null_deviance", "spikes"))
    if not per_unit:
        ll, ll0, dev, dev0, spikes = (np.sum(x) for x in (ll, ll0, dev, dev0, spikes))
    with np.errstate(invalid="ignore", divide="ignore"):
        if metric == "log_likelihood":
            return ll
        if metric in ("pseudo_r2", "mcfadden"):
            return 1 - ll / ll0
        if metric == "deviance_explained":
            return 1 - dev / dev0
        return np.where(spikes > 0, (ll - ll0) / (spikes * np.log(2)), np.nan)


def score_counts(counts, expected, metric, unit_ids, per_unit, family=None, dispersion=None):
    """Score expected counts against observed ones, per unit or pooled over units.

    Pooled scores sum the log-likelihoods (and deviances) over units before taking the ratio,
    as NeMoS does for a population (its per-sample mean summed over units). ``family`` (a
    :class:`~glmformula.fitting.families.Family` other than Poisson) and its ``dispersion``
    (U,): ``expected`` are that family's means (:func:`family_parts`).
    """
    check_metric(metric, family)
    if family is not None and family.name != "poisson":
        values = _family_scores(family_parts(counts, expected, family, dispersion), metric,
                                per_unit)
        if per_unit:
            return pd.Series(values, index=pd.Index(unit_ids, name="unit"), name=metric)
        return float(values)
    values = METRICS[metric](counts, expected)
    if per_unit:
        return pd.Series(values, index=pd.Index(unit_ids, name="unit"), name=metric)
    if metric == "log_likelihood":
        return float(values.sum())
    if metric == "bits_per_spike":
        spikes = counts.sum(axis=0)
        gain = values * spikes
        return float(np.nansum(gain) / spikes.sum())
    ll = poisson_log_likelihood(counts, expected).sum()
    null = mean_rate_log_likelihood(counts).sum()
    if metric in ("pseudo_r2", "mcfadden"):
        return float(1 - ll / null)
    sat = saturated_log_likelihood(counts).sum()
    return float(1 - (sat - ll) / (sat - null))
