"""The Poisson observation model on arrays: expected counts from the log-rate, and
log-likelihoods (nats, with the ``-log(y!)`` term, so they equal statsmodels' ``llf``).

Every place that turns a linear predictor into expected counts calls :func:`expected_counts`,
and every log-likelihood comes from :func:`log_likelihood`, so a new observation family has one
module to mirror.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln, xlogy

#: Linear predictors are clipped to +-this before ``exp`` (float64 overflows near 709.8).
ETA_LIMIT = 700.0


def expected_counts(eta: np.ndarray) -> np.ndarray:
    """Expected counts per bin ``exp(eta)``, with ``eta`` clipped so that the result is finite."""
    return np.exp(np.clip(eta, -ETA_LIMIT, ETA_LIMIT))


def log_likelihood(counts: np.ndarray, expected: np.ndarray,
                   weights: np.ndarray | None = None) -> np.ndarray:
    """Per-unit Poisson log-likelihood (nats): ``sum_t w_t (y log mu - mu - log y!)``."""
    counts = np.asarray(counts, float)
    expected = np.asarray(expected, float)
    terms = xlogy(counts, expected) - expected - gammaln(counts + 1)
    if weights is not None:
        terms = terms * np.asarray(weights, float).reshape(-1, *([1] * (terms.ndim - 1)))
    return terms.sum(axis=0)


def log_likelihood_from_objective(objective: np.ndarray, counts: np.ndarray,
                                  weights: np.ndarray) -> np.ndarray:
    """:func:`log_likelihood` at a solver's unpenalised Poisson optimum without another pass:
    ``-n * objective - sum_t w_t log y_t!``, with ``objective`` (U,) the solver's mean negative
    log-likelihood without ``log y!`` over the rows' total weight ``n``.

    Only counts of 2 or more contribute to ``log y!`` (0! = 1! = 1), so the sum reads the few
    bins with several spikes, not every bin (equal to :func:`log_likelihood` to ~1e-14 on the
    real head-direction recording)."""
    counts = np.asarray(counts)
    w = np.asarray(weights, float)
    rows, units = np.nonzero((counts >= 2) & (w > 0)[:, None])
    log_factorial = np.bincount(units, weights=w[rows] * gammaln(
        counts[rows, units].astype(float) + 1.0), minlength=counts.shape[1])
    return -float(w.sum()) * np.asarray(objective, float) - log_factorial


def mean_rate_log_likelihood(counts: np.ndarray, weights: np.ndarray | None = None):
    """Log-likelihood of the homogeneous model whose rate is each unit's mean count."""
    counts = np.asarray(counts, float)
    w = np.ones(counts.shape[0]) if weights is None else np.asarray(weights, float)
    mean = (w @ counts) / w.sum()
    return log_likelihood(counts, np.broadcast_to(mean, counts.shape), w)


def saturated_log_likelihood(counts: np.ndarray, weights: np.ndarray | None = None):
    """Log-likelihood of the model that predicts every count exactly."""
    return log_likelihood(counts, counts, weights)


__all__ = ["ETA_LIMIT", "expected_counts", "log_likelihood", "mean_rate_log_likelihood",
           "saturated_log_likelihood"]
