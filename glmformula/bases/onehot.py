"""Indicator (one-hot) basis over equal-width bins of a covariate."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from .raised_cosine import rescale_to_unit

__all__ = ["onehot"]


def onehot(
    x: ArrayLike,
    n_bins: int,
    *,
    bounds: tuple[float, float],
    dtype: DTypeLike = np.float64,
) -> NDArray:
    """Indicator of which of ``n_bins`` equal-width bins each sample falls in.

    Bins are ``[low + i*w, low + (i+1)*w)`` with ``w = (high - low) / n_bins``;
    the last bin is closed so ``x == high`` belongs to it.

    Parameters
    ----------
    x :
        1-D covariate samples, in the covariate's unit.
    n_bins :
        Number of bins (>= 1).
    bounds :
        ``(low, high)`` in the unit of ``x``. Required: bin edges are part of
        the model and must not depend on the data at hand. ``None`` is accepted
        and means the min and max of the finite ``x``.
    dtype :
        Output dtype.

    Returns
    -------
    np.ndarray
        Shape ``(n, n_bins)`` of 0.0 / 1.0; each usable row has a single 1.
        Rows where ``x`` is NaN, infinite or outside ``bounds`` are NaN.
    """
    if int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins}.")
    n_bins = int(n_bins)
    u, usable = rescale_to_unit(x, bounds)
    index = np.minimum(np.floor(np.where(usable, u, 0.0) * n_bins), n_bins - 1)
    out = np.zeros((u.shape[0], n_bins), dtype=np.float64)
    out[np.arange(u.shape[0]), index.astype(np.intp)] = 1.0
    out[~usable] = np.nan
    return out.astype(dtype, copy=False)
