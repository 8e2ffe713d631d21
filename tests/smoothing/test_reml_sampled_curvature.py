"""REML with sampled curvature (float32 Hessians from every k-th row, the wide-design path of
backend.reml.curvature_sampling) chooses the strengths of the exact criterion to within the
mgcv oracle's tolerances, and the final fit is the exact penalised fit at those strengths
(simulated population with history and coupling filters)."""

from __future__ import annotations

import numpy as np
import pynapple as nap
import pytest

import glmformula as gf
from glmformula.backend import problem as pb
from glmformula.backend import reml

BIN = 0.05
FORMULA = "spikes ~ cyclic(hd, 10) + history(4, window=300ms) + coupling(all)"


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    n, U = 24_000, 8
    t = (np.arange(n) + 0.5) * BIN
    hd = np.mod(np.cumsum(rng.normal(0, 0.2, n)), 2 * np.pi)
    groups = {}
    for u in range(U):
        counts = rng.poisson(np.exp(np.log(4 * BIN) + 0.8 * np.cos(hd - 2 * np.pi * u / U)))
        groups[u] = nap.Ts(np.sort(np.repeat(t, counts) + rng.uniform(-BIN / 2, BIN / 2,
                                                                       counts.sum())))
    epochs = nap.IntervalSet(0, n * BIN)
    return {"spikes": nap.TsGroup(groups, time_support=epochs),
            "hd": nap.Tsd(t, hd, time_support=epochs)}


def test_sampled_curvature_chooses_the_exact_strengths(data, monkeypatch):
    exact = gf.fit(FORMULA, data, bin_size=BIN)
    calls = []
    original = pb.compiled_call

    def recording(fn, static, *args):
        calls.append((fn.__name__, static.get("stride"), static.get("compute")))
        return original(fn, static, *args)

    # every problem counts as wide; every 2nd row of the 24,000 (as 226,358 rows of a
    # real recording get from curvature_stride)
    monkeypatch.setattr(reml, "SAMPLED_CURVATURE_ABOVE", 0.0)
    monkeypatch.setattr(pb, "CURVATURE_SAMPLE_ROWS", 12_000)
    monkeypatch.setattr(pb, "compiled_call", recording)
    sampled = gf.fit(FORMULA, data, bin_size=BIN)
    assert ("loss_gradient_hessian", 2, "float32") in calls  # the sampled path ran
    assert sampled.converged and exact.converged
    a, b = exact.smoothing, sampled.smoothing
    # the mgcv oracle's tolerances: edf within 2%, log-strengths within 0.1 where the optimum
    # is interior (the cyclic tuning: a removed term's V is flat in its strength, any large
    # one gives the same fit)
    np.testing.assert_allclose(b["edf"], a["edf"], rtol=0.02)
    tuning = a.index.get_level_values("term") == "cyclic(hd, 10)"
    np.testing.assert_allclose(np.log(b["strength"][tuning]), np.log(a["strength"][tuning]),
                               atol=0.1)
    # weights: the exact penalised fit at (nearly) the same strengths
    w_exact, w_sampled = exact.coef.to_numpy(), sampled.coef.to_numpy()
    scale = np.nanmax(np.abs(w_exact))
    np.testing.assert_allclose(w_sampled, w_exact, atol=2e-2 * scale)


def test_small_problems_keep_exact_curvature():
    assert reml.curvature_sampling(20_000, 8, 50) == {"stride": 1, "compute": None}
    wide = reml.curvature_sampling(226_358, 32, 269)
    assert wide == {"stride": 2, "compute": "float32"}
