"""Hessians and REML's Hessian-change slope of sparse designs from each column block's non-zero
rows (backend.row_tiles) equal the dense products, and fits that use them (L-BFGS
preconditioners, REML on wide designs) reach the same answers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import glmformula as gf
from glmformula.backend import problem as pb
from glmformula.backend import reml
from glmformula.backend import row_tiles as rt


def _sparse_design(rng, T=6_000, n_sparse=21):
    """5 dense columns, ``n_sparse`` sparse ones in runs (as spike filters: non-zero after
    events), and an all-zero column: blocks of 8 with a short last one (21 columns: three
    runs and an empty one, one per band; 75: twelve runs in eight bands)."""
    dense = rng.normal(size=(T, 5))
    events = rng.random((T, 3)) < 0.01
    sparse = np.zeros((T, n_sparse))
    for j in range(n_sparse):
        on = np.convolve(events[:, j % 3], np.ones(3 + j % 5), mode="full")[:T] > 0
        sparse[:, j] = on * rng.normal(size=T)
    return np.concatenate([dense, sparse, np.zeros((T, 1))], axis=1)


@pytest.mark.parametrize("n_sparse", [21, 75])
@pytest.mark.parametrize("stride, compute, rtol", [(1, jnp.float64, 1e-12),
                                                    (3, jnp.float32, 1e-5)])
def test_tiled_hessians_equal_the_dense_products(stride, compute, rtol, n_sparse):
    rng = np.random.default_rng(0)
    X = _sparse_design(rng, n_sparse=n_sparse)
    D = rng.random((X.shape[0], 3))
    with jax.enable_x64(True):
        tiles = rt.row_tiles(X, stride, compute)
        got = rt.tiled_hessian_sum(tiles, jnp.asarray(D[::stride]), stride, jnp.float64)
        want = pb.sampled_hessian_sum(jnp.asarray(X), jnp.asarray(D), "per_unit", stride)
    dense = np.asarray(tiles.dense)
    np.testing.assert_array_equal(dense[dense < X.shape[1]], np.arange(5))
    capacity = tiles.rows.shape[0]
    assert capacity & (capacity - 1) == 0 and int(tiles.count) <= capacity
    np.testing.assert_allclose(np.asarray(got), np.asarray(want),
                               atol=rtol * float(np.abs(want).max()))


@pytest.mark.parametrize("n_sparse", [21, 75])
def test_tiled_slope_equals_the_dense_leverage_pass(n_sparse):
    """REML's ``tr(A^-1 dH[d_m])`` from the tiles equals the row-by-row leverage pass."""
    rng = np.random.default_rng(1)
    X = _sparse_design(rng, n_sparse=n_sparse)
    T, P = X.shape
    U, M = 3, 2
    Y = rng.poisson(0.3, size=(T, U)).astype(float)
    beta = 0.1 * rng.normal(size=(P + 1, U))
    dbeta = rng.normal(size=(M, U, P + 1))
    B = rng.normal(size=(U, P + 1, P + 1))
    Ainv = np.einsum("upq,urq->upr", B, B) / P + np.eye(P + 1)
    with jax.enable_x64(True):
        block = pb.block_from_arrays(X, Y, None, np.ones(T), np.float64, U)
        tiles = rt.row_tiles(X, 1, jnp.float64)
        got = reml._tiled_trace_dH(block, tiles, jnp.asarray(beta), jnp.asarray(Ainv),
                                   jnp.asarray(dbeta))
        want = reml._trace_dH(block, jnp.asarray(beta), jnp.asarray(Ainv), jnp.asarray(dbeta))
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-10)


def test_run_rows_count_the_rows_of_each_run_of_columns():
    """The layout's cost of a run (bit-packed unions) against the plain boolean union."""
    rng = np.random.default_rng(5)
    nonzero = _sparse_design(rng, T=1_003)[:, 3:] != 0  # rows not a multiple of 8
    P = nonzero.shape[1]
    got = rt._run_rows(nonzero)
    for i in range(P):
        for k in range(rt.BLOCK_WIDTH):
            want = nonzero[:, i:i + k + 1].any(axis=1).sum() if i + k < P else np.inf
            assert got[i, k] == want, (i, k)


def test_tiles_are_used_only_where_they_save_half_the_work():
    rng = np.random.default_rng(2)
    assert rt.tiles_pay(_sparse_design(rng) != 0)
    assert not rt.tiles_pay(rng.normal(size=(2_000, 30)) != 0)
    assert rt.design_tiles(rng.normal(size=(2_000, 30)), 1) is None


def _sparse_population(seed=4, T=40_000, U=6):
    """Low-rate units with short coupling filters: a sparse design."""
    rng = np.random.default_rng(seed)
    X = _sparse_design(rng, T)
    W = np.zeros((X.shape[1], U))
    W[:5] = 0.3 * rng.normal(size=(5, U))
    W[5:26] = 0.4 * rng.normal(size=(21, U))
    Y = rng.poisson(np.exp(X @ W - 2.0)).astype(float)
    return X, Y


