"""Causal convolution of sparse signals (spike counts) from their non-zero entries.

``out[t, c*K + k] = sum_{j=1..W} kernels[j-1, k] * signal[t-j, c]`` over the rows of ``t``'s own
segment, as in :func:`~glmformula.graph.convolution.causal_convolve`. The dense methods there
spend ``~W`` (direct) or ``~log W`` (FFT) operations on every output, whatever the input; a
spike train binned at 1 ms is almost all zeros, and its convolution is the sum of a few copies
of the kernels, one per spike in the window. This method lists each row chunk's non-zero
entries per channel and adds, for every output row and channel, the kernels' rows at the lags
of the entries in its window: ``T C K`` writes plus ``nnz W K`` multiply-adds, accumulated in
float64 and written once (measured: docs/performance_decisions.md, 'Sparse signals: convolution
from the non-zero entries').

The kernel is compiled by Numba (a dependency of pynapple, already imported with it) and
releases the GIL, so row chunks run on a pool of threads.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from numpy.typing import NDArray

__all__ = ["sparse_causal_convolve", "CHUNK_ROWS"]

#: Output rows per task: its non-zero lists (at most ``(CHUNK_ROWS + W) * C`` entries) stay
#: small, and enough tasks keep the threads busy.
CHUNK_ROWS = 4096


def _compiled(function):
    """Numba-compile ``function``, cached on disk where Numba finds a writable place (next to
    this file, else the user's cache directory); without one, compiled in each process."""
    try:
        return numba.njit(nogil=True, cache=True)(function)
    except RuntimeError:  # no writable cache location: Numba refuses cache=True
        return numba.njit(nogil=True)(function)


@_compiled
def _convolve_chunks(signal, kernels, tasks, out):  # pragma: no cover - compiled
    """Fill ``out[r0:r1]`` for each task ``(segment start, r0, r1)`` (rows of one segment)."""
    width, n_filters = kernels.shape
    n_channels = signal.shape[1]
    acc = np.empty(n_filters)
    for task in range(tasks.shape[0]):
        seg_start, r0, r1 = tasks[task, 0], tasks[task, 1], tasks[task, 2]
        first = max(seg_start, r0 - width)
        # the non-zero entries of rows first .. r1-2 (the last output reads row r1-2 at lag 1),
        # channel by channel: counts, then offsets, then rows and values
        bounds = np.zeros(n_channels + 1, np.int64)
        for r in range(first, r1 - 1):
            for c in range(n_channels):
                if signal[r, c] != 0.0:
                    bounds[c + 1] += 1
        for c in range(n_channels):
            bounds[c + 1] += bounds[c]
        rows = np.empty(bounds[n_channels], np.int64)
        values = np.empty(bounds[n_channels])
        fill = bounds[:n_channels].copy()
        for r in range(first, r1 - 1):
            for c in range(n_channels):
                v = signal[r, c]
                if v != 0.0:
                    rows[fill[c]] = r
                    values[fill[c]] = v
                    fill[c] += 1
        # each channel's window [max(seg_start, t - W), t - 1] as a range lo[c]:hi[c] of its
        # entries, both ends only moving forward as t grows
        lo = bounds[:n_channels].copy()
        hi = bounds[:n_channels].copy()
        for t in range(r0, r1):
            oldest = max(seg_start, t - width)
            for c in range(n_channels):
                h = hi[c]
                end = bounds[c + 1]
                while h < end and rows[h] < t:
                    h += 1
                hi[c] = h
                low = lo[c]
                while low < h and rows[low] < oldest:
                    low += 1
                lo[c] = low
                for k in range(n_filters):
                    acc[k] = 0.0
                finite = True
                for i in range(low, h):
                    v = values[i]
                    if not np.isfinite(v):
                        finite = False
                    lag = t - 1 - rows[i]
                    for k in range(n_filters):
                        acc[k] += v * kernels[lag, k]
                base = c * n_filters
                if finite:
                    for k in range(n_filters):
                        out[t, base + k] = acc[k]
                else:  # a non-finite input poisons the channel while it is in the window
                    for k in range(n_filters):
                        out[t, base + k] = np.nan
    return 0


def sparse_causal_convolve(signal: NDArray, kernels: NDArray[np.float64],
                           segments: NDArray[np.int64], out: NDArray, threads: int) -> NDArray:
    """Fill the rows of ``segments`` in ``out`` (``(T, C*K)``, float32 or float64).

    Parameters
    ----------
    signal :
        ``(T, C)`` values (float32 and float64 read as they are: no copy of the binned counts;
        other dtypes converted to float64).
    kernels :
        ``(W, K)`` float64 filters, row ``j`` the weight at lag ``j + 1`` bins.
    segments :
        ``(E, 2)`` disjoint ``[start, stop)`` row ranges, validated by the caller.
    out :
        The output; rows outside every segment are left as they are.
    threads :
        Threads sharing the row chunks.

    Returns
    -------
    out
    """
    if signal.dtype not in (np.float32, np.float64):
        signal = signal.astype(np.float64)
    kernels = np.ascontiguousarray(kernels, dtype=np.float64)
    tasks = np.array([(start, r0, min(r0 + CHUNK_ROWS, stop))
                      for start, stop in segments for r0 in range(start, stop, CHUNK_ROWS)],
                     dtype=np.int64).reshape(-1, 3)
    threads = max(1, min(threads, len(tasks)))
    if threads == 1:
        _convolve_chunks(signal, kernels, tasks, out)
        return out
    # interleaved shares: neighbouring chunks (similar densities) go to different threads
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(lambda share: _convolve_chunks(signal, kernels, share, out),
                          [tasks[i::threads] for i in range(threads)]):
            pass
    return out
