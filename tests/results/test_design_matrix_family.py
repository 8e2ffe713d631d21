"""``gf.design_matrix(..., family=)`` bins the response as ``gf.fit`` with that family does.

Oracle: statsmodels' GLM fitted on ``design_matrix(...).to_numpy()`` and ``.response`` must
reproduce ``gf.fit(..., family=..., smoothing=None)`` (same fitted means to 1e-6, same weight
of the identified covariate), so the columns and the response are the ones the fit used. The
data are simulated (nothing here is recorded).
"""

from __future__ import annotations

import warnings

import numpy as np
import pynapple as nap
import pytest

import glmformula as gf

sm = pytest.importorskip("statsmodels.api")

FORMULA = "dff ~ x + cyclic(hd, 6)"
DURATION = 60.0


@pytest.fixture(scope="module")
def imaging():
    """A continuous two-cell signal at 300 samples/s (3 per 10 ms bin), a 1 s gap without
    samples, and head direction and a covariate x (simulated)."""
    rng = np.random.default_rng(3)
    t = np.arange(0.0, DURATION, 1 / 300) + 1 / 600
    hd = np.mod(np.cumsum(rng.normal(0, 0.05, t.size)), 2 * np.pi)
    x = np.sin(2 * np.pi * t / 5) + 0.3 * rng.normal(size=t.size)
    y = np.column_stack([0.2 + 0.5 * np.cos(hd - 1) + 0.3 * x,
                         1.0 + 0.8 * np.exp(np.cos(hd - 3)) - 0.2 * x])
    y = y + rng.normal(0, 0.3, y.shape)
    keep = (t < 20.0) | (t > 21.0)  # bins without a sample are dropped
    support = nap.IntervalSet(0.0, DURATION)
    return {"hd": nap.Tsd(t=t, d=hd, time_support=support),
            "x": nap.Tsd(t=t, d=x, time_support=support),
            "dff": nap.TsdFrame(t=t[keep], d=y[keep], time_support=support)}


def test_gaussian_design_matrix_is_what_the_fit_uses(imaging):
    X = gf.design_matrix(FORMULA, imaging, bin_size="10ms", family="gaussian")
    response = np.asarray(X.response)
    assert response.shape == (X.n_rows, 2) and np.isfinite(response).all()
    assert X.n_rows == 6000 - 100  # the gap's 100 bins are dropped
    # the response is the mean of each bin's 3 samples
    first = np.asarray(imaging["dff"])[:9].reshape(3, 3, 2).mean(axis=1)
    np.testing.assert_allclose(response[:3], first, rtol=1e-12)
    res = gf.fit(FORMULA, imaging, bin_size="10ms", family="gaussian", smoothing=None,
                 tol=1e-10)
    design = X.to_numpy()
    for u in range(2):
        with warnings.catch_warnings():  # the cyclic columns sum to the intercept: pinv
            warnings.simplefilter("ignore")
            ref = sm.GLM(response[:, u], design, family=sm.families.Gaussian()).fit()
        ours = design @ np.r_[res.intercepts[u], res.weights[:, u]]
        scale = np.max(np.abs(ref.fittedvalues))
        assert np.max(np.abs(ours - ref.fittedvalues)) <= 1e-6 * scale
        # x (column 1 after the intercept) is identified: its weight agrees too
        assert res.weights[0, u] == pytest.approx(ref.params[1], rel=1e-6)


def test_continuous_response_needs_a_continuous_family(imaging):
    with pytest.raises(gf.DataError, match='family="gaussian"'):
        gf.design_matrix(FORMULA, imaging, bin_size="10ms")  # poisson by default


def test_bernoulli_design_matrix_clips_counts():
    rng = np.random.default_rng(0)
    spikes = nap.TsGroup({0: nap.Ts(np.sort(rng.uniform(0, 10.0, 3000)))},
                         time_support=nap.IntervalSet(0.0, 10.0))
    data = {"spikes": spikes}
    counts = np.asarray(gf.design_matrix("spikes ~ 1", data, bin_size="10ms").response)
    binary = np.asarray(gf.design_matrix("spikes ~ 1", data, bin_size="10ms",
                                         family="bernoulli").response)
    assert counts.max() > 1
    np.testing.assert_array_equal(binary, np.minimum(counts, 1))
    nb = gf.design_matrix("spikes ~ 1", data, bin_size="10ms", family="negative_binomial")
    np.testing.assert_array_equal(np.asarray(nb.response), counts)


def test_unknown_family_is_the_error_fit_gives(imaging):
    with pytest.raises(gf.FitError) as from_fit, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gf.fit(FORMULA, imaging, bin_size="10ms", family="gausian")
    with pytest.raises(gf.FitError) as from_design:
        gf.design_matrix(FORMULA, imaging, bin_size="10ms", family="gausian")
    assert str(from_design.value) == str(from_fit.value)
    assert "did you mean 'gaussian'" in str(from_design.value)
