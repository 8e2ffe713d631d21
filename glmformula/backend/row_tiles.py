"""Hessians of sparse shared designs from the rows where each column block is non-zero.

Spike-history and coupling filters are mostly zero: a source's filter columns are non-zero
only in the ~100 ms after its spikes. On the real coupled head-direction model (32 cells at
10 ms, 268 columns) 88% of the design is zero and a row has on average 6 of 32 sources
active. A Hessian row block ``H[b, :] = sum_t d_t x_tb x_t'`` only needs the rows where block
``b``'s columns are non-zero, so the ``U`` Hessians (and the leverages ``x' A^-1 x`` of REML's
Hessian-change slope) are formed:

* for the dense columns (non-zero in more than :data:`DENSE_ABOVE` of the rows), over all rows
  in chunks, one product for all units (``(rows, n_dense * U)' @ (rows, P)``);
* for the sparse columns, in blocks of :data:`BLOCK_WIDTH` consecutive columns, over *tiles*
  of :data:`TILE_ROWS` rows taken from each block's non-zero rows (gathered; the last tile of
  a block padded with weight-0 rows), one product per tile for all units.

The result is the same sum over rows (exact up to rounding: rows outside a block's support add
zeros), with the multiply-adds of the dense product reduced by the design's block density
(4-5x on the real coupled model; measured in docs/performance_decisions.md, 'Sparse
designs: Hessians from each column block's rows'). The layout (:class:`RowTiles`) is found
once per design on the host and reused by every pass; its tile count is rounded up to a
multiple of :data:`TILE_MULTIPLE` so that designs of similar sparsity (cross-validation folds)
share compiled kernels.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["RowTiles", "row_tiles", "design_tiles", "tiled_hessian_sum",
           "tiled_leverage_sum", "tiles_pay"]

#: A column non-zero in more than this fraction of the (sampled) rows is handled densely.
DENSE_ABOVE = 0.5
#: Sparse columns per block (one source's filter bank of a coupling term is 8 columns).
BLOCK_WIDTH = 8
#: Rows per tile: large enough for an efficient product, small enough to waste little on the
#: last, padded tile of each block.
TILE_ROWS = 1024
#: The tile count is padded to a multiple of this (tiles of weight 0).
TILE_MULTIPLE = 32
#: Tiles are used when they need at most this fraction of the dense product's multiply-adds.
TILES_PAY_BELOW = 0.5
#: Rows of a chunk of the dense part.
DENSE_CHUNK = 4096


class RowTiles(NamedTuple):
    """Where a sparse design is non-zero, by column block (a pytree of device arrays).

    ``X`` is the design's sampled rows (every ``stride``-th) in the compute precision;
    ``rows[k]`` are row indices into it, ``weight[k]`` 1 for a real row and 0 for padding;
    ``columns[k]`` the column indices of tile ``k``'s block (padding columns point at column 0
    with ``column_weight`` 0); ``block[k]`` the block's index; ``dense`` the dense columns;
    ``block_columns`` (n_blocks, BLOCK_WIDTH) each block's columns (padding: ``P``).
    """

    X: jax.Array              # (T_s, P) sampled rows, compute dtype
    rows: jax.Array           # (K, TILE_ROWS) int32
    weight: jax.Array         # (K, TILE_ROWS)
    columns: jax.Array        # (K, BLOCK_WIDTH) int32
    column_weight: jax.Array  # (K, BLOCK_WIDTH)
    block: jax.Array          # (K,) int32
    dense: jax.Array          # (n_dense,) int32
    block_columns: jax.Array  # (n_blocks, BLOCK_WIDTH) int32, padding = P


def _layout(nonzero: np.ndarray):
    """Dense columns, sparse blocks (arrays of consecutive columns) and each block's non-zero
    rows, from the (T_s, P) boolean pattern of the sampled rows.

    The split is the cheapest of all: each non-empty column is either dense (cost: all rows)
    or in a run of at most :data:`BLOCK_WIDTH` consecutive columns (cost: ``BLOCK_WIDTH``
    times the rows where any of them is non-zero, as a tile pads its block to that width),
    found by dynamic programming over the columns. A coupling term's filters of one source
    share their rows (the ~100 ms after its spikes), so its runs follow the sources; runs of a
    fixed width would straddle them (on the real coupled design 10.6 instead of 6.1 blocks per
    row).
    """
    T, P = nonzero.shape
    count = nonzero.sum(axis=0)
    # cost[i, k]: rows of the run of k + 1 columns starting at i (a sample of rows suffices)
    sample = nonzero[:: max(1, T // 20_000)]
    scale = T / max(sample.shape[0], 1)
    run = np.full((P, BLOCK_WIDTH), np.inf)
    for i in range(P):
        union = np.zeros(sample.shape[0], bool)
        for k in range(min(BLOCK_WIDTH, P - i)):
            union |= sample[:, i + k]
            run[i, k] = BLOCK_WIDTH * scale * union.sum()
    best = np.zeros(P + 1)
    choice = [None] * (P + 1)  # ("dense" | "empty" | run length) ending at column j - 1
    for j in range(1, P + 1):
        if count[j - 1] == 0:
            best[j], choice[j] = best[j - 1], "empty"
            continue
        best[j], choice[j] = best[j - 1] + T, "dense"
        for k in range(1, min(BLOCK_WIDTH, j) + 1):
            if np.any(count[j - k:j] == 0):
                break  # runs hold non-empty columns only
            if best[j - k] + run[j - k, k - 1] < best[j]:
                best[j], choice[j] = best[j - k] + run[j - k, k - 1], k
    dense, blocks, j = [], [], P
    while j > 0:
        if choice[j] in ("dense", "empty"):
            if choice[j] == "dense":
                dense.append(j - 1)
            j -= 1
        else:
            blocks.append(np.arange(j - choice[j], j))
            j -= choice[j]
    dense, blocks = np.array(sorted(dense), int), blocks[::-1]
    supports = [np.flatnonzero(nonzero[:, cols].any(axis=1)) for cols in blocks]
    return dense, blocks, supports


def tiles_pay(nonzero: np.ndarray, layout=None) -> bool:
    """Whether the tiled Hessian needs at most :data:`TILES_PAY_BELOW` of the dense product's
    multiply-adds for this (T_s, P) non-zero pattern (tile padding counted)."""
    T, P = nonzero.shape
    if T == 0 or P == 0:
        return False
    dense, blocks, supports = layout if layout is not None else _layout(nonzero)
    tiled_rows = sum(-(-len(s) // TILE_ROWS) * TILE_ROWS for s in supports)
    cost = T * len(dense) + tiled_rows * BLOCK_WIDTH
    return cost <= TILES_PAY_BELOW * T * P


def row_tiles(X: np.ndarray, stride: int, compute, layout=None) -> RowTiles:
    """The layout of design ``X`` (T, P; host array) over its every ``stride``-th row, with
    those rows copied in ``compute`` precision (a dtype); ``layout``: :func:`_layout` of those
    rows if already found."""
    Xs = X[::stride]
    P = X.shape[1]
    dense, blocks, supports = layout if layout is not None else _layout(Xs != 0)
    rows, weight, columns, column_weight, block = [], [], [], [], []
    for k, (cols, support) in enumerate(zip(blocks, supports)):
        n_tiles = -(-len(support) // TILE_ROWS)
        padded = np.zeros(n_tiles * TILE_ROWS, np.int32)
        padded[:len(support)] = support
        w = np.zeros(n_tiles * TILE_ROWS)
        w[:len(support)] = 1.0
        rows.append(padded.reshape(n_tiles, TILE_ROWS))
        weight.append(w.reshape(n_tiles, TILE_ROWS))
        c = np.zeros(BLOCK_WIDTH, np.int32)
        c[:len(cols)] = cols
        cw = np.zeros(BLOCK_WIDTH)
        cw[:len(cols)] = 1.0
        columns.append(np.tile(c, (n_tiles, 1)))
        column_weight.append(np.tile(cw, (n_tiles, 1)))
        block.append(np.full(n_tiles, k, np.int32))
    n = sum(len(r) for r in rows)
    pad = (-n) % TILE_MULTIPLE if n else TILE_MULTIPLE
    rows.append(np.zeros((pad, TILE_ROWS), np.int32))
    weight.append(np.zeros((pad, TILE_ROWS)))
    columns.append(np.zeros((pad, BLOCK_WIDTH), np.int32))
    column_weight.append(np.zeros((pad, BLOCK_WIDTH)))
    block.append(np.zeros(pad, np.int32))
    block_columns = np.full((max(len(blocks), 1), BLOCK_WIDTH), P, np.int32)
    for k, cols in enumerate(blocks):
        block_columns[k, :len(cols)] = cols
    dtype = jnp.dtype(compute)
    return RowTiles(jnp.asarray(Xs, dtype), jnp.asarray(np.concatenate(rows)),
                    jnp.asarray(np.concatenate(weight), dtype),
                    jnp.asarray(np.concatenate(columns)),
                    jnp.asarray(np.concatenate(column_weight), dtype),
                    jnp.asarray(np.concatenate(block)), jnp.asarray(dense, jnp.int32),
                    jnp.asarray(block_columns))


def design_tiles(X, stride: int) -> RowTiles | None:
    """The float32 tiles of design ``X`` (T, P; host or device array) over its every
    ``stride``-th row where they need at most :data:`TILES_PAY_BELOW` of the dense products'
    multiply-adds (:func:`tiles_pay`); None otherwise. For Hessians that are estimates anyway
    (float32 products of sampled rows: L-BFGS preconditioners, REML's curvature of wide
    designs, see :func:`.problem.curvature_sampling`)."""
    host = np.asarray(X)
    nonzero = host[::stride] != 0
    layout = _layout(nonzero)
    if not tiles_pay(nonzero, layout):
        return None
    return row_tiles(host, stride, jnp.float32, layout)


_ROWS = (((0,), (0,)), ((), ()))  # dot_general: contract the rows


def _over_chunks(part, X, D, zero):
    """``sum part(X[rows], D[rows])`` over chunks of :data:`DENSE_CHUNK` rows."""
    T = X.shape[0]
    n_full, rem = T // DENSE_CHUNK, T % DENSE_CHUNK
    acc = zero
    if n_full:
        acc = lax.fori_loop(0, n_full, lambda i, acc: acc + part(
            lax.dynamic_slice_in_dim(X, i * DENSE_CHUNK, DENSE_CHUNK),
            lax.dynamic_slice_in_dim(D, i * DENSE_CHUNK, DENSE_CHUNK)), acc)
    if rem:
        acc = acc + part(X[n_full * DENSE_CHUNK:], D[n_full * DENSE_CHUNK:])
    return acc


def _dense_part(Xs, D, dense, out_dtype):
    """``sum_t D[t, u] X[t, dense]' X[t, :]`` (U, n_dense, P) over all sampled rows."""
    T, P = Xs.shape
    U, n_d = D.shape[1], dense.shape[0]
    zero = jnp.zeros((n_d * U, P), out_dtype)
    if n_d == 0:
        return zero.reshape(n_d, U, P).transpose(1, 0, 2)

    def product(x, d):
        left = (x[:, dense][:, :, None] * d[:, None, :]).reshape(x.shape[0], n_d * U)
        return lax.dot_general(left, x, _ROWS).astype(out_dtype)

    return _over_chunks(product, Xs, D, zero).reshape(n_d, U, P).transpose(1, 0, 2)


