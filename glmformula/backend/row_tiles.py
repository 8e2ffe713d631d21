"""Hessians of sparse shared designs from the rows where each column block is non-zero.

Spike-history and coupling filters are mostly zero: a source's filter columns are non-zero
only in the ~100 ms after its spikes. On the real coupled head-direction model (32 cells at
10 ms, 268 columns) 88% of the design is zero and a row has on average 6 of 32 sources
active. A Hessian row block ``H[b, :] = sum_t d_t x_tb x_t'`` only needs the rows where block
``b``'s columns are non-zero, so the ``U`` Hessians (and the leverages ``x' A^-1 x`` of REML's
Hessian-change slope) are formed:

* for the dense columns, over all rows in chunks, one product for all units
  (``(rows, n_dense * U)' @ (rows, P)``);
* for the other columns, in runs of at most :data:`BLOCK_WIDTH` consecutive columns, over
  *tiles* of :data:`TILE_ROWS` rows taken from each run's non-zero rows (gathered; the last
  tile of a run padded with weight-0 rows), one product per tile for all units.

Which columns are dense and where the runs end is the cheapest split of the columns
(:func:`_layout`: dynamic programming on the rows each choice multiplies).

The result is the same sum over rows (exact up to rounding: rows outside a block's support add
zeros), with the multiply-adds of the dense product reduced by the design's block density
(4-5x on the real coupled model; measured in docs/performance_decisions.md, 'Sparse
designs: Hessians from each column block's rows'). The layout (:class:`RowTiles`) is found
once per design on the host and reused by every pass; its capacities are rounded up (the tiles
to a power of two, the loop running over those in use) so that designs of similar sparsity
(cross-validation folds, the fit on all rows) share compiled kernels.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["RowTiles", "row_tiles", "design_tiles", "tiled_hessian_sum",
           "tiled_leverage_sum", "tiles_pay"]

#: Sparse columns per block (one source's filter bank of a coupling term is 8 columns).
BLOCK_WIDTH = 8
#: Rows per tile: large enough for an efficient product, small enough to waste little on the
#: last, padded tile of each block.
TILE_ROWS = 1024
#: Tiles are used when they need at most this fraction of the dense product's multiply-adds.
TILES_PAY_BELOW = 0.5
#: Rows of a chunk of the dense part.
DENSE_CHUNK = 4096


class RowTiles(NamedTuple):
    """Where a sparse design is non-zero, by column run (a pytree of device arrays).

    ``X`` is the design's sampled rows (every ``stride``-th) in the compute precision, with a
    zero column appended (index ``P``: padding points there). Tile ``k < count`` gathers the
    rows ``rows[k]`` (``weight`` 0 on the padding of a run's last tile) of run ``block[k]``;
    ``block_columns`` lists each run's columns and ``dense`` the dense ones (padding: ``P``).
    Capacities are rounded up (tiles to a power of two, runs and dense columns to multiples of
    8), and the tile loop runs to ``count``, so that designs of similar sparsity
    (cross-validation folds, a fit on all rows) share compiled kernels.
    """

    X: jax.Array              # (T_s, P + 1) sampled rows, compute dtype, last column 0
    rows: jax.Array           # (K, TILE_ROWS) int32
    weight: jax.Array         # (K, TILE_ROWS)
    block: jax.Array          # (K,) int32
    count: jax.Array          # () int32: the tiles in use
    dense: jax.Array          # (n_dense,) int32, padding P
    block_columns: jax.Array  # (n_blocks, BLOCK_WIDTH) int32, padding P


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


def _capacity(n: int, multiple: int) -> int:
    return max(multiple, -(-n // multiple) * multiple)


def row_tiles(X: np.ndarray, stride: int, compute, layout=None) -> RowTiles:
    """The layout of design ``X`` (T, P; host array) over its every ``stride``-th row, with
    those rows copied in ``compute`` precision (a dtype); ``layout``: :func:`_layout` of those
    rows if already found."""
    Xs = X[::stride]
    T, P = Xs.shape
    dense, blocks, supports = layout if layout is not None else _layout(Xs != 0)
    sizes = [-(-len(support) // TILE_ROWS) for support in supports]
    count = sum(sizes)
    K = 1 << max(count - 1, 0).bit_length()  # a power of two
    rows = np.zeros((K, TILE_ROWS), np.int32)
    weight = np.zeros((K, TILE_ROWS))
    block = np.zeros(K, np.int32)
    block_columns = np.full((_capacity(len(blocks), 8), BLOCK_WIDTH), P, np.int32)
    k = 0
    for b, (cols, support, n) in enumerate(zip(blocks, supports, sizes)):
        flat = rows[k:k + n].reshape(-1)
        flat[:len(support)] = support
        weight[k:k + n].reshape(-1)[:len(support)] = 1.0
        block[k:k + n] = b
        block_columns[b, :len(cols)] = cols
        k += n
    dense_columns = np.full(_capacity(len(dense), 8), P, np.int32)
    dense_columns[:len(dense)] = dense
    dtype = jnp.dtype(compute)
    padded = np.zeros((T, P + 1), dtype)
    padded[:, :P] = Xs
    return RowTiles(jnp.asarray(padded), jnp.asarray(rows), jnp.asarray(weight, dtype),
                    jnp.asarray(block), jnp.asarray(count, jnp.int32),
                    jnp.asarray(dense_columns), jnp.asarray(block_columns))


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
    """``sum_t D[t, u] X[t, dense]' X[t, :]`` (U, n_dense, P + 1) over all sampled rows."""
    P1 = Xs.shape[1]
    U, n_d = D.shape[1], dense.shape[0]

    def product(x, d):
        left = (x[:, dense][:, :, None] * d[:, None, :]).reshape(x.shape[0], n_d * U)
        return lax.dot_general(left, x, _ROWS).astype(out_dtype)

    acc = _over_chunks(product, Xs, D, jnp.zeros((n_d * U, P1), out_dtype))
    return acc.reshape(n_d, U, P1).transpose(1, 0, 2)


def tiled_hessian_sum(tiles: RowTiles, D, stride: int, out_dtype):
    """Row sums of every unit's Hessian, intercept last (U, P+1, P+1), from the sampled rows
    (times ``stride``), as :func:`.problem.sampled_hessian_sum` forms them.

    ``D`` (T_s, U): curvature weights of the sampled rows.
    """
    Xs = tiles.X
    if D.shape[0] != Xs.shape[0]:
        raise ValueError(f"{D.shape[0]} rows of weights for tiles of {Xs.shape[0]} rows")
    P = Xs.shape[1] - 1
    U = D.shape[1]
    Dc = D.astype(Xs.dtype)
    n_blocks = tiles.block_columns.shape[0]

    def tile(k, acc):
        r = tiles.rows[k]
        x = Xs[r]                                   # (R, P + 1)
        d = Dc[r] * tiles.weight[k][:, None]        # (R, U)
        xb = x[:, tiles.block_columns[tiles.block[k]]]   # (R, W); padding: the zero column
        left = (xb[:, :, None] * d[:, None, :]).reshape(r.shape[0], BLOCK_WIDTH * U)
        part = lax.dot_general(left, x, _ROWS).astype(out_dtype)        # (W U, P + 1)
        return lax.dynamic_update_index_in_dim(
            acc, acc[tiles.block[k]] + part.reshape(BLOCK_WIDTH, U, P + 1), tiles.block[k], 0)

    acc = lax.fori_loop(0, tiles.count, tile,
                        jnp.zeros((n_blocks, BLOCK_WIDTH, U, P + 1), out_dtype))
    H = jnp.zeros((U, P + 1, P + 1), out_dtype)  # row and column P collect the padding
    H = H.at[:, tiles.block_columns.reshape(-1), :].add(
        acc.reshape(n_blocks * BLOCK_WIDTH, U, P + 1).transpose(1, 0, 2))
    H = H.at[:, tiles.dense, :].set(_dense_part(Xs, Dc, tiles.dense, out_dtype))[:, :P, :P]
    xd = lax.dot_general(Dc, Xs[:, :P], _ROWS).astype(out_dtype)   # (U, P)
    dd = jnp.sum(D, axis=0).astype(out_dtype)
    top = jnp.concatenate([H, xd[:, :, None]], axis=2)
    bottom = jnp.concatenate([xd, dd[:, None]], axis=1)[:, None, :]
    return stride * jnp.concatenate([top, bottom], axis=1)


def tiled_leverage_sum(tiles: RowTiles, Ainv, C, stride: int, out_dtype):
    """``sum_t C[t, m, u] x~_t' Ainv_u x~_t`` (M, U) over the sampled rows (times ``stride``),
    ``x~ = [x, 1]``: REML's Hessian-change slope ``tr(A^-1 dH[d_m])`` with ``C`` the rows'
    ``rw mu (x~' d_m)``.

    The leverage ``x~' Ainv x~ = sum_j x~_j (Ainv x~)_j`` is split over the coordinates ``j``:
    the dense columns and the intercept over all rows, each run of columns over its tiles.
    ``Ainv`` (U, P+1, P+1); ``C`` (T_s, M, U).
    """
    Xs = tiles.X
    P = Xs.shape[1] - 1
    U, M = Ainv.shape[0], C.shape[1]
    # coordinates: the P columns, the intercept (P), a zero coordinate (P + 1) for padding
    Ac = jnp.pad(Ainv.astype(Xs.dtype), ((0, 0), (0, 1), (0, 1)))
    Cc = C.astype(Xs.dtype)
    zero = jnp.array(P + 1, jnp.int32)

    def coordinates(x):  # [x, 1, 0] from a row of tiles.X ([x, 0])
        return jnp.concatenate([x[:, :P], jnp.ones((x.shape[0], 1), x.dtype), x[:, P:]], axis=1)

    def leverage_part(xa, cols, width):  # sum_{j in cols} x~_j (Ainv x~)_j  (R, U)
        A_cols = Ac[:, :, cols].transpose(1, 2, 0).reshape(P + 2, width * U)
        q = (xa @ A_cols).reshape(xa.shape[0], width, U)
        return jnp.sum(q * xa[:, cols][:, :, None], axis=1)

    dense = jnp.concatenate([jnp.where(tiles.dense == P, zero, tiles.dense),
                             jnp.array([P], jnp.int32)])   # with the intercept

    def dense_rows(x, c):
        h = leverage_part(coordinates(x), dense, dense.shape[0])
        return jnp.sum(c * h[:, None, :], axis=0).astype(out_dtype)   # (M, U)

    acc = _over_chunks(dense_rows, Xs, Cc, jnp.zeros((M, U), out_dtype))

    def tile(k, acc):
        r = tiles.rows[k]
        cols = tiles.block_columns[tiles.block[k]]
        cols = jnp.where(cols == P, zero, cols)
        h = leverage_part(coordinates(Xs[r]), cols, BLOCK_WIDTH) * tiles.weight[k][:, None]
        return acc + jnp.sum(Cc[r] * h[:, None, :], axis=0).astype(out_dtype)

    return stride * lax.fori_loop(0, tiles.count, tile, acc)
