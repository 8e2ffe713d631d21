"""Causal convolution of multichannel signals with a filter bank, per epoch.

The design matrix of history and coupling terms is
``out[t, c*K + k] = sum_{j=1..W} kernels[j-1, k] * signal[t-j, c]`` where the
sum only uses rows of ``t``'s own segment (epoch). Three exact methods compute
it in bounded memory, writing straight into a preallocated (typically float32)
output:

- ``"direct"``: lagged copies of the signal (im2col) times the kernels in one
  BLAS matrix product per block; cost ~ W per (row, channel, filter).
- ``"fft"``: overlap-save with real FFTs along time, one forward transform per
  channel and one inverse per (channel, filter); cost ~ log(W) per
  (row, channel, filter), independent of the window length otherwise.
- ``"sparse"``: the kernels added at the lags of each window's non-zero
  entries (:mod:`.sparse_convolution`); cost ~ (non-zero entries per window)
  per (row, channel, filter): spike counts in fine bins.

Segments are laid end to end in a *gapped* row space with W zero rows before
each one, so a single sweep over fixed-size chunks handles one long recording
and thousands of short trials alike, and no window ever reaches across a
segment border.

Non-finite input (NaN, inf) makes every output of that channel NaN while it
is inside the window (lags 1..W), in both methods, so the caller drops those
rows.
"""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import ArrayLike, DTypeLike, NDArray

from .._blas import BLAS as _BLAS
from .sparse_convolution import sparse_causal_convolve

__all__ = ["causal_convolve", "lagged_convolve", "valid_rows", "choose_method"]

# Windows of at least this many bins use the FFT: the direct method's cost grows
# linearly in W, the FFT's is flat, and they cross at a few tens of bins (both
# linear in K). Ties go to the FFT. Set from benchmarks/convolution.py; kept at 48
# until measured on a quiet machine (measured so far: docs/performance_decisions.md,
# 'Direct/FFT crossover: FFT_MIN_WINDOW').
FFT_MIN_WINDOW = 48

# Signals with at most this many non-zero entries per window, on average (non-zero fraction
# times W), use the sparse method: its cost grows with them, the dense methods' does not. Set
# from benchmarks/convolution.py (docs/performance_decisions.md, 'Sparse signals: convolution
# from the non-zero entries').
SPARSE_MAX_PER_WINDOW = 10.0

# Working-set targets per block (bytes of float64 temporaries), small enough
# to stay near cache and to keep peak memory close to the output itself.
_DIRECT_BLOCK_BYTES = 8 * 2**20
_FFT_BLOCK_BYTES = 24 * 2**20
# Shortest FFT. Shorter transforms stay in cache; much shorter ones waste the
# W-row overlap (applies up to W = 127: 8 * (W + 1) > 1024 from W = 128 on;
# measured: docs/performance_decisions.md, 'Shortest FFT: _FFT_MIN_LENGTH').
_FFT_MIN_LENGTH = 1024


def choose_method(window_bins: int, n_filters: int,
                  nonzero_fraction: float = 1.0) -> Literal["direct", "fft", "sparse"]:
    """The faster exact method for a window length and a signal's sparsity (the measured
    crossovers ``SPARSE_MAX_PER_WINDOW`` and ``FFT_MIN_WINDOW``).

    Parameters
    ----------
    window_bins :
        Filter length W, in bins.
    n_filters :
        Number of filters K (unused by the current rule: every method scales
        linearly in K at the sizes we measured).
    nonzero_fraction :
        Fraction of the signal's entries that are not zero (1: dense).

    Returns
    -------
    str
        ``"sparse"`` where a window holds at most ``SPARSE_MAX_PER_WINDOW``
        non-zero entries on average, else ``"direct"`` for windows shorter than
        ``FFT_MIN_WINDOW`` bins, else ``"fft"``.
    """
    del n_filters
    if nonzero_fraction * window_bins <= SPARSE_MAX_PER_WINDOW:
        return "sparse"
    return "direct" if window_bins < FFT_MIN_WINDOW else "fft"


