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

The Hessians are symmetric, and so is ``A^-1`` in the leverages: the runs are grouped in
:data:`BANDS` consecutive bands, and a run's tiles multiply only the columns of its own band
and of the bands after it (the dense columns' rows hold the rest; the other entries are the
mirror images): about 9/16 of the products over all columns. The tiles' copy of the rows keeps
the columns in that order (each run's columns padded to :data:`BLOCK_WIDTH`, then the dense
ones), so a band's columns are one contiguous slice.

The result is the same sum over rows (exact up to rounding: rows outside a block's support add
zeros), with the multiply-adds of the dense product reduced by the design's block density
(4-5x on the real coupled model; measured in docs/performance_decisions.md, 'Sparse
designs: Hessians from each column block's rows'). The layout (:class:`RowTiles`) is found
once per design on the host and reused by every pass; its capacities are rounded up (the tiles
to a power of two, the loops running over those in use) so that designs of similar sparsity
(cross-validation folds, the fit on all rows) share compiled kernels.
"""

from __future__ import annotations

import functools
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
#: Consecutive bands of runs (see the module docstring): the products cover ``(B + 1) / 2B``
#: of the columns on average; each band is a loop of its own in the compiled kernels. On the
#: real coupled head-direction model (33 runs of 8 columns, 113,286 sampled rows, 32 units,
#: float32; alternated in one process) one Hessian took 0.61-0.67 s with 8 bands against
#: 0.99-1.04 s over all columns, REML's leverage pass 0.80-0.92 s against 1.18-1.38 s; 16 bands
#: 0.60-0.72 / 0.78-0.91 s with 0.7 s more compilation, one band per run 0.62 / 0.76-0.84 s
#: with 1.4 s more (/tmp/s17/kern6.py, session 17).
BANDS = 8
#: The runs' capacity is rounded up to a multiple of this (empty runs first).
RUNS_MULTIPLE = 4


class RowTiles(NamedTuple):
    """Where a sparse design is non-zero, by column run (a pytree of device arrays).

    ``X`` is the design's sampled rows (every ``stride``-th) in the compute precision, its
    columns in *slots*: run ``b``'s columns at ``b * BLOCK_WIDTH`` onwards (a short run padded
    with zero columns; the runs ordered by their number of rows, so that the runs with the
    most tiles multiply the fewest columns), then the dense columns (padded to a multiple of
    8), then one zero column; ``slot[j]`` is column ``j``'s (an all-zero column: the last
    one). Tile ``k < count`` gathers the rows ``rows[k]`` (``weight`` 0 on the padding of a
    run's last tile) of run ``block[k]``; the tiles are in run order, band ``g``'s from
    ``band_start[g]`` to ``band_start[g + 1]`` (:func:`_bands`). ``block_columns`` lists
    each run's columns and ``dense`` the dense ones (padding: ``P``). Capacities are rounded
    up (tiles to a power of two, runs to a multiple of :data:`RUNS_MULTIPLE` with the empty
    ones first, dense columns to a multiple of 8) and the loops run to ``count``, so that
    designs of similar sparsity (cross-validation folds, a fit on all rows) share compiled
    kernels.
    """

    X: jax.Array              # (T_s, slots) sampled rows, compute dtype, columns in slots
    rows: jax.Array           # (K, TILE_ROWS) int32
    weight: jax.Array         # (K, TILE_ROWS)
    block: jax.Array          # (K,) int32
    count: jax.Array          # () int32: the tiles in use
    band_start: jax.Array     # (n_bands + 1,) int32: each band's first tile, then count
    slot: jax.Array           # (P,) int32: each column's slot in X
    dense: jax.Array          # (n_dense,) int32, padding P
    block_columns: jax.Array  # (n_blocks, BLOCK_WIDTH) int32, padding P


def _bands(n_blocks: int) -> list[tuple[int, int]]:
    """The runs of each band, ``(first, end)``: :data:`BANDS` (at most one per run) of nearly
    equal numbers of runs."""
    n = min(BANDS, n_blocks)
    edges = [round(g * n_blocks / n) for g in range(n + 1)]
    return list(zip(edges[:-1], edges[1:]))


def _run_rows(nonzero: np.ndarray) -> np.ndarray:
    """``rows[i, k]``: the rows (of the (T, P) pattern) where any of the columns ``i .. i + k``
    is non-zero (inf where the run would pass the last column), ``k < BLOCK_WIDTH``. The
    columns as bits, so that a union of runs is an OR of a byte per 8 rows (twice as fast as
    the boolean unions column by column, on the real coupled design)."""
    P = nonzero.shape[1]
    bits = np.packbits(nonzero, axis=0)                    # (rows / 8, P)
    rows = np.full((P, BLOCK_WIDTH), np.inf)
    union = bits
    for k in range(min(BLOCK_WIDTH, P)):
        if k:
            union = union[:, :-1] | bits[:, k:]            # columns i .. i + k
        rows[:P - k, k] = np.bitwise_count(union).sum(axis=0)
    return rows


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
    run = BLOCK_WIDTH * scale * _run_rows(sample)
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
    return _tiled_multiply_adds(T, len(dense), tiled_rows) <= TILES_PAY_BELOW * T * P


def _tiled_multiply_adds(n_rows: int, n_dense: int, tiled_rows: int) -> int:
    """Multiply-adds of a tiled Hessian pass per unit and column, relative to one column: the
    dense columns over every row, each tile's rows over a block of :data:`BLOCK_WIDTH`."""
    return n_rows * n_dense + tiled_rows * BLOCK_WIDTH


def dense_fraction(tiles: RowTiles | None, n_cols: int) -> float:
    """The multiply-adds of a tiled Hessian pass over those of the dense pass over all
    ``n_cols`` columns of the same sampled rows (tile padding counted; 1 without tiles)."""
    if tiles is None or n_cols == 0:
        return 1.0
    n_rows = tiles.X.shape[0]
    n_dense = int(np.sum(np.asarray(tiles.dense) < n_cols))
    tiled_rows = int(tiles.count) * TILE_ROWS
    return _tiled_multiply_adds(n_rows, n_dense, tiled_rows) / (n_rows * n_cols)


def _capacity(n: int, multiple: int) -> int:
    return max(multiple, -(-n // multiple) * multiple)


def row_tiles(X, stride: int, compute, layout=None) -> RowTiles:
    """The layout of design ``X`` (T, P; host or device array) over its every ``stride``-th
    row, with those rows copied in ``compute`` precision (a dtype); ``layout``:
    :func:`_layout` of those rows if already found."""
    Xs = np.asarray(X)[::stride]
    T, P = Xs.shape
    dense, blocks, supports = layout if layout is not None else _layout(Xs != 0)
    # the runs with the most rows last, where their tiles multiply the fewest columns
    by_rows = np.argsort([len(support) for support in supports], kind="stable")
    blocks, supports = [blocks[i] for i in by_rows], [supports[i] for i in by_rows]
    sizes = [-(-len(support) // TILE_ROWS) for support in supports]
    count = sum(sizes)
    K = 1 << max(count - 1, 0).bit_length()  # a power of two
    rows = np.zeros((K, TILE_ROWS), np.int32)
    weight = np.zeros((K, TILE_ROWS))
    block = np.zeros(K, np.int32)
    # empty runs first (no tiles; only band 0, which multiplies every run's columns anyway,
    # is wider), so that designs whose run counts differ by a few share compiled kernels
    empty = _capacity(len(blocks), RUNS_MULTIPLE) - len(blocks)
    block_columns = np.full((empty + len(blocks), BLOCK_WIDTH), P, np.int32)
    k = 0
    for b, (cols, support, n) in enumerate(zip(blocks, supports, sizes), start=empty):
        flat = rows[k:k + n].reshape(-1)
        flat[:len(support)] = support
        weight[k:k + n].reshape(-1)[:len(support)] = 1.0
        block[k:k + n] = b
        block_columns[b, :len(cols)] = cols
        k += n
    dense_columns = np.full(_capacity(len(dense), 8), P, np.int32)
    dense_columns[:len(dense)] = dense
    # the columns in slots (see RowTiles); padding and all-zero columns read the zero column
    in_slots = np.concatenate([block_columns.reshape(-1), dense_columns])  # column per slot
    zero_slot = len(in_slots)
    slots = np.flatnonzero(in_slots < P)  # the slots holding a column
    columns = in_slots[slots]
    slot = np.full(P, zero_slot, np.int32)
    slot[columns] = slots
    band_start = [int(np.searchsorted(block[:count], first)) for first, _ in
                  _bands(len(block_columns))] + [count]
    dtype = jnp.dtype(compute)
    source = np.append(in_slots, P).astype(np.int32)  # each slot's column (P: zeros)
    padded = _in_slots(X if isinstance(X, jax.Array) else jnp.asarray(X), jnp.asarray(source),
                       int(stride), dtype)
    return RowTiles(padded, jnp.asarray(rows), jnp.asarray(weight, dtype),
                    jnp.asarray(block), jnp.asarray(count, jnp.int32),
                    jnp.asarray(band_start, jnp.int32), jnp.asarray(slot),
                    jnp.asarray(dense_columns), jnp.asarray(block_columns))


@functools.partial(jax.jit, static_argnames=("stride", "dtype"))
def _in_slots(X, source, stride: int, dtype):
    """Every ``stride``-th row of ``X`` with its columns in slots (``source``: each slot's
    column, ``P`` for a zero slot) in ``dtype``: one compiled gather on the device (on the
    host, run by run of columns into a new array and then copied to the device, it took
    0.26 s for the real coupled design's 113k sampled rows)."""
    Xs = X[::stride]
    taken = jnp.take(Xs, jnp.minimum(source, X.shape[1] - 1), axis=1)
    return jnp.where(source[None, :] < X.shape[1], taken, 0).astype(dtype)


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
    return row_tiles(X, stride, jnp.float32, layout)


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


def _dense_part(Xs, D, start: int, out_dtype):
    """``sum_t D[t, u] X[t, s]' X[t, :]`` (U, slots - start, slots) over all sampled rows for
    the slots ``s`` from ``start`` on (the dense columns)."""
    n_d, U = Xs.shape[1] - start, D.shape[1]

    def product(x, d):
        left = (x[:, start:][:, :, None] * d[:, None, :]).reshape(x.shape[0], n_d * U)
        return lax.dot_general(left, x, _ROWS).astype(out_dtype)

    acc = _over_chunks(product, Xs, D, jnp.zeros((n_d * U, Xs.shape[1]), out_dtype))
    return acc.reshape(n_d, U, Xs.shape[1]).transpose(1, 0, 2)


def tiled_hessian_sum(tiles: RowTiles, D, stride: int, out_dtype):
    """Row sums of every unit's Hessian, intercept last (U, P+1, P+1), from the sampled rows
    (times ``stride``), as :func:`.problem.sampled_hessian_sum` forms them.

    ``D`` (T_s, U): curvature weights of the sampled rows.
    """
    Xs = tiles.X
    if D.shape[0] != Xs.shape[0]:
        raise ValueError(f"{D.shape[0]} rows of weights for tiles of {Xs.shape[0]} rows")
    n_slots, U = Xs.shape[1], D.shape[1]
    run_end = tiles.block_columns.shape[0] * BLOCK_WIDTH  # the runs' slots end here
    Dc = D.astype(Xs.dtype)
    H = jnp.zeros((U, n_slots, n_slots), out_dtype)
    formed = np.zeros((n_slots, n_slots), bool)  # the rest is the mirror image
    for g, (first, end) in enumerate(_bands(tiles.block_columns.shape[0])):
        lo, hi = first * BLOCK_WIDTH, end * BLOCK_WIDTH

        def tile(k, acc, lo=lo, first=first):
            r = tiles.rows[k]
            x = Xs[r]                                            # (R, slots)
            d = Dc[r] * tiles.weight[k][:, None]                 # (R, U)
            xb = lax.dynamic_slice_in_dim(x, tiles.block[k] * BLOCK_WIDTH, BLOCK_WIDTH, 1)
            left = (xb[:, :, None] * d[:, None, :]).reshape(r.shape[0], BLOCK_WIDTH * U)
            part = lax.dot_general(left, x[:, lo:run_end], _ROWS).astype(out_dtype)
            i = tiles.block[k] - first
            return lax.dynamic_update_index_in_dim(
                acc, acc[i] + part.reshape(BLOCK_WIDTH, U, run_end - lo), i, 0)

        acc = lax.fori_loop(tiles.band_start[g], tiles.band_start[g + 1], tile,
                            jnp.zeros((end - first, BLOCK_WIDTH, U, run_end - lo), out_dtype))
        H = H.at[:, lo:hi, lo:run_end].set(
            acc.reshape(hi - lo, U, run_end - lo).transpose(1, 0, 2))
        formed[lo:hi, lo:run_end] = True
    H = H.at[:, run_end:, :].set(_dense_part(Xs, Dc, run_end, out_dtype))
    formed[run_end:, :] = True
    H = jnp.where(formed[None], H, jnp.swapaxes(H, 1, 2))
    slot = tiles.slot
    H = H[:, slot[:, None], slot[None, :]]
    xd = lax.dot_general(Dc, Xs, _ROWS).astype(out_dtype)[:, slot]   # (U, P)
    dd = jnp.sum(D, axis=0).astype(out_dtype)
    top = jnp.concatenate([H, xd[:, :, None]], axis=2)
    bottom = jnp.concatenate([xd, dd[:, None]], axis=1)[:, None, :]
    return stride * jnp.concatenate([top, bottom], axis=1)


def tiled_leverage_sum(tiles: RowTiles, Ainv, C, stride: int, out_dtype):
    """``sum_t C[t, m, u] x~_t' Ainv_u x~_t`` (M, U) over the sampled rows (times ``stride``),
    ``x~ = [x, 1]``: REML's Hessian-change slope ``tr(A^-1 dH[d_m])`` with ``C`` the rows'
    ``rw mu (x~' d_m)``.

    ``x~' Ainv x~ = sum_jk x~_j Ainv_jk x~_k`` in slots, each pair once: the dense slots and
    the intercept with every slot over all rows (the pairs with a run's slot counted twice),
    each run's tiles with the slots of its band (once) and of the later bands (twice).
    ``Ainv`` (U, P+1, P+1); ``C`` (T_s, M, U).
    """
    Xs = tiles.X
    n_slots = Xs.shape[1]
    U, M = Ainv.shape[0], C.shape[1]
    run_end = tiles.block_columns.shape[0] * BLOCK_WIDTH
    # Ainv in slots, the intercept in slot n_slots (the zero slot, shared by all-zero columns,
    # cleared: its products are zero anyway)
    place = jnp.concatenate([tiles.slot, jnp.array([n_slots], jnp.int32)])
    As = jnp.zeros((U, n_slots + 1, n_slots + 1), Xs.dtype).at[
        :, place[:, None], place[None, :]].set(Ainv.astype(Xs.dtype))
    As = As.at[:, n_slots - 1, :].set(0.0).at[:, :, n_slots - 1].set(0.0)
    Cc = C.astype(Xs.dtype)

    def with_intercept(x):
        return jnp.concatenate([x, jnp.ones((x.shape[0], 1), x.dtype)], axis=1)

    n_d = n_slots + 1 - run_end
    twice = jnp.where(jnp.arange(n_slots + 1) < run_end, 2.0, 1.0).astype(Xs.dtype)
    A_dense = (As[:, :, run_end:] * twice[None, :, None]).transpose(1, 2, 0).reshape(
        n_slots + 1, n_d * U)

    def dense_rows(x, c):
        xa = with_intercept(x)
        q = (xa @ A_dense).reshape(xa.shape[0], n_d, U)
        h = jnp.sum(q * xa[:, run_end:, None], axis=1)
        return jnp.sum(c * h[:, None, :], axis=0).astype(out_dtype)   # (M, U)

    acc = _over_chunks(dense_rows, Xs, Cc, jnp.zeros((M, U), out_dtype))
    for g, (first, end) in enumerate(_bands(tiles.block_columns.shape[0])):
        lo, hi = first * BLOCK_WIDTH, end * BLOCK_WIDTH
        width = run_end - lo
        once = jnp.where(jnp.arange(width) < hi - lo, 1.0, 2.0).astype(Xs.dtype)
        # each run's columns of Ainv over the band's slots and the later ones, weighted
        A_runs = (As[:, lo:run_end, lo:hi] * once[None, :, None]).reshape(
            U, width, end - first, BLOCK_WIDTH).transpose(2, 1, 3, 0).reshape(
            end - first, width, BLOCK_WIDTH * U)

        def tile(k, acc, lo=lo, first=first, A_runs=A_runs):
            r = tiles.rows[k]
            x = Xs[r]
            q = (x[:, lo:run_end] @ A_runs[tiles.block[k] - first]).reshape(
                r.shape[0], BLOCK_WIDTH, U)
            xb = lax.dynamic_slice_in_dim(x, tiles.block[k] * BLOCK_WIDTH, BLOCK_WIDTH, 1)
            h = jnp.sum(q * xb[:, :, None], axis=1) * tiles.weight[k][:, None]
            return acc + jnp.sum(Cc[r] * h[:, None, :], axis=0).astype(out_dtype)

        acc = lax.fori_loop(tiles.band_start[g], tiles.band_start[g + 1], tile, acc)
    return stride * acc
