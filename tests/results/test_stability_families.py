"""``res.stability()`` by observation family.

The analysis linearises spike counts fed back through the rate (glmformula/results/stability.py,
'Families'): it applies to the count families (poisson, negative_binomial, and bernoulli with
the probability per bin as the rate) and refuses a continuous response (gamma, gaussian) with a
ResultError naming the family. The data are simulated (nothing here is recorded).
"""

from __future__ import annotations

import warnings

import attrs
import numpy as np
import pynapple as nap
import pytest

import glmformula as gf

HISTORY = "history(4, log, window=50ms)"
BIN = 0.01


@pytest.fixture(scope="module")
def recording():
    """Two spiking units (ids 2, 5) at ~8 Hz and a positive two-column signal, 60 s."""
    rng = np.random.default_rng(4)
    support = nap.IntervalSet(0.0, 60.0)
    spikes = nap.TsGroup({u: nap.Ts(np.sort(rng.uniform(0, 60, 480))) for u in (2, 5)},
                         time_support=support)
    t = np.arange(0.0, 60.0, BIN) + BIN / 2
    signal = nap.TsdFrame(t=t, d=rng.gamma(4.0, 0.25, (t.size, 2)), time_support=support)
    return {"spikes": spikes, "dff": signal}


def _fit(formula, data, family):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gf.fit(formula, data, bin_size=BIN, family=family, smoothing=None,
                      regularizer=gf.Ridge(1e-3))


@pytest.mark.parametrize("family", ["negative_binomial", "bernoulli"])
def test_count_families_report_the_linearised_gains(recording, family):
    res = _fit(f"spikes ~ {HISTORY}", recording, family)
    # known history integrals, 0.5 and -0.3 nats per spike: all of a filter's weights equal
    res = attrs.evolve(res, weights=np.ones_like(res.weights))
    unit_integral = np.asarray(res.stability().per_unit["history_integral"])
    assert np.all(unit_integral > 0)
    res = attrs.evolve(res, weights=res.weights * np.array([0.5, -0.3]) / unit_integral)
    rep = res.stability()
    m = np.asarray(res.n_spikes, float) / res.n_rows  # spikes (or spiking bins) per bin
    np.testing.assert_allclose(rep.per_unit["history_integral"], [0.5, -0.3])
    np.testing.assert_allclose(rep.per_unit["gain"], m * [0.5, -0.3])
    assert rep.spectral_radius == pytest.approx(m[0] * 0.5, rel=1e-12)
    with_data = res.stability(recording)
    assert np.isfinite(with_data.peak_spectral_radius)
    peak = np.asarray(res.predict(recording)).max(axis=0)
    np.testing.assert_allclose(with_data.per_unit["peak_rate"], peak, rtol=1e-10)
    if family == "bernoulli":  # a probability per bin: at most one spike per bin
        assert np.all(with_data.per_unit["peak_rate"] <= 1 / BIN)


@pytest.mark.parametrize("family", ["gaussian", "gamma"])
def test_continuous_families_are_refused(recording, family):
    res = _fit(f"dff ~ {HISTORY}", recording, family)
    for call in (lambda: res.stability(), lambda: res.stability(recording)):
        with pytest.raises(gf.ResultError, match=f"family '{family}'") as err:
            call()
        assert "res.simulate(data)" in err.value.hint
        assert "negative_binomial" in err.value.hint
    # the summary of such a model leaves the report out rather than failing
    assert "stability" not in res.summary().attrs
