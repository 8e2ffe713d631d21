"""Put pynapple covariates on the time grid.

Continuous covariates are taken at bin centres by linear interpolation (circular for angles),
or averaged over each bin when they are sampled faster than the bins. Bin centres that are
sample times (a covariate on the grid's own rate and phase, to float precision) take those
samples as they are: the same values interpolation gives there, without its cost. Times outside the
covariate's own time support become missing values (NaN), and such rows are dropped. A response
given as counts per bin is summed into the grid's bins (:func:`counts_on_grid`), never averaged.
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError
from .grid import TimeGrid


def sample_on_grid(times: np.ndarray, values: np.ndarray, support: np.ndarray, grid: TimeGrid,
                   rows: slice, *, period: float | None = None) -> np.ndarray:
    """Sample a covariate at the bins ``rows`` of ``grid``.

    Parameters
    ----------
    times : ndarray (n,)
        Sample times (s), sorted.
    values : ndarray (n, c)
        Samples.
    support : ndarray (m, 2)
        The covariate's time support (s); outside it values are missing.
    grid, rows :
        Which bins to produce.
    period : float, optional
        Treat values as circular with this period (radians: 2pi): interpolate the unwrapped
        angle, average unit vectors, and wrap the result into [0, period).

    Returns
    -------
    ndarray (len(rows), c), float64, NaN where the covariate has no value.
    """
    centers = grid.centers[rows]
    values = np.asarray(values, dtype=float)
    if values.ndim == 1:
        values = values[:, None]
    # The sampling step ignores repeated timestamps: a slow covariate whose samples are
    # duplicated is still slow (interpolated), not averaged into mostly empty bins.
    steps = np.diff(times)
    ordered = not (len(steps) and steps.min() < 0)  # a covariate read from data always is
    if not ordered:
        steps = np.diff(np.unique(times))
    positive = steps[steps > 0]  # the steps between distinct times
    dt = np.median(positive) if len(positive) else np.inf
    if dt < grid.bin_size / 2:
        out = _bin_average(times, values, grid, rows, period)
    else:
        increasing = ordered and len(positive) == len(times) - 1
        out = _at_centres(times, values, centers, grid.bin_size, period, increasing)
    inside = _inside(centers, support)
    if not inside.all():
        out = np.array(out, dtype=float)  # a copy where it is a view of the samples
        out[~inside] = np.nan
    return out


def _at_centres(times, values, centers, bin_size, period, increasing):
    """Values at the bin centres: the samples themselves at centres that are sample times
    (within float tolerance), linear (circular) interpolation elsewhere.

    ``np.interp`` at a sample time returns that sample exactly, so taking it is the same
    value; angles are unwrapped and wrapped back as the interpolation does them.
    """
    index, matched = _matching_samples(times, centers, bin_size) if increasing else (None, None)
    if index is None:
        return _interpolate(times, values, centers, period)
    if period is None:
        if matched is None and index[-1] - index[0] == len(index) - 1:
            # the grid is the samples' own: a read-only view, no copy
            out = values[index[0]:index[-1] + 1].view()
            out.flags.writeable = False
        else:
            out = values.take(index, axis=0)
    else:
        out = np.empty((len(index), values.shape[1]))
        for j in range(values.shape[1]):
            column = values[:, j]
            finite = np.isfinite(column)
            unwrapped = column.copy()
            unwrapped[finite] = np.unwrap(column[finite], period=period)
            out[:, j] = np.mod(unwrapped.take(index), period)
    if matched is not None:  # interpolate the centres between samples
        out = np.array(out, dtype=float)
        out[~matched] = _interpolate(times, values, centers[~matched], period)
    return out


def _matching_samples(times, centers, bin_size):
    """(index, matched): for each centre the sample at its time (within float tolerance),
    ``matched`` None when every centre has one; (None, None) when no centre does. ``times``
    must be strictly increasing (repeated times are merged by the interpolation)."""
    if len(times) < 2 or len(centers) == 0:
        return None, None
    if times[0] > centers[-1] or times[-1] < centers[0]:
        return None, None
    scale = max(abs(float(times[0])), abs(float(times[-1])), abs(float(centers[-1])), 1.0)
    tol = 1e-9 * bin_size + 64 * np.spacing(scale)

    def on_a_sample(centre):
        i = min(int(np.searchsorted(times, centre - tol)), len(times) - 1)
        return abs(times[i] - centre) <= tol

    # cheap test first: a covariate off the grid's phase is interpolated at once
    if not (on_a_sample(centers[0]) or on_a_sample(centers[len(centers) // 2])):
        return None, None
    index = _consecutive_samples(times, centers, tol)
    if index is not None:
        return index, None
    index = np.searchsorted(times, centers - tol)
    np.minimum(index, len(times) - 1, out=index)
    matched = np.abs(times[index] - centers) <= tol
    if matched.all():
        return index, None
    if not matched.any():
        return None, None
    return index, matched


def _consecutive_samples(times, centers, tol):
    """``arange(i, i + len(centers))`` when consecutive samples from some ``i`` on are at the
    centres (within ``tol``), else None.

    A covariate sampled on the grid itself over one epoch: one comparison of two slices
    instead of a search per centre (0.2 ms against 1.3 ms for 1e5 bins). The search gives the
    same index then, since the bins are far wider than ``tol``.
    """
    first = int(np.searchsorted(times, centers[0] - tol))
    stop = first + len(centers)
    if stop > len(times) or abs(times[stop - 1] - centers[-1]) > tol:
        return None
    if not np.all(np.abs(times[first:stop] - centers) <= tol):
        return None
    return np.arange(first, stop)


def _interpolate(times, values, centers, period):
    out = np.empty((len(centers), values.shape[1]))
    for j in range(values.shape[1]):
        column = values[:, j]
        if len(times) == 0 or not np.isfinite(column).any():
            out[:, j] = np.nan
            continue
        t, v = _merge_repeated_times(times, column, period)
        finite = np.isfinite(v)
        if period is not None:
            v = v.copy()
            v[finite] = np.unwrap(v[finite], period=period)
        # A missing (NaN) sample stays missing: a centre next to it (between it and its
        # neighbour) interpolates to NaN and its row is dropped, never bridged over.
        sampled = np.interp(centers, t, v, left=np.nan, right=np.nan)
        # A centre between two samples that straddle a gap in the data is still interpolated;
        # missing stretches are handled by the time support check in the caller.
        out[:, j] = np.mod(sampled, period) if period is not None else sampled
    return out


def _merge_repeated_times(t, v, period):
    """Samples sharing a timestamp are averaged (circularly for angles), so that the
    interpolation is defined: ``np.interp`` needs increasing times."""
    if len(t) < 2 or np.all(np.diff(t) > 0):
        return t, v
    unique, index = np.unique(t, return_inverse=True)
    finite = np.isfinite(v)  # a repeated time with some finite samples keeps their mean
    index, v = index[finite], v[finite]
    n = np.bincount(index, minlength=len(unique))
    if period is None:
        with np.errstate(invalid="ignore", divide="ignore"):
            return unique, np.where(n > 0, np.bincount(index, v, minlength=len(unique)) /
                                    np.maximum(n, 1), np.nan)
    angle = v * (2 * np.pi / period)
    s = np.bincount(index, np.sin(angle), minlength=len(unique))
    c = np.bincount(index, np.cos(angle), minlength=len(unique))
    mean = np.mod(np.arctan2(s, c), 2 * np.pi) * (period / (2 * np.pi))
    return unique, np.where(n > 0, mean, np.nan)


def _bin_average(times, values, grid, rows, period):
    row_index = grid.row_of_time(times) - rows.start
    keep = (row_index >= 0) & (row_index < rows.stop - rows.start)
    idx = row_index[keep]
    n = rows.stop - rows.start
    out = np.empty((n, values.shape[1]))
    for j in range(values.shape[1]):
        column = values[keep, j]
        finite = np.isfinite(column)
        counts = np.bincount(idx[finite], minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            if period is not None:
                angle = column[finite] * (2 * np.pi / period)
                s = np.bincount(idx[finite], np.sin(angle), minlength=n)
                c = np.bincount(idx[finite], np.cos(angle), minlength=n)
                mean = np.mod(np.arctan2(s, c), 2 * np.pi) * (period / (2 * np.pi))
            else:
                mean = np.bincount(idx[finite], column[finite], minlength=n) / counts
        mean[counts == 0] = np.nan
        out[:, j] = mean
    return out


def bin_means(times: np.ndarray, values: np.ndarray, grid: TimeGrid) -> np.ndarray:
    """A continuous response on the grid: the mean of the finite samples in each bin.

    Unlike a covariate, a response is never interpolated: a bin without a sample has no value
    (NaN) and its row is dropped from the fit.

    Returns
    -------
    ndarray (grid.n_rows, c), float64.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim == 1:
        values = values[:, None]
    if len(times) == 0:
        return np.full((grid.n_rows, values.shape[1]), np.nan)
    return _bin_average(np.asarray(times, float), values, grid, slice(0, grid.n_rows), None)


