"""Poisson log-likelihoods (`fitting.poisson`) against scipy's pmf, which forms every term."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.special import gammaln, xlogy

from glmformula.fitting import poisson


@pytest.mark.parametrize("shape", [(5000,), (5000, 7)])
@pytest.mark.parametrize("weighted", [False, True])
def test_log_likelihood_equals_the_pmf(shape, weighted):
    rng = np.random.default_rng(len(shape) + weighted)
    expected = np.exp(rng.normal(-1.0, 1.0, shape))
    counts = rng.poisson(expected).astype(float)
    expected.flat[0], counts.flat[0] = 0.0, 0.0  # 0 log 0 = 0
    weights = rng.random(shape[0]) * (rng.random(shape[0]) > 0.3) if weighted else None
    w = np.ones(shape[0]) if weights is None else weights
    logpmf = stats.poisson.logpmf(counts, expected) * w.reshape(-1, *([1] * (len(shape) - 1)))
    assert counts.max() >= 3
    np.testing.assert_allclose(poisson.log_likelihood(counts, expected, weights),
                               logpmf.sum(axis=0), rtol=1e-12)
    mean = (w @ counts) / w.sum()
    np.testing.assert_allclose(poisson.mean_rate_log_likelihood(counts, weights),
                               poisson.log_likelihood(counts, np.broadcast_to(mean, shape),
                                                      weights), rtol=1e-12)


def test_non_integer_and_impossible_counts_keep_every_term():
    counts = np.array([[0.5, 1.0], [2.5, 0.0], [1.0, 4.0]])
    expected = np.array([[0.3, 0.0], [1.2, 0.5], [2.0, 3.0]])
    want = (xlogy(counts, expected) - expected - gammaln(counts + 1)).sum(axis=0)
    np.testing.assert_allclose(poisson.log_likelihood(counts, expected), want, rtol=1e-14)
    assert poisson.log_likelihood(counts, expected)[1] == -np.inf  # a spike at rate 0
