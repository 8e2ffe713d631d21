"""REML with sampled curvature (float32 Hessians from every k-th row, the wide-design path of
backend.problem.curvature_sampling) chooses the strengths of the exact criterion to within the
mgcv oracle's tolerances, and the final fit is the exact penalised fit at those strengths
(simulated population with history and coupling filters)."""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import glmformula as gf
from glmformula.backend import problem as pb
from glmformula.backend import reml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # importlib mode: sibling imports
from _populations import head_direction_population  # noqa: E402

BIN = 0.05
FORMULA = "spikes ~ cyclic(hd, 10) + history(4, window=300ms) + coupling(all)"


@pytest.fixture(scope="module")
def data():
    return head_direction_population(11, 24_000, 8, BIN, rate=4.0, depth=0.8)


def test_sampled_curvature_chooses_the_exact_strengths(data, monkeypatch):
    exact = gf.fit(FORMULA, data, bin_size=BIN)
    calls = []
    original = pb.compiled_call

    def recording(fn, static, *args):
        calls.append((fn.__name__, static.get("stride"), static.get("compute")))
        return original(fn, static, *args)

    # every problem counts as wide; every 2nd row of the 24,000 (as 226,358 rows of a
    # real recording get from curvature_stride)
    monkeypatch.setattr(pb, "SAMPLED_CURVATURE_ABOVE", 0.0)
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
    assert pb.curvature_sampling(20_000, 8, 50) == {"stride": 1, "compute": None}
    wide = pb.curvature_sampling(226_358, 32, 269)
    assert wide == {"stride": 2, "compute": "float32"}


@pytest.mark.parametrize("sampled", [False, True], ids=["exact", "sampled"])
def test_final_newton_fit_stops_at_its_first_hessian(data, monkeypatch, sampled):
    """REML hands over weights refined to Newton's criterion (reml.polish): the exact
    Newton fit that confirms them forms one Hessian and takes no step."""
    if sampled:
        monkeypatch.setattr(pb, "SAMPLED_CURVATURE_ABOVE", 0.0)
        monkeypatch.setattr(pb, "CURVATURE_SAMPLE_ROWS", 12_000)
    res = gf.fit(FORMULA, data, bin_size=BIN)
    assert res.converged
    assert res.diagnostics.solver == "newton"
    assert res.diagnostics.n_hessian_passes == 1
    np.testing.assert_array_equal(res.diagnostics.n_iter, 0)


def test_polish_reaches_the_decrement_limit_with_an_approximate_hessian():
    """Chord steps with a Hessian 5% off reach the penalised optimum (exact gradients), each
    unit until its decrement is under the limit, within POLISH_STEPS steps."""
    rng = np.random.default_rng(3)
    n, P, U = 4_000, 6, 3
    X = rng.normal(size=(n, P)) * 0.3
    beta_true = rng.normal(size=(P, U)) * 0.5
    Y = rng.poisson(np.exp(X @ beta_true - 1.0))
    with jax.enable_x64(True):
        block = pb.block_from_arrays(X, Y.astype(float), None, np.ones(n), np.float64, U)
        p = P + 1
        mask = np.ones((p, U))
        S = np.zeros((1, U, p, p))
        S[0, :, :P, :P] = np.eye(P)
        fixed = np.zeros((U, p, p))
        host = reml.HostPenalties(S, fixed, *reml.penalty_basis(S, fixed, mask), mask)
        data = reml.RemlData(block, jnp.asarray(mask), jnp.asarray(S), jnp.asarray(fixed),
                             jnp.asarray(Y.sum(axis=0).astype(float)))
        lam = np.full((1, U), 30.0)
        passes = {"strategy": pb.hessian_strategy(U, P)}

        def loss_gradient_hessian(beta):
            out, _, _ = pb.compiled_call(reml.loss_gradient_hessian, passes, data,
                                         jnp.asarray(beta))
            return [np.array(x) for x in out[:3]]

        # the reference: Newton's method with exact Hessians, to convergence
        beta = np.zeros((p, U))
        for _ in range(30):
            loss, g, H = loss_gradient_hessian(beta)
            A = H + host.total(lam)
            beta = beta - np.linalg.solve(A, (g + np.einsum(
                "upq,qu->pu", host.total(lam), beta)).T[..., None])[..., 0].T
        # as REML ends (decrement ~1e-8 x spikes or less), with a Hessian 5% off
        start = beta + 2e-4 * rng.normal(size=beta.shape)
        loss, g, H = loss_gradient_hessian(start)
        model = reml._QuadraticModel(loss, g, 1.05 * H, start)
        polished = reml.polish(data, host, model, lam, jnp.float64)
        step = np.linalg.solve(H + host.total(lam), (polished.g + np.einsum(
            "upq,qu->pu", host.total(lam), polished.beta)).T[..., None])[..., 0]
        decrement = np.einsum("up,upq,uq->u", step, H + host.total(lam), step)
        assert np.all(decrement <= 2 * reml.POLISH_DECREMENT * Y.sum(axis=0))
        np.testing.assert_allclose(polished.beta, beta, rtol=1e-7, atol=1e-9)