def tiled_hessian_sum(tiles: RowTiles, D, stride: int, out_dtype):
    """Row sums of every unit's Hessian, intercept last (U, P+1, P+1), from the sampled rows
    (times ``stride``), as :func:`.problem.sampled_hessian_sum` forms them.

    ``D`` (T_s, U): curvature weights of the sampled rows.
    """
    Xs = tiles.X
    if D.shape[0] != Xs.shape[0]:
        raise ValueError(f"{D.shape[0]} rows of weights for tiles of {Xs.shape[0]} rows")
    T, P = Xs.shape
    U = D.shape[1]
    Dc = D.astype(Xs.dtype)
    n_blocks = tiles.block_columns.shape[0]

    def tile(k, acc):
        r = tiles.rows[k]
        x = Xs[r]                                   # (R, P)
        d = Dc[r] * tiles.weight[k][:, None]        # (R, U)
        xb = x[:, tiles.columns[k]] * tiles.column_weight[k][None, :]   # (R, W)
        left = (xb[:, :, None] * d[:, None, :]).reshape(r.shape[0], BLOCK_WIDTH * U)
        part = lax.dot_general(left, x, _ROWS).astype(out_dtype)        # (W U, P)
        return lax.dynamic_update_index_in_dim(
            acc, acc[tiles.block[k]] + part.reshape(BLOCK_WIDTH, U, P), tiles.block[k], 0)

    acc = lax.fori_loop(0, tiles.rows.shape[0], tile,
                        jnp.zeros((n_blocks, BLOCK_WIDTH, U, P), out_dtype))
    H = jnp.zeros((U, P + 1, P), out_dtype)  # row P collects the padding columns
    H = H.at[:, tiles.block_columns.reshape(-1), :].add(
        acc.reshape(n_blocks * BLOCK_WIDTH, U, P).transpose(1, 0, 2))
    H = H.at[:, tiles.dense, :].set(_dense_part(Xs, Dc, tiles.dense, out_dtype))[:, :P]
    xd = lax.dot_general(Dc, Xs, _ROWS).astype(out_dtype)   # (U, P)
    dd = jnp.sum(D, axis=0).astype(out_dtype)
    top = jnp.concatenate([H, xd[:, :, None]], axis=2)
    bottom = jnp.concatenate([xd, dd[:, None]], axis=1)[:, None, :]
    return stride * jnp.concatenate([top, bottom], axis=1)