def valid_rows(segments: ArrayLike, n_rows: int, lead_bins: int) -> NDArray[np.bool_]:
    """Rows whose whole causal window lies inside their own segment.

    Parameters
    ----------
    segments :
        Int array ``(E, 2)`` of ``[start_row, stop_row)`` ranges.
    n_rows :
        Number of rows T of the grid.
    lead_bins :
        Window length W in bins: row ``t`` needs rows ``t-W .. t-1``.

    Returns
    -------
    np.ndarray
        Bool ``(n_rows,)``: True where ``t`` is in a segment and
        ``t - start >= lead_bins``. Rows outside every segment are False.
    """
    segs = _check_segments(segments, n_rows)
    if lead_bins < 0:
        raise ValueError(f"lead_bins must be >= 0, got {lead_bins}.")
    ok = np.zeros(n_rows, dtype=bool)
    for start, stop in segs:
        ok[min(start + lead_bins, stop) : stop] = True
    return ok


def causal_convolve(
    signal: ArrayLike,
    kernels: ArrayLike,
    segments: ArrayLike,
    *,
    out: NDArray | None = None,
    dtype: DTypeLike = np.float32,
    method: Literal["auto", "direct", "fft", "sparse"] = "auto",
    workers: int | None = -1,
) -> NDArray:
    """Convolve every channel with every causal filter, within segments.

    Parameters
    ----------
    signal :
        ``(T, C)`` values on a row grid of bins (spike counts of C units, or a
        covariate with C columns); 1-D is read as ``C = 1``. Any real dtype.
    kernels :
        ``(W, K)`` filters, row ``j`` the weight at lag ``j + 1`` bins (as from
        :func:`glmformula.bases.causal_filters`).
    segments :
        Int ``(E, 2)`` disjoint ``[start_row, stop_row)`` ranges (epochs).
        Windows never cross a segment border; the first rows of a segment get
        the partial sums over what exists (see :func:`valid_rows`).
    out :
        Optional preallocated ``(T, C*K)`` float array to fill in place.
    dtype :
        Output dtype when ``out`` is None. Sums are accumulated in float64
        whatever the output dtype.
    method :
        ``"direct"``, ``"fft"``, ``"sparse"`` or ``"auto"`` (:func:`choose_method`
        given the signal's fraction of non-zero entries).
    workers :
        Threads, as ``scipy.fft`` reads it (``-1``: all cores, ``None`` or
        1: one): chunks of rows are processed in parallel. On the direct
        path this needs ``threadpoolctl`` (BLAS is then held to one thread
        per product); without it the direct path runs serially and BLAS
        threads as the library is configured.

    Returns
    -------
    np.ndarray
        ``(T, C*K)``, channel-major columns: ``out[t, c*K + k]``. Rows outside
        every segment are 0. A window containing NaN or inf of channel c gives
        NaN in channel c's K columns.
    """
    signal = np.asarray(signal)
    if signal.ndim == 1:
        signal = signal[:, None]
    if signal.ndim != 2:
        raise ValueError(f"signal must be (T, C), got shape {signal.shape}.")
    n_rows, n_channels = signal.shape
    kernels = _check_kernels(kernels)
    width, n_filters = kernels.shape
    segs = _check_segments(segments, n_rows)
    out = _prepare_out(out, (n_rows, n_channels * n_filters), dtype)
    if method == "auto":
        nonzero = np.count_nonzero(signal) / max(signal.size, 1)  # NaN and inf count
        method = choose_method(width, n_filters, nonzero)
    if method not in ("direct", "fft", "sparse"):
        raise ValueError(f"method must be 'auto', 'direct', 'fft' or 'sparse', got {method!r}.")

    uncovered = ~_covered(segs, n_rows)
    if uncovered.any():
        out[uncovered] = 0
    layout = _GappedLayout(segs, width)
    if layout.n_rows == 0 or n_channels == 0:
        return out
    if method == "sparse":
        return sparse_causal_convolve(signal, kernels, segs, out, _thread_count(workers))
    # Whole chunks (gather, products or transforms, write) run on a pool of
    # threads: NumPy, BLAS and pocketfft release the GIL, and every chunk writes
    # its own rows. On the direct path that needs BLAS held to one thread per
    # product (threadpoolctl): the products are long and thin, (rows * C, W) @
    # (W, K), and multithreaded OpenBLAS on them ran many times slower than one
    # thread whenever other processes wanted the cores (measured:
    # docs/performance_decisions.md, 'BLAS held to one thread on the direct path').
    # Without threadpoolctl the direct path stays serial, BLAS threading as is.
    limited = method == "fft" or _BLAS.available()
    wanted = _thread_count(workers) if limited else 1
    # Each thread holds one chunk's temporaries: the threads share the budget,
    # so that peak memory does not grow with the number of cores.
    if method == "direct":
        engine = _DirectEngine(kernels, _DIRECT_BLOCK_BYTES // wanted)
    else:
        engine = _FFTEngine(kernels, 1, _FFT_BLOCK_BYTES // wanted)
    block = engine.channel_block(n_channels)
    tasks = [
        (c0, c1, p0, p1)
        for c0 in range(0, n_channels, block)
        for c1 in [min(c0 + block, n_channels)]
        for p0, p1 in layout.chunks(engine.chunk_rows(c1 - c0))
    ]
    threads = min(wanted, len(tasks))
    if method == "fft" and threads == 1:
        engine.workers = workers  # one chunk at a time: pocketfft may use the cores

    def run(task: tuple[int, int, int, int]) -> None:
        c0, c1, p0, p1 = task
        src = layout.source_rows(p0 - width, p1)
        u, bad = _gather(signal, src, c0, c1)
        y = engine(u, p1 - p0)
        if bad is not None:
            _poison(y, bad, width)
        _scatter(out, src[width:], slice(c0 * n_filters, c1 * n_filters), y)

    with _BLAS.one_thread() if method == "direct" and limited else _NO_LIMIT:
        if threads > 1:
            with ThreadPoolExecutor(threads) as pool:
                for _ in pool.map(run, tasks):
                    pass
        else:
            for task in tasks:
                run(task)
    return out


def lagged_convolve(
    signal: ArrayLike,
    kernels: ArrayLike,
    segments: ArrayLike,
    *,
    first_lag: int,
    dtype: DTypeLike = np.float32,
    method: Literal["auto", "direct", "fft", "sparse"] = "auto",
    workers: int | None = -1,
) -> NDArray:
    """Convolve every channel with every filter over lags ``first_lag .. first_lag + W - 1``,
    within segments.

    ``out[t, c*K + k] = sum_{j=0..W-1} kernels[j, k] * signal[t - first_lag - j, c]``, reading
    rows of ``t``'s own segment only. ``first_lag = 1`` is :func:`causal_convolve`; a larger one
    delays the window (the kernels get ``first_lag - 1`` leading zero lags). ``first_lag <= 0``
    reads bin ``t`` itself (lag 0) and the ``-first_lag`` bins after it, which is legal for
    exogenous inputs (event times) only: each segment is followed by unknown (NaN) rows, so a
    window that would reach past the end of its segment gives NaN (the caller drops the row), and
    never reads the next segment. A window reaching before the start of its segment gets the
    partial sum over what exists, as in :func:`causal_convolve` (the caller drops the first
    ``first_lag + W - 1`` rows of each segment).

    Parameters
    ----------
    signal :
        ``(T, C)`` values on the grid's rows (1-D: ``C = 1``).
    kernels :
        ``(W, K)`` filters, row ``j`` the weight at lag ``first_lag + j`` bins.
    segments :
        Int ``(E, 2)`` disjoint ``[start_row, stop_row)`` ranges (epochs).
    first_lag :
        The lag of the kernels' first row, in bins (negative: after ``t``).
    dtype, method, workers :
        As in :func:`causal_convolve`.

    Returns
    -------
    np.ndarray
        ``(T, C*K)``, channel-major columns. Rows outside every segment are 0; rows whose window
        reaches past their segment's end, or holds a non-finite input, are NaN.
    """
    kernels = _check_kernels(kernels)
    width, n_filters = kernels.shape
    if first_lag >= 1:
        padded = np.concatenate([np.zeros((first_lag - 1, n_filters)), kernels])
        return causal_convolve(signal, padded, segments, dtype=dtype, method=method,
                               workers=workers)
    signal = np.asarray(signal)
    if signal.ndim == 1:
        signal = signal[:, None]
    n_rows, n_channels = signal.shape
    segs = _check_segments(segments, n_rows)
    segs = segs[segs[:, 1] > segs[:, 0]]
    out = np.zeros((n_rows, n_channels * n_filters), dtype=dtype)
    if len(segs) == 0 or n_channels == 0:
        return out
    # Each segment is laid out followed by ``ahead + 1`` NaN rows: the causal window (lags
    # 1 .. W) of extended row ``p + ahead + 1`` is the window of lags ``first_lag ..`` of row p,
    # and it holds a NaN exactly where it would read past the segment's end.
    ahead = -first_lag
    lengths = segs[:, 1] - segs[:, 0]
    extended = lengths + ahead + 1
    ext_starts = np.concatenate([[0], np.cumsum(extended)[:-1]])
    within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    rows = np.repeat(segs[:, 0], lengths) + within
    ext_rows = np.repeat(ext_starts, lengths) + within
    ext = np.full((int(extended.sum()), n_channels), np.nan)
    ext[ext_rows] = signal[rows]
    z = causal_convolve(ext, kernels, np.stack([ext_starts, ext_starts + extended], axis=1),
                        dtype=dtype, method=method, workers=workers)
    out[rows] = z[ext_rows + ahead + 1]
    return out


_NO_LIMIT = contextlib.nullcontext()


def _thread_count(workers: int | None) -> int:
    """Threads for ``workers`` as scipy.fft reads it: None is 1, -1 all usable cores."""
    if workers is None:
        return 1
    if workers < 0:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            cores = os.cpu_count() or 1
        return max(1, cores + 1 + workers)
    return max(1, int(workers))


class _GappedLayout:
    """Segments end to end, each preceded by W zero rows ("gapped" rows).

    Gapped row ``p`` of segment ``e`` is original row
    ``starts[e] + p - gstarts[e]``; gap rows map to -1 and read as zeros,
    which is what makes every window stop at its segment's start.
    """

    def __init__(self, segs: NDArray[np.int64], width: int) -> None:
        lengths = segs[:, 1] - segs[:, 0]
        keep = lengths > 0
        self.starts = segs[keep, 0]
        self.lengths = lengths[keep]
        before = np.concatenate([[0], np.cumsum(self.lengths)[:-1]])
        self.gstarts = before + width * np.arange(1, self.lengths.size + 1)
        self.n_rows = int(self.lengths.sum())
        self.first = int(self.gstarts[0]) if self.lengths.size else 0
        self.end = int(self.gstarts[-1] + self.lengths[-1]) if self.lengths.size else 0

    def chunks(self, rows: int):
        """Yield ``(p0, p1)`` gapped output ranges of at most ``rows`` rows."""
        for p0 in range(self.first, self.end, rows):
            yield p0, min(p0 + rows, self.end)

    def source_rows(self, p0: int, p1: int) -> NDArray[np.int64]:
        """Original row of each gapped row in ``[p0, p1)``; -1 for gaps."""
        pos = np.arange(p0, p1)
        seg = np.searchsorted(self.gstarts, pos, side="right") - 1
        seg_c = np.maximum(seg, 0)
        offset = pos - self.gstarts[seg_c]
        inside = (seg >= 0) & (offset < self.lengths[seg_c])
        return np.where(inside, self.starts[seg_c] + offset, -1)


class _DirectEngine:
    """im2col: lagged copies of a block times the reversed kernels (BLAS)."""

    def __init__(
        self, kernels: NDArray[np.float64], budget: int = _DIRECT_BLOCK_BYTES
    ) -> None:
        # Window position q of output row i holds lag W - q.
        self.reversed = np.ascontiguousarray(kernels[::-1])
        self.width, self.n_filters = kernels.shape
        self.budget = budget  # bytes of float64 temporaries per chunk

    def channel_block(self, n_channels: int) -> int:
        # As many channels as keep chunks of >= 256 rows within the target.
        per_channel = 8 * (self.width + self.n_filters) * 256
        return int(max(1, min(n_channels, self.budget // per_channel)))

    def chunk_rows(self, n_channels: int) -> int:
        per_row = 8 * n_channels * (self.width + self.n_filters)
        return int(max(64, self.budget // per_row))

    def __call__(self, u: NDArray[np.float64], rows: int) -> NDArray[np.float64]:
        """``(rows, C, K)`` outputs for the ``rows + W`` input rows ``u``."""
        n_channels = u.shape[1]
        lagged = sliding_window_view(u, self.width, axis=0)[:rows]
        lagged = np.ascontiguousarray(lagged).reshape(rows * n_channels, self.width)
        return (lagged @ self.reversed).reshape(rows, n_channels, self.n_filters)


class _FFTEngine:
    """Overlap-save along time, channels and filters batched in the last axes."""

    def __init__(
        self,
        kernels: NDArray[np.float64],
        workers: int | None,
        budget: int = _FFT_BLOCK_BYTES,
    ) -> None:
        self.width, self.n_filters = kernels.shape
        self.workers = workers
        self.budget = budget  # bytes of temporaries per chunk
        # ~8x the window keeps the overlap overhead near 1/8 while the FFT
        # stays small enough for cache; _FFT_MIN_LENGTH floors it for short windows.
        self.n_fft = scipy.fft.next_fast_len(
            max(8 * (self.width + 1), _FFT_MIN_LENGTH), real=True
        )
        # Lag-1 alignment: prepend a zero so tap m of the filter is lag m.
        taps = np.zeros((self.n_filters, self.width + 1))
        taps[:, 1:] = kernels.T
        self.spectra = scipy.fft.rfft(taps, self.n_fft, axis=-1)
        self._scratch = threading.local()

    def _product_buffer(self, n_channels: int) -> NDArray[np.complex128]:
        """This thread's (C, K, n_fft // 2 + 1) spectrum product, reused.

        A fresh multi-megabyte temporary per chunk is mapped and faulted in anew
        each time (glibc serves it with mmap), which costs more than the
        transforms themselves until the allocator's thresholds have grown
        (measured: docs/performance_decisions.md, 'Reused FFT product buffer').
        """
        shape = (n_channels, self.n_filters, self.spectra.shape[1])
        buffer = getattr(self._scratch, "product", None)
        if buffer is None or buffer.shape != shape:
            buffer = self._scratch.product = np.empty(shape, dtype=np.complex128)
        return buffer

    def channel_block(self, n_channels: int) -> int:
        per_channel = 8 * self.n_fft * (self.n_filters * 3 + 2)
        return int(max(1, min(n_channels, self.budget // per_channel)))

    def chunk_rows(self, n_channels: int) -> int:
        return self.n_fft - self.width

    def __call__(self, u: NDArray[np.float64], rows: int) -> NDArray[np.float64]:
        """``(rows, C, K)`` outputs (a strided view) for the input rows ``u``."""
        # Time on the last axis: contiguous lines are the fast case for pocketfft.
        spec = scipy.fft.rfft(
            np.ascontiguousarray(u.T), self.n_fft, axis=-1, workers=self.workers
        )
        prod = np.multiply(spec[:, None, :], self.spectra[None, :, :],
                           out=self._product_buffer(spec.shape[0]))
        full = scipy.fft.irfft(prod, self.n_fft, axis=-1, workers=self.workers,
                               overwrite_x=True)
        # Linear-convolution index W + i is output row i; no wrap-around
        # reaches it because n_fft >= rows + W. Returning a view leaves a
        # single transposing copy, straight into the output.
        return full[:, :, self.width : self.width + rows].transpose(2, 0, 1)


def _gather(
    signal: NDArray, src: NDArray[np.int64], c0: int, c1: int
) -> tuple[NDArray[np.float64], NDArray[np.bool_] | None]:
    """Input block in float64 with gap rows (and non-finite values) zeroed."""
    u = np.zeros((src.size, c1 - c0))
    inside = src >= 0
    u[inside] = signal[src[inside], c0:c1]
    finite = np.isfinite(u)
    if finite.all():
        return u, None
    bad = ~finite
    u[bad] = 0.0
    return u, bad


def _poison(y: NDArray[np.float64], bad: NDArray[np.bool_], width: int) -> None:
    """NaN every ``(row, channel)`` of ``y`` whose window holds a non-finite input."""
    counts = np.concatenate([np.zeros((1, bad.shape[1])), np.cumsum(bad, axis=0)])
    rows = y.shape[0]
    # Window of output i is u[i : i + W].
    hit = counts[width : width + rows] - counts[:rows] > 0
    y[hit] = np.nan


def _scatter(out: NDArray, rows: NDArray[np.int64], cols: slice, y: NDArray) -> None:
    """Write a ``(rows, C, K)`` block, one slice per run of consecutive rows.

    ``rows`` holds the output row of each block row, -1 for gap rows (not
    written). A chunk spans a few segments at most, so a handful of slice
    writes beats one fancy-indexed write, which would copy the strided block.
    """
    if not y.flags.c_contiguous:
        # The FFT block is time-major per (channel, filter) line, and the lines
        # sit n_fft (a power of two) values apart: reading across them, as the
        # transposing write does, maps every line onto the same cache sets.
        # Converting first to the output dtype, in the block's own memory order,
        # packs the lines closely, and the transposing write from that copy is
        # faster (measured: docs/performance_decisions.md, 'Packed writes of FFT blocks').
        y = y.astype(out.dtype, order="K")
    valid = rows >= 0
    # A run starts where a valid row does not continue the previous one.
    starts = valid & np.r_[True, (rows[1:] != rows[:-1] + 1) | ~valid[:-1]]
    ends = valid & np.r_[(rows[1:] != rows[:-1] + 1) | ~valid[1:], True]
    for lo, hi in zip(np.flatnonzero(starts), np.flatnonzero(ends) + 1):
        _write_rows(out[rows[lo] : rows[hi - 1] + 1, cols], y[lo:hi])


def _write_rows(dest: NDArray, y: NDArray) -> None:
    """Copy ``(R, C, K)`` values into an ``(R, C*K)`` slice of the output."""
    try:
        # A 3-D view of the output lets a strided y land in a single copy.
        dest.reshape(y.shape, copy=False)[...] = y
    except ValueError:
        dest[...] = y.reshape(dest.shape)


def _covered(segs: NDArray[np.int64], n_rows: int) -> NDArray[np.bool_]:
    """Rows inside some segment."""
    covered = np.zeros(n_rows, dtype=bool)
    for start, stop in segs:
        covered[start:stop] = True
    return covered


def _check_kernels(kernels: ArrayLike) -> NDArray[np.float64]:
    kernels = np.asarray(kernels, dtype=np.float64)
    if kernels.ndim != 2 or kernels.shape[0] < 1 or kernels.shape[1] < 1:
        raise ValueError(f"kernels must be (W, K) with W, K >= 1, got {kernels.shape}.")
    if not np.isfinite(kernels).all():
        raise ValueError("kernels must be finite.")
    return kernels


def _check_segments(segments: ArrayLike, n_rows: int) -> NDArray[np.int64]:
    """Validate ``[start, stop)`` row ranges: inside the grid and disjoint."""
    segs = np.asarray(segments)
    if segs.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if segs.ndim != 2 or segs.shape[1] != 2:
        raise ValueError(f"segments must be (E, 2), got shape {segs.shape}.")
    if not np.issubdtype(segs.dtype, np.integer):
        raise TypeError(f"segments must be integer row indices, got {segs.dtype}.")
    segs = segs.astype(np.int64)
    segs = segs[np.argsort(segs[:, 0], kind="stable")]
    if (segs[:, 0] < 0).any() or (segs[:, 1] > n_rows).any():
        raise ValueError(f"segments must lie within rows [0, {n_rows}].")
    if (segs[:, 1] < segs[:, 0]).any():
        raise ValueError("each segment needs start <= stop.")
    if (segs[1:, 0] < segs[:-1, 1]).any():
        raise ValueError("segments must not overlap.")
    return segs


def _prepare_out(out: NDArray | None, shape: tuple[int, int], dtype: DTypeLike) -> NDArray:
    if out is None:
        return np.zeros(shape, dtype=dtype)
    if out.shape != shape:
        raise ValueError(f"out must have shape {shape}, got {out.shape}.")
    if not np.issubdtype(out.dtype, np.floating):
        raise TypeError(f"out must be a float array, got {out.dtype}.")
    return out