def counts_on_grid(times: np.ndarray, values: np.ndarray, grid: TimeGrid, *,
                   name: str = "the response") -> np.ndarray:
    """Put a response given as counts per bin (a Tsd/TsdFrame of counts) on the grid.

    Each sample is the count of a bin of the samples' own width (the median step of
    ``times``) centred on its timestamp, as ``pynapple``'s ``count`` returns them. Those bins
    must each lie inside one bin of the grid: the counts are then *summed* into the grid's bins
    (counts at 1 ms sum into 10 ms bins; averaging or interpolating counts would change them).
    A grid bin that its samples do not fill completely (outside the counts' time span, or at a
    gap) has no known count: NaN, and the row is dropped.

    Raises
    ------
    DataError
        When the counts' bins straddle the grid's bin edges (coarser than ``bin_size``, or
        not aligned with it), or when two samples share a bin (duplicate timestamps).

    Returns
    -------
    ndarray (grid.n_rows, c), float32.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim == 1:
        values = values[:, None]
    n_rows, bin_size = grid.n_rows, grid.bin_size
    out = np.full((n_rows, values.shape[1]), np.nan, dtype=np.float32)
    if len(times) == 0:
        return out
    steps = np.diff(times)
    width = float(np.median(steps)) if len(steps) else bin_size
    tol = max(1e-9, 1e-6 * bin_size)
    if len(steps) and (width <= 0 or np.any(steps < width - tol)):
        raise DataError(f"the counts of '{name}' have duplicate or unevenly spaced timestamps "
                        f"(median step {width:g} s)",
                        hint="give one count per bin at the bin centres, e.g. "
                             "tsgroup.count(bin_size), or pass the spike times (TsGroup/Ts)")
    rows = grid.row_of_time(times)
    inside = rows >= 0
    rows_in = rows[inside]
    left = grid.left_edges[rows_in]
    low, high = times[inside] - width / 2, times[inside] + width / 2
    if np.any(low < left - tol) or np.any(high > left + bin_size + tol):
        raise DataError(
            f"the counts of '{name}' are per {width:g} s bins that do not fit inside the "
            f"{bin_size:g} s bins of the fit",
            hint=f"use a bin_size that is a multiple of {width:g} s with bins aligned to the "
                 "counts' bins (timestamps at bin centres), or pass the spike times "
                 "(TsGroup/Ts)")
    per_row = np.bincount(rows_in, minlength=n_rows)
    expected = max(int(round(bin_size / width)), 1)
    complete = per_row == expected
    for j in range(values.shape[1]):
        total = np.bincount(rows_in, values[inside, j], minlength=n_rows)
        out[complete, j] = total[complete]
    return out


def _inside(times: np.ndarray, support: np.ndarray) -> np.ndarray:
    if support is None or len(support) == 0:
        return np.ones(len(times), dtype=bool)
    i = np.searchsorted(support[:, 0], times, side="right") - 1
    ok = i >= 0
    i = np.where(ok, i, 0)
    return ok & (times < support[i, 1] + 1e-9)


def indicator_on_grid(starts: np.ndarray, ends: np.ndarray, grid: TimeGrid,
                      rows: slice) -> np.ndarray:
    """1.0 where a bin centre lies inside one of the intervals, else 0.0: shape (n, 1)."""
    support = np.stack([starts, ends], axis=1) if len(starts) else np.zeros((0, 2))
    centers = grid.centers[rows]
    inside = _inside(centers, support) if len(starts) else np.zeros(len(centers), bool)
    return inside.astype(float)[:, None]