def test_lbfgs_with_tiled_preconditioners_reaches_the_same_fit(monkeypatch):
    X, Y = _sparse_population()
    problem = gf.backend.Problem(X, Y)
    dense = gf.backend.solve(problem, solver="lbfgs")
    names = []
    original = pb.compiled_call

    def recording(fn, static, *args):
        names.append(any(isinstance(a, pb.FitData) and a.tiles is not None for a in args))
        return original(fn, static, *args)

    monkeypatch.setattr(pb, "SAMPLED_CURVATURE_ABOVE", 0.0)
    monkeypatch.setattr(pb, "CURVATURE_SAMPLE_ROWS", 20_000)   # every 2nd row
    monkeypatch.setattr(pb, "compiled_call", recording)
    import glmformula.backend.lbfgs as lbfgs
    monkeypatch.setattr(lbfgs, "compiled_call", recording)
    tiled = gf.backend.solve(problem, solver="lbfgs")
    assert any(names)
    assert dense.converged.all() and tiled.converged.all()
    np.testing.assert_allclose(tiled.weights, dense.weights, atol=1e-5)
    np.testing.assert_allclose(tiled.intercept, dense.intercept, atol=1e-5)


def test_reml_on_a_wide_sparse_design_chooses_the_same_strengths_with_tiles(monkeypatch):
    """The wide-design path (sampled float32 curvature) with tiles and with dense products:
    the same strengths and weights up to float32 rounding."""
    rng = np.random.default_rng(5)
    X, Y = _sparse_population(seed=5)
    T, P = X.shape
    U = Y.shape[1]
    p = P + 1
    # second differences on the first dense column group and on each run of 8 sparse columns
    S = np.zeros((2, U, p, p))
    d2 = np.diff(np.eye(5), 2, axis=0)
    S[0, :, :5, :5] = d2.T @ d2
    d2 = np.diff(np.eye(21), 2, axis=0)
    S[1, :, 5:26, 5:26] = d2.T @ d2
    mask = np.ones((p, U))
    mask[P - 1] = 0.0  # the all-zero column
    monkeypatch.setattr(pb, "SAMPLED_CURVATURE_ABOVE", 0.0)
    monkeypatch.setattr(pb, "CURVATURE_SAMPLE_ROWS", 20_000)
    ran = []
    original = pb.compiled_call

    def recording(fn, static, *args):
        ran.append(fn.__name__)
        return original(fn, static, *args)

    monkeypatch.setattr(pb, "compiled_call", recording)
    results = {}
    for pays in (rt.TILES_PAY_BELOW, 0.0):
        monkeypatch.setattr(rt, "TILES_PAY_BELOW", pays)
        with jax.enable_x64(True):
            block = pb.block_from_arrays(X, Y, None, np.ones(T), np.float64, U)
            results[pays] = reml.select(block, mask, S, np.zeros((U, p, p)), np.zeros((p, U)),
                                        np.zeros((2, U)), present=np.ones((2, U), bool))
        assert ("_tiled_trace_dH" in ran) == (pays > 0)
        ran.clear()
    tiled, dense = results[rt.TILES_PAY_BELOW], results[0.0]
    assert tiled.converged.all() and dense.converged.all()
    np.testing.assert_allclose(tiled.log_strength, dense.log_strength, atol=1e-3)
    np.testing.assert_allclose(tiled.edf, dense.edf, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(tiled.beta, dense.beta, atol=1e-6)
    del rng


def test_runs_follow_the_sources_of_a_coupling_design():
    """Each source's filter columns share their rows (after its events): the cheapest split
    puts each source's columns in one run, even where a dense column shifts them off a
    multiple of 8 (fixed runs of 8 would straddle two sources)."""
    rng = np.random.default_rng(6)
    T, n_sources, width = 20_000, 4, 8
    columns = [rng.normal(size=T)]  # one dense column first
    for _ in range(n_sources):
        events = (rng.random(T) < 0.01).astype(float)
        for k in range(width):  # filters at growing lags, as log-spaced raised cosines
            kernel = np.zeros(2 + 3 * k)
            kernel[1 + k:] = 1.0
            columns.append(np.convolve(events, kernel)[:T])
    X = np.stack(columns, axis=1)
    dense, blocks, supports = rt._layout(X != 0)
    np.testing.assert_array_equal(dense, [0])
    assert [list(b) for b in blocks] == [list(range(1 + width * s, 1 + width * (s + 1)))
                                         for s in range(n_sources)]
    for cols, rows in zip(blocks, supports):
        np.testing.assert_array_equal(rows, np.flatnonzero((X[:, cols] != 0).any(axis=1)))


def test_dense_fraction_prices_a_tiled_hessian_against_the_dense_one():
    """Eight blocks of 8 columns, each non-zero on its own 1,024 of 8,192 rows: one tile per
    block, an eighth of the dense multiply-adds; a dense column adds every row once; no tiles
    (a dense design) is the whole dense pass."""
    T, P = 8192, 64
    X = np.zeros((T, P))
    rng = np.random.default_rng(0)
    for b in range(8):
        X[b * 1024:(b + 1) * 1024, b * 8:(b + 1) * 8] = rng.random((1024, 8)) + 0.1
    assert rt.dense_fraction(rt.design_tiles(X, 1), P) == pytest.approx(1 / 8)
    X[:, 0] = 1.0
    one_dense = (T + 8 * 1024 * 8) / (T * P)  # the dense column over every row, 8 tiles
    assert rt.dense_fraction(rt.design_tiles(X, 1), P) == pytest.approx(one_dense)
    assert rt.dense_fraction(None, P) == 1.0
