"""Put pynapple covariates on the time grid.

Continuous covariates are taken at bin centres by linear interpolation (circular for angles),
or averaged over each bin when they are sampled faster than the bins. Times outside the
covariate's own time support become missing values (NaN), and such rows are dropped.
"""

from __future__ import annotations

import numpy as np

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
    dt = np.median(np.diff(times)) if len(times) > 1 else np.inf
    if dt < grid.bin_size / 2:
        out = _bin_average(times, values, grid, rows, period)
    else:
        out = _interpolate(times, values, centers, period)
    inside = _inside(centers, support)
    out[~inside] = np.nan
    return out


def _interpolate(times, values, centers, period):
    out = np.empty((len(centers), values.shape[1]))
    for j in range(values.shape[1]):
        column = values[:, j]
        finite = np.isfinite(column)
        t, v = times[finite], column[finite]
        if len(t) == 0:
            out[:, j] = np.nan
            continue
        if period is not None:
            v = np.unwrap(v, period=period)
        sampled = np.interp(centers, t, v, left=np.nan, right=np.nan)
        # A centre between two samples that straddle a gap in the data is still interpolated;
        # missing stretches are handled by the time support check in the caller.
        out[:, j] = np.mod(sampled, period) if period is not None else sampled
    return out


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
