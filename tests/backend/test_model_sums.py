"""The one-pass model sums of REML's exact passes (`problem.poisson_model_sums`) against the
separate loss-gradient and Hessian passes they replace."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glmformula.backend import problem as pb


@pytest.mark.parametrize("n_units, n_cols, offset_per_unit", [(32, 12, True), (16, 40, False)])
def test_one_pass_sums_equal_the_separate_passes(n_units, n_cols, offset_per_unit):
    rng = np.random.default_rng(n_units)
    T = 20_000 + 123  # several chunks and a remainder
    X = rng.standard_normal((T, n_cols)) * 0.4
    W = 0.2 * rng.standard_normal((n_cols, n_units))
    b = rng.normal(-2.0, 0.3, n_units)
    offset = rng.normal(0.0, 0.2, (T, n_units if offset_per_unit else 1))
    X[5, 0] = 1e3 / max(abs(W[0]).min(), 1e-3)  # one row above the overflow cap
    Y = rng.poisson(0.2, (T, n_units)).astype(float)
    rw = (rng.random(T) > 0.1).astype(float)
    strategy = pb.hessian_strategy(n_units, n_cols)
    with jax.enable_x64(True):
        args = [jnp.asarray(a) for a in (X, Y, rw, offset, W, b)]
        assert pb.fused_model_applies(None, strategy, n_units)
        loss, grad, H, magnitude = jax.jit(pb.poisson_model_sums)(*args)
        eta = args[0] @ args[4] + args[5][None, :] + args[3]
        want_loss, gw, gb, want_magnitude = pb.value_grad_sums(args[0], args[1], args[2], eta)
        want_H = pb.hessian_sum(args[0], pb.curvature(eta, args[2]), strategy)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-12)
    np.testing.assert_allclose(grad, np.r_[np.asarray(gw), np.asarray(gb)[None]], rtol=1e-10,
                               atol=1e-9 * np.abs(np.asarray(gw)).max())
    np.testing.assert_allclose(H, want_H, rtol=1e-10, atol=1e-10 * np.abs(want_H).max())
    np.testing.assert_allclose(magnitude, want_magnitude, rtol=1e-12)
    assert np.all(np.isfinite(H)) and loss.shape == (n_units,)


def test_reml_answers_the_same_with_one_pass_or_separate_passes(monkeypatch):
    """A population's REML fit (the head-direction term, 16 units by column pairs: the one-pass
    sums) equals the fit whose passes are the separate ones, strengths and weights alike."""
    import glmformula as gf

    data = gf.datasets.head_direction(n_units=16, duration=300.0, seed=5)
    formula = "spikes ~ cyclic(head_direction, 12)"
    fused = gf.fit(formula, data, bin_size="20ms", smoothing="auto")
    monkeypatch.setattr(pb, "FUSED_MODEL_MIN_UNITS", 10**9)
    monkeypatch.setattr(pb, "_COMPILED", {})  # the choice is made when a kernel is traced
    separate = gf.fit(formula, data, bin_size="20ms", smoothing="auto")
    assert fused.smoothing["strength"].notna().all()
    np.testing.assert_allclose(np.log(fused.smoothing["strength"]),
                               np.log(separate.smoothing["strength"]), atol=1e-6)
    np.testing.assert_allclose(fused.coef, separate.coef, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(fused.intercepts, separate.intercepts, rtol=1e-8)


@pytest.mark.parametrize("n_stale", [0, 1, 4, 5])
def test_sums_formed_again_for_some_units_equal_every_units_sums(n_stale):
    """A line search's second pass (`problem.resum_units`): the stale units' sums formed again
    at ``eta`` (for them only up to RESUM_UNITS of them, else for all), the others kept."""
    rng = np.random.default_rng(n_stale)
    T, P, U = 9_000 + 17, 30, 12
    X = rng.standard_normal((T, P)) * 0.3
    Y = rng.poisson(0.3, (T, U)).astype(float)
    rw = (rng.random(T) > 0.2).astype(float)
    eta = rng.normal(-1.5, 0.4, (T, U))
    stale = np.zeros(U, bool)
    stale[rng.choice(U, n_stale, replace=False)] = True
    with jax.enable_x64(True):
        block = pb.block_from_arrays(X, Y, None, rw, np.float64, U)
        want = pb.value_grad_sums(block.X, block.Y, block.rw, jnp.asarray(eta))
        # the stale units' sums as they were before their step: wrong at eta
        before = pb.value_grad_sums(block.X, block.Y, block.rw, jnp.asarray(eta - 0.3 * stale))
        got = jax.jit(pb.resum_units)(block, jnp.asarray(eta), before, jnp.asarray(stale))
    for g, w, b in zip(got, want, before):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-11,
                                   atol=1e-11 * float(np.abs(np.asarray(w)).max()))
        if n_stale:  # the test could fail: the stale sums differ from the right ones
            assert not np.allclose(np.asarray(b)[..., stale], np.asarray(w)[..., stale])
