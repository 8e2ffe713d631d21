"""Row blocks, precision, compiled-kernel reuse, recovery of known weights, solver choice."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glmformula.backend import (
    BlockedProblem,
    GroupLasso,
    Lasso,
    Problem,
    Ridge,
    choose_solver,
    solve,
)
from glmformula.backend import problem as pb
from glmformula.graph.rows import RowBlock

GROUPS = ("a", "a", "b", "b", "c", "c")


def blocks_of(prob: Problem, rows: int):
    def blocks():
        for i in range(0, prob.n_rows, rows):
            sl = slice(i, i + rows)
            yield RowBlock(i, prob.X[sl], prob.y[sl],
                           None if prob.offset is None else prob.offset[sl],
                           np.ones(len(prob.X[sl])) if prob.row_weight is None
                           else prob.row_weight[sl])

    return blocks


# Newton (None, Ridge) and proximal Newton (GroupLasso); Lasso takes the same blocked path
@pytest.mark.parametrize("regularizer", [None, Ridge(0.05), GroupLasso(0.01)], ids=str)
def test_blocked_equals_in_memory(population, regularizer):
    X, Y, _, _ = population
    T, P = X.shape
    U = Y.shape[1]
    rng = np.random.default_rng(5)
    mask = np.ones((U, P), bool)
    mask[1, 4:] = False
    prob = Problem(X, Y, column_mask=mask, offset=0.1 * rng.standard_normal((T, U)),
                   row_weight=(rng.random(T) < 0.9).astype(float), column_groups=GROUPS)
    mem = solve(prob, regularizer=regularizer)
    # 1500-row blocks: the last (1000 rows) is padded with zero-weight rows
    blk = solve(BlockedProblem(blocks_of(prob, 1500), P, U, column_mask=mask, column_groups=GROUPS),
                regularizer=regularizer)
    assert blk.solver == mem.solver and blk.converged.all() and mem.converged.all()
    scale = np.max(np.abs(mem.weights))
    assert np.max(np.abs(blk.weights - mem.weights)) <= 1e-8 * scale
    assert np.max(np.abs(blk.intercept - mem.intercept)) <= 1e-8 * np.max(np.abs(mem.intercept))
    np.testing.assert_allclose(blk.objective, mem.objective, rtol=1e-12)
    assert np.all(blk.weights[~mask.T] == 0.0)


def test_blocked_rejects_growing_blocks(population):
    X, Y, _, _ = population

    def blocks():
        yield RowBlock(0, X[:100], Y[:100], None, np.ones(100))
        yield RowBlock(100, X[100:300], Y[100:300], None, np.ones(200))

    with pytest.raises(ValueError, match="grow"):
        solve(BlockedProblem(blocks, X.shape[1], Y.shape[1]))


@pytest.mark.parametrize("solver", ["newton"])
def test_float32_agrees_with_float64(population, solver):
    X, Y, _, _ = population
    s64 = solve(Problem(X, Y), solver=solver)
    s32 = solve(Problem(X, Y), solver=solver, dtype="float32")
    assert s32.dtype == "float32" and s32.weights.dtype == np.float32 and s64.dtype == "float64"
    assert s32.converged.all()
    np.testing.assert_allclose(s32.weights, s64.weights,
                               atol=1e-4 * max(1, np.abs(s64.weights).max()))
    np.testing.assert_allclose(s32.intercept, s64.intercept, atol=1e-4)


def test_backend_leaves_global_x64_alone(population):
    X, Y, _, _ = population
    before = jax.config.jax_enable_x64
    solve(Problem(X, Y))
    assert jax.config.jax_enable_x64 == before


def test_refit_same_shapes_does_not_recompile(population, simulator):
    X, Y, _, _ = population
    first = solve(Problem(X, Y), solver="newton")
    other = simulator(*X.shape, Y.shape[1], seed=11)
    again = solve(Problem(other[0], other[1]), solver="newton")
    assert again.compile_seconds == 0.0 and again.solve_seconds > 0
    assert not np.allclose(again.weights, first.weights)


def test_recovers_known_weights_with_error_shrinking_in_T(simulator):
    X, Y, W, b = simulator(4000, 6, 4, seed=2, rate=0.5)
    errors = []
    for n in (250, 1000, 4000):
        rw = (np.arange(len(Y)) < n).astype(float)  # same shapes: no recompilation
        sol = solve(Problem(X, Y, row_weight=rw))
        errors.append(np.sqrt(np.mean((sol.weights - W) ** 2)))
    assert errors[1] < 0.75 * errors[0] and errors[2] < 0.75 * errors[1]
    assert errors[2] < 0.05


def test_auto_choice_is_reported(population):
    X, Y, _, _ = population
    assert solve(Problem(X, Y)).solver == choose_solver(*X.shape, Y.shape[1], "none") == "newton"
    assert solve(Problem(X, Y), regularizer=Lasso(0.01)).solver == "proximal"
    assert choose_solver(100_000, 400, 50, "none") == "lbfgs"
    assert choose_solver(1_000_000, 200, 1, "smooth") == "lbfgs"
    assert choose_solver(100_000, 10, 50, "none") == "newton"
    assert choose_solver(100_000, 50, 1, "none") == "newton"


def test_kernels_hessian_and_gram_agree(simulator):
    X, Y, _, _ = simulator(300, 5, 9, seed=4)  # 9 units: the "pairs" Hessian strategy
    with jax.enable_x64(True):
        Xj = jnp.asarray(X)
        D = jnp.asarray(np.random.default_rng(0).random((300, 9)))
        A = np.concatenate([X, np.ones((300, 1))], axis=1)
        expected = np.einsum("tp,tu,tq->upq", A, np.asarray(D), A)
        for strategy in ("pairs", "per_unit"):
            np.testing.assert_allclose(pb.hessian_sum(Xj, D, strategy), expected, rtol=1e-12)
        np.testing.assert_allclose(pb.gram_sum(Xj, jnp.ones(300)), A.T @ A, rtol=1e-12)
