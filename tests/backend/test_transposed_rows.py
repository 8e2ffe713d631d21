"""The design's transposed copy (`problem.with_transposed_rows`, `Block.Xt`): a line search's pass
and the gradient's second pass read it as plain products over all rows, and give the sums the
chunked pass over the row-major design gives; L-BFGS fits with it reach the same answer."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glmformula.backend import Problem, solve
from glmformula.backend import problem as pb
from glmformula.backend.families import Obs


def _block(T, P, U, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((T, P)) * 0.3
    Y = rng.poisson(0.3, (T, U)).astype(float)
    rw = (rng.random(T) > 0.2).astype(float)
    return pb.block_from_arrays(X, Y, None, rw, np.float64, U)


def _assert_sums_equal(got, want, rtol=1e-11):
    for g, w in zip(got, want):
        g, w = np.asarray(g), np.asarray(w)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * float(np.abs(w).max()))


@pytest.mark.parametrize("n_units, family", [(3, "poisson"), (20, "poisson"), (3, "gamma")])
def test_a_step_pass_from_the_transposed_copy_equals_the_chunked_pass(n_units, family):
    """Few units (stacked sums), a population (fused Poisson sums) and another family's sums;
    several chunks of rows and a remainder."""
    T, P = 9_000 + 17, 30
    rng = np.random.default_rng(n_units)
    eta = rng.normal(-1.5, 0.4, (T, n_units))
    dW = 0.01 * rng.standard_normal((P, n_units))
    db = 0.01 * rng.standard_normal(n_units)
    with jax.enable_x64(True):
        plain = _block(T, P, n_units, n_units)
        obs = None if family == "poisson" else Obs(family, None)
        if family == "gamma":
            plain = plain._replace(Y=plain.Y + 0.5)  # positive responses
        copy = plain._replace(Xt=plain.X.T.copy())
        chunk = 1_000
        args = (jnp.asarray(eta), jnp.asarray(dW), jnp.asarray(db), chunk, obs)
        xi_want, want = pb.step_sums(plain.X, plain.Y, plain.rw, *args)
        xi_got, got = pb.step_sums(copy.X, copy.Y, copy.rw, *args, copy.Xt)
    np.testing.assert_allclose(np.asarray(xi_got), np.asarray(xi_want), rtol=1e-12, atol=1e-14)
    _assert_sums_equal(got, want)
    # the test could fail: the gradient is not zero, and the step moved it
    assert float(np.abs(np.asarray(want[1])).max()) > 1.0


@pytest.mark.parametrize("n_stale", [1, 5])
def test_the_second_pass_reads_the_transposed_copy_to_the_same_sums(n_stale):
    """`resum_units` for a few stale units (their own pass) and for many (everyone's)."""
    T, P, U = 9_000 + 17, 30, 12
    rng = np.random.default_rng(n_stale)
    eta = rng.normal(-1.5, 0.4, (T, U))
    stale = np.zeros(U, bool)
    stale[rng.choice(U, n_stale, replace=False)] = True
    with jax.enable_x64(True):
        plain = _block(T, P, U, 7)
        copy = plain._replace(Xt=plain.X.T.copy())
        before = pb.value_grad_sums(plain.X, plain.Y, plain.rw, jnp.asarray(eta - 0.3 * stale))
        want = jax.jit(pb.resum_units)(plain, jnp.asarray(eta), before, jnp.asarray(stale))
        got = jax.jit(pb.resum_units)(copy, jnp.asarray(eta), before, jnp.asarray(stale))
    _assert_sums_equal(got, want)


def test_the_copy_is_made_within_the_memory_share_only(monkeypatch):
    with jax.enable_x64(True):
        block = _block(2_000, 10, 2, 0)

        class Data:  # anything with a block and _replace, as FitData
            def __init__(self, block):
                self.block = block

            def _replace(self, block):
                return Data(block)

        data = Data(block)
        made = pb.with_transposed_rows(data)
        np.testing.assert_array_equal(np.asarray(made.block.Xt), np.asarray(block.X).T)
        assert pb.with_transposed_rows(made) is made  # never twice
        monkeypatch.setattr(pb.config, "memory_limit", int(block.X.nbytes * 3))
        assert pb.with_transposed_rows(data).block.Xt is None  # 1/3 of the limit > 1/4
        monkeypatch.setattr(pb.config, "memory_limit", int(block.X.nbytes * 5))
        assert pb.with_transposed_rows(data).block.Xt is not None


@pytest.mark.parametrize("warm", [False, True])
def test_lbfgs_reaches_the_same_answer_with_or_without_the_copy(simulator, monkeypatch, warm):
    """A population (units continuing alone in narrower batches included), cold and warm."""
    X, _, W, b = simulator(20_000, 20, 12, seed=4, rate=0.1)
    gains = np.linspace(0.3, 3.0, 12)
    Y = np.random.default_rng(5).poisson(np.exp(X @ (W * gains) + b)).astype(float)
    fold = np.ones(len(X))
    fold[: len(X) // 5] = 0.0
    problem = Problem(X, Y, row_weight=fold)
    init = solve(Problem(X, Y), solver="lbfgs") if warm else None
    made = []
    original = pb.with_transposed_rows
    import glmformula.backend.lbfgs as lbfgs

    monkeypatch.setattr(lbfgs, "with_transposed_rows",
                        lambda data: made.append(original(data)) or made[-1])
    with_copy = solve(problem, solver="lbfgs", init=init)
    # the solver read the copy (the machine's CPU, a small design)
    assert made and made[0].block.Xt is not None
    monkeypatch.setattr(pb, "TRANSPOSED_ROWS_MAX_FRACTION", 0.0)
    without = solve(problem, solver="lbfgs", init=init)
    assert with_copy.converged.all() and without.converged.all()
    np.testing.assert_allclose(with_copy.weights, without.weights,
                               atol=1e-7 * np.abs(without.weights).max())
    np.testing.assert_allclose(with_copy.intercept, without.intercept, atol=1e-7)
    assert np.abs(with_copy.n_iter - without.n_iter).max() <= 1
