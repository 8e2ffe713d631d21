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
    """Per-unit Poisson log-likelihood (nats): ``sum_t w_t (y log mu - mu - log y!)``.

    ``y log mu`` is formed only where ``y > 0`` (``0 log 0 = 0``) and ``log y!`` only where
    ``y`` is not 0 or 1 (:func:`_log_factorials`): spike counts are mostly 0 and 1, and
    ``xlogy`` and ``gammaln`` over every bin took 2-5x longer (0.13-0.38 s against 0.07 s for
    226k bins x 32 units)."""
    counts, expected = np.broadcast_arrays(np.asarray(counts, float),
                                           np.asarray(expected, float))
    with np.errstate(divide="ignore"):  # a spike where the rate is 0: -inf, as xlogy
        terms = np.log(expected, out=np.zeros(expected.shape), where=counts > 0)
    terms *= counts
    terms -= expected
    if weights is not None:
        terms *= np.asarray(weights, float).reshape(-1, *([1] * (terms.ndim - 1)))
    return terms.sum(axis=0) - _log_factorials(counts, weights)


def _log_factorials(counts: np.ndarray, weights: np.ndarray | None = None):
    """``sum_t w_t log Gamma(y_t + 1)`` per unit (rows first): counts of 0 and 1 contribute
    nothing (0! = 1! = 1), so this reads the few bins with several spikes (any other value,
    non-integer included, as ``gammaln`` gives it)."""
    counts = np.asarray(counts)
    w = None if weights is None else np.asarray(weights, float)
    many = (counts != 0) & (counts != 1)
    if w is not None:
        many &= (w != 0).reshape(-1, *([1] * (counts.ndim - 1)))
    where = np.nonzero(many)
    values = gammaln(counts[where].astype(float) + 1.0)
    if w is not None:
        values = values * w[where[0]]
    if counts.ndim == 1:
        return values.sum()
    flat = np.ravel_multi_index(where[1:], counts.shape[1:])
    sums = np.bincount(flat, weights=values, minlength=int(np.prod(counts.shape[1:])))
    return sums.reshape(counts.shape[1:])


def log_likelihood_from_objective(objective: np.ndarray, counts: np.ndarray,
                                  weights: np.ndarray) -> np.ndarray:
    """:func:`log_likelihood` at a solver's unpenalised Poisson optimum without another pass:
    ``-n * objective - sum_t w_t log y_t!``, with ``objective`` (U,) the solver's mean negative
    log-likelihood without ``log y!`` over the rows' total weight ``n``.

    Only counts of 2 or more contribute to ``log y!`` (0! = 1! = 1), so the sum reads the few
    bins with several spikes, not every bin (equal to :func:`log_likelihood` to ~1e-14 on the
    real head-direction recording)."""
    w = np.asarray(weights, float)
    return -float(w.sum()) * np.asarray(objective, float) - _log_factorials(counts, w)


def mean_rate_log_likelihood(counts: np.ndarray, weights: np.ndarray | None = None):
    """Log-likelihood of the homogeneous model whose rate is each unit's mean count."""
    counts = np.asarray(counts, float)
    w = np.ones(counts.shape[0]) if weights is None else np.asarray(weights, float)
    spikes = w @ counts
    mean = spikes / w.sum()
    # sum_t w_t (y_t log m - m) in closed form (0 log 0 = 0 for a unit without spikes)
    return xlogy(spikes, mean) - mean * w.sum() - _log_factorials(counts, w)


def saturated_log_likelihood(counts: np.ndarray, weights: np.ndarray | None = None):
    """Log-likelihood of the model that predicts every count exactly."""
    return log_likelihood(counts, counts, weights)


__all__ = ["ETA_LIMIT", "expected_counts", "log_likelihood", "mean_rate_log_likelihood",
           "saturated_log_likelihood"]