def tiled_leverage_sum(tiles: RowTiles, Ainv, C, stride: int, out_dtype):
    """``sum_t C[t, m, u] x~_t' Ainv_u x~_t`` (M, U) over the sampled rows (times ``stride``),
    ``x~ = [x, 1]``: REML's Hessian-change slope ``tr(A^-1 dH[d_m])`` with ``C`` the rows'
    ``rw mu (x~' d_m)``.

    The leverage ``x~' Ainv x~ = sum_j x~_j (Ainv x~)_j`` is split over the coordinates ``j``:
    the dense columns and the intercept over all rows, each sparse block over its tiles.
    ``Ainv`` (U, P+1, P+1); ``C`` (T_s, M, U).
    """
    Xs = tiles.X
    T, P = Xs.shape
    U, M = Ainv.shape[0], C.shape[1]
    Ac = Ainv.astype(Xs.dtype)
    Cc = C.astype(Xs.dtype)
    ones = lambda x: jnp.concatenate([x, jnp.ones((x.shape[0], 1), x.dtype)], axis=1)  # noqa: E731
    dense = jnp.concatenate([tiles.dense, jnp.array([P], jnp.int32)])   # with the intercept
    n_d = dense.shape[0]
    A_dense = Ac[:, :, dense].transpose(1, 2, 0).reshape(P + 1, n_d * U)   # (P+1, n_d U)

    def dense_rows(x, c):
        xa = ones(x)
        q = (xa @ A_dense).reshape(x.shape[0], n_d, U)                     # (A x~)_j, j dense
        h = jnp.sum(q * xa[:, dense][:, :, None], axis=1)                  # (R, U)
        return jnp.sum(c * h[:, None, :], axis=0).astype(out_dtype)        # (M, U)

    acc = _over_chunks(dense_rows, Xs, Cc, jnp.zeros((M, U), out_dtype))

    A_cols = jnp.concatenate([Ac, jnp.zeros((U, P + 1, 1), Ac.dtype)], axis=2)  # column P+1: 0

    def tile(k, acc):
        r = tiles.rows[k]
        xa = ones(Xs[r])                                                  # (R, P+1)
        cols = jnp.where(tiles.column_weight[k] > 0, tiles.columns[k], P + 1)
        A_block = A_cols[:, :, cols].transpose(1, 2, 0).reshape(P + 1, BLOCK_WIDTH * U)
        q = (xa @ A_block).reshape(r.shape[0], BLOCK_WIDTH, U)
        xb = xa[:, tiles.columns[k]] * tiles.column_weight[k][None, :]
        h = jnp.sum(q * xb[:, :, None], axis=1) * tiles.weight[k][:, None]   # (R, U)
        return acc + jnp.sum(Cc[r] * h[:, None, :], axis=0).astype(out_dtype)

    acc = lax.fori_loop(0, tiles.rows.shape[0], tile, acc)
    return stride * acc
