"""B-spline and cyclic B-spline bases on uniform knots.

Knot placement equals NeMoS 0.2.8 (``BSplineEval``, ``CyclicBSplineEval``);
evaluation goes through :meth:`scipy.interpolate.BSpline.design_matrix`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray
from scipy.interpolate import BSpline

from .raised_cosine import rescale_to_unit

__all__ = ["bspline", "cyclic_bspline"]

# NeMoS ends the knot vector just above 1 so that the sample at the upper
# bound lies inside the half-open support [t_i, t_{i+1}) of the last spline.
_TOP = 1.0 + np.finfo(float).eps


def _check_order(n_basis: int, order: int, minimum: int) -> tuple[int, int]:
    """Validate ``(n_basis, order)``; order is polynomial degree + 1."""
    if int(order) != order or order < minimum:
        raise ValueError(f"order must be an integer >= {minimum}, got {order}.")
    if int(n_basis) != n_basis or n_basis < order:
        raise ValueError(f"n_basis must be an integer >= order ({order}), got {n_basis}.")
    return int(n_basis), int(order)


def _clamped_knots(n_basis: int, order: int) -> NDArray[np.float64]:
    """Uniform knots on [0, 1] with ``order``-fold end knots (NeMoS layout)."""
    inner = np.linspace(0.0, _TOP, n_basis - order + 2)
    return np.concatenate([np.zeros(order - 1), inner, np.full(order - 1, _TOP)])


def _design(u: NDArray[np.float64], usable: NDArray[np.bool_], knots, degree, n_cols):
    """Evaluate B-splines at the usable samples; other rows are NaN."""
    out = np.full((u.shape[0], n_cols), np.nan)
    if usable.any():
        out[usable] = BSpline.design_matrix(u[usable], knots, degree).toarray()
    return out


def bspline(
    x: ArrayLike,
    n_basis: int,
    *,
    order: int = 4,
    bounds: tuple[float, float] | None = None,
    dtype: DTypeLike = np.float64,
) -> NDArray:
    """Evaluate a clamped B-spline basis on a covariate.

    Parameters
    ----------
    x :
        1-D covariate samples, in the covariate's unit.
    n_basis :
        Number of splines (>= ``order``).
    order :
        Spline order = polynomial degree + 1 (4 is cubic).
    bounds :
        ``(low, high)`` in the unit of ``x``; ``None`` uses the min and max of
        the finite ``x``. See :func:`glmformula.bases.raised_cosine.rescale_to_unit`.
    dtype :
        Output dtype.

    Returns
    -------
    np.ndarray
        Shape ``(n, n_basis)``. Rows sum to 1 inside the bounds (partition of
        unity). Rows where ``x`` is NaN, infinite or outside ``bounds`` are NaN.
    """
    n_basis, order = _check_order(n_basis, order, minimum=1)
    u, usable = rescale_to_unit(x, bounds)
    knots = _clamped_knots(n_basis, order)
    return _design(u, usable, knots, order - 1, n_basis).astype(dtype, copy=False)


def cyclic_bspline(
    x: ArrayLike,
    n_basis: int,
    *,
    order: int = 4,
    period: float = 2 * np.pi,
    dtype: DTypeLike = np.float64,
) -> NDArray:
    """Evaluate a periodic B-spline basis on a circular covariate.

    Parameters
    ----------
    x :
        1-D samples of a circular covariate (e.g. head direction in rad, phase).
        Taken modulo ``period``, so any real value is usable.
    n_basis :
        Number of splines (>= ``order``); they are translates of one another
        by ``period / n_basis``.
    order :
        Spline order = polynomial degree + 1 (>= 2; 4 is cubic).
    period :
        Length of one cycle, in the unit of ``x`` (> 0).
    dtype :
        Output dtype.

    Returns
    -------
    np.ndarray
        Shape ``(n, n_basis)``; rows sum to 1 and ``x`` and ``x + period`` give
        the same row. Rows where ``x`` is NaN or infinite are NaN.

    Notes
    -----
    Equals NeMoS ``CyclicBSplineEval(n_basis, order, bounds=(0, period))`` on
    ``x % period``. NeMoS's period is ``1 + eps`` on its unit axis (a side
    effect of its knot layout); ours is exactly 1, a difference of ~1e-16.
    """
    n_basis, order = _check_order(n_basis, order, minimum=2)
    if not (np.isfinite(period) and period > 0):
        raise ValueError(f"period must be finite and > 0, got {period}.")
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"x must be 1-D, got shape {x.shape}.")
    usable = np.isfinite(x)
    # np.mod can return `period` itself for tiny negative x; fold it to 0.
    u = np.where(usable, np.mod(np.where(usable, x, 0.0), period) / period, 0.0)
    u[u >= 1.0] = 0.0
    # Uniform knots extended by order-1 spacings on each side: the first
    # n_basis splines are NeMoS's (spline i starts at (i - order + 1) / n);
    # the order-1 extra ones are translates by one period and fold back.
    degree = order - 1
    knots = np.arange(-degree, n_basis + degree + 1) / n_basis
    wide = _design(u, usable, knots, degree, n_basis + degree)
    wide[:, :degree] += wide[:, n_basis:]
    return wide[:, :n_basis].astype(dtype, copy=False)
