"""Raised cosine bumps (Pillow et al. 2005), linear or log-stretched.

Also home of the domain convention every basis in this package shares
(:func:`rescale_to_unit`): the covariate is mapped affinely onto [0, 1] using
``bounds``; values outside the bounds, non-finite values and NaN give NaN rows,
so downstream code drops those rows instead of silently extrapolating.

The definitions equal NeMoS 0.2.8 (``RaisedCosineLinearEval``,
``RaisedCosineLogEval`` with ``enforce_decay_to_zero=True``) evaluated through
``compute_features``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

__all__ = ["raised_cosine", "causal_filters", "rescale_to_unit", "filters_are_distinct",
           "most_distinct_filters", "shortest_distinct_window"]


def rescale_to_unit(
    x: ArrayLike, bounds: tuple[float, float] | None = None
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Map a covariate onto [0, 1] and flag the samples a basis can use.

    Parameters
    ----------
    x :
        1-D covariate samples, in the covariate's own unit (s, rad, cm, ...).
    bounds :
        ``(low, high)`` in the unit of ``x``, mapped to 0 and 1. ``None`` uses
        the min and max of the finite values of ``x``.

    Returns
    -------
    u :
        ``(x - low) / (high - low)``, shape ``(n,)``, float64. When
        ``bounds=None`` and all finite values are equal the scale is 1 (as in
        NeMoS), so every finite sample maps to 0.
    usable :
        Boolean ``(n,)``: finite and inside ``[low, high]`` (closed). Rows that
        are not usable must be NaN in every basis output.

    Raises
    ------
    ValueError
        If ``x`` is not 1-D, or ``bounds`` is not two finite increasing numbers.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"x must be 1-D, got shape {x.shape}.")
    finite = np.isfinite(x)
    low, high = _resolve_bounds(x[finite], bounds)
    # NeMoS keeps a zero range from dividing by zero by using a scale of 1.
    scale = (high - low) or 1.0
    u = (x - low) / scale
    usable = finite & (x >= low) & (x <= high)
    return u, usable


def _resolve_bounds(
    x_finite: NDArray[np.float64], bounds: tuple[float, float] | None
) -> tuple[float, float]:
    """Return ``(low, high)`` from ``bounds`` or from the finite data."""
    if bounds is None:
        if x_finite.size == 0:
            # Nothing is usable; any bounds give an all-NaN output.
            return 0.0, 1.0
        return float(x_finite.min()), float(x_finite.max())
    if len(bounds) != 2:
        raise ValueError(f"bounds must be (low, high), got {bounds!r}.")
    low, high = float(bounds[0]), float(bounds[1])
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ValueError(f"bounds must be finite with low < high, got {bounds!r}.")
    return low, high


def _check_width(width: float) -> None:
    """Reject widths that alias (NeMoS rule: width > 1 and 2*width integer)."""
    if width <= 1 or not np.isclose(2 * width, round(2 * width)):
        raise ValueError(
            f"width must be > 1 with 2*width an integer (1.5, 2, 2.5, ...), got {width}."
        )


def _peaks(n_basis: int, log: bool, width: float) -> NDArray[np.float64]:
    """Peak locations on the (possibly log-stretched) unit axis.

    The log family places its last peak early enough that the last bump has
    decayed to 0 at 1 (NeMoS ``enforce_decay_to_zero=True``), so a history
    filter ends smoothly at the window edge.
    """
    last = 1.0 - width / (n_basis + width - 1) if log else 1.0
    return np.linspace(0.0, last, n_basis)


def raised_cosine(
    x: ArrayLike,
    n_basis: int,
    *,
    log: bool = False,
    bounds: tuple[float, float] | None = None,
    width: float = 2.0,
    time_scaling: float = 50.0,
    dtype: DTypeLike = np.float64,
) -> NDArray:
    """Evaluate a raised cosine basis on a covariate.

    Each bump is ``0.5 * (1 + cos(clip(pi * (s - peak) / (delta * width), -pi, pi)))``
    where ``s`` is the covariate rescaled to [0, 1] (and, when ``log=True``,
    stretched by ``s -> log(time_scaling * s + 1) / log(time_scaling + 1)``)
    and ``delta`` is the spacing between peaks.

    Parameters
    ----------
    x :
        1-D covariate samples, in the covariate's unit.
    n_basis :
        Number of bumps (>= 2).
    log :
        Log-stretch the axis so bumps are narrow near ``low`` and wide near
        ``high`` (typical for spike-history filters).
    bounds :
        ``(low, high)`` in the unit of ``x``; ``None`` uses the min and max of
        the finite ``x``. See :func:`rescale_to_unit`.
    width :
        Bump width in units of peak spacing; must be > 1 with ``2 * width`` an
        integer (otherwise the bumps do not sum to a constant).
    time_scaling :
        Strength of the log stretch (> 0); ignored unless ``log=True``.
    dtype :
        Output dtype.

    Returns
    -------
    np.ndarray
        Shape ``(n, n_basis)``. Rows where ``x`` is NaN, infinite or outside
        ``bounds`` are NaN (NeMoS ``compute_features`` with ``fill_value=nan``
        does the same for out-of-bounds rows).

    Notes
    -----
    The bumps sum to the constant ``width`` (so ``out / width`` is a partition
    of unity) wherever no bump is missing: on the (stretched) unit axis, from
    ``(width - 1) * delta`` to ``last_peak - (width - 1) * delta``. Near the
    edges the sum drops, to ``(width + 1) / 2`` at 0 for the linear family.
    The log family's last peak stops short of 1 so that the sum decays to 0 at
    the upper bound (the end of a history window).
    """
    n_basis = _check_n_basis(n_basis)
    _check_width(width)
    u, usable = rescale_to_unit(x, bounds)
    if log:
        if time_scaling <= 0:
            raise ValueError(f"time_scaling must be > 0, got {time_scaling}.")
        # Unusable samples may sit below -1/time_scaling; keep log quiet there.
        u = np.where(usable, u, 0.0)
        u = np.log1p(time_scaling * u) / np.log1p(time_scaling)
    peaks = _peaks(n_basis, log, width)
    delta = peaks[1] - peaks[0]
    phase = np.clip(np.pi * (u[:, None] - peaks[None, :]) / (delta * width), -np.pi, np.pi)
    out = 0.5 * (np.cos(phase) + 1.0)
    out[~usable] = np.nan
    return out.astype(dtype, copy=False)


def causal_filters(
    window_bins: int,
    n_basis: int,
    *,
    log: bool = True,
    width: float = 2.0,
    time_scaling: float = 50.0,
) -> NDArray[np.float64]:
    """Raised cosine filters for causal (history / coupling) convolution.

    The basis is sampled on ``linspace(0, 1, window_bins)``, exactly the
    kernel NeMoS builds for ``RaisedCosineLogConv(n_basis, window_bins)`` (or
    ``RaisedCosineLinearConv`` with ``log=False``).

    Parameters
    ----------
    window_bins :
        Filter length in bins (>= 1); the filter sees lags 1 .. window_bins.
    n_basis :
        Number of filters (>= 2).
    log, width, time_scaling :
        As in :func:`raised_cosine`.

    Returns
    -------
    np.ndarray
        Shape ``(window_bins, n_basis)``, float64. Row ``j`` is the weight at
        lag ``j + 1`` bins: row 0 weighs the previous bin.
    """
    if int(window_bins) != window_bins or window_bins < 1:
        raise ValueError(f"window_bins must be a positive integer, got {window_bins}.")
    grid = np.linspace(0.0, 1.0, int(window_bins))
    return raised_cosine(
        grid, n_basis, log=log, bounds=None, width=width, time_scaling=time_scaling
    )


def _check_n_basis(n_basis: int) -> int:
    """Raised cosines need two peaks to define their spacing."""
    if int(n_basis) != n_basis or n_basis < 2:
        raise ValueError(f"raised cosine needs an integer n_basis >= 2, got {n_basis}.")
    return int(n_basis)


def resolvable_time_scaling(window_bins: int, n_basis: int, *, width: float = 2.0,
                            preferred: float = 50.0) -> float:
    """The strongest log stretch (<= ``preferred``) whose first two filters peak at least one
    bin apart.

    NeMoS's default stretch (50) squeezes the first few of k log-spaced filters into the first
    lag when the window has only a few bins (8 filters over 10 bins: 100 ms at 10 ms bins), so
    their columns are numerically identical and the design is rank deficient. On a grid fine
    enough to resolve them (e.g. 100 ms at 1 ms bins) this returns ``preferred`` unchanged;
    on a coarse grid it relaxes the stretch towards linear spacing just enough to keep every
    filter distinct.
    """
    if window_bins < 2 or n_basis < 2:
        return preferred
    second_peak = _peaks(n_basis, True, width)[1]

    def first_gap_in_bins(scaling: float) -> float:
        return np.expm1(second_peak * np.log1p(scaling)) / scaling * (window_bins - 1)

    if first_gap_in_bins(preferred) >= 1.0:
        return float(preferred)
    low, high = 1e-6, float(preferred)
    if first_gap_in_bins(low) < 1.0:
        return low  # even linear spacing cannot separate them: as close to linear as it gets
    for _ in range(60):  # bisection on the (monotone) gap
        middle = np.sqrt(low * high)
        low, high = (middle, high) if first_gap_in_bins(middle) >= 1.0 else (low, middle)
    return float(low)


#: Filters whose kernel matrix has a condition number above this are near-collinear.
MAX_FILTER_CONDITION = 1e6


def filters_are_distinct(window_bins: int, n_basis: int, *, log: bool = True) -> bool:
    """Whether ``n_basis`` causal filters over ``window_bins`` lags are linearly independent.

    The filters are built as a design builds them (log spacing with
    :func:`resolvable_time_scaling`); they are distinct when their ``(window_bins, n_basis)``
    kernel matrix has full column rank with a condition number below
    :data:`MAX_FILTER_CONDITION`. Filtered columns are the lagged counts times that matrix, so
    a rank-deficient kernel makes identical (or nearly identical) design columns whatever the
    data. Log-spaced filters decay to 0 at the window's last lag, so in practice they need
    ``window_bins >= n_basis + 1``; linear ones ``window_bins >= n_basis``.
    """
    if window_bins < n_basis or n_basis < 2:
        return False
    scaling = resolvable_time_scaling(window_bins, n_basis) if log else 50.0
    kernels = causal_filters(window_bins, n_basis, log=log, time_scaling=scaling)
    singular = np.linalg.svd(kernels, compute_uv=False)
    return bool(singular[-1] > singular[0] / MAX_FILTER_CONDITION)


def most_distinct_filters(window_bins: int, n_basis: int, *, log: bool = True) -> int:
    """The most filters (at most ``n_basis``) a window of ``window_bins`` lags keeps distinct,
    or 0 when not even two are (see :func:`filters_are_distinct`)."""
    for k in range(min(n_basis, window_bins), 1, -1):
        if filters_are_distinct(window_bins, k, log=log):
            return k
    return 0


def shortest_distinct_window(n_basis: int, *, log: bool = True) -> int:
    """The fewest lags (bins) over which ``n_basis`` filters are distinct."""
    window = n_basis
    while not filters_are_distinct(window, n_basis, log=log):
        window += 1
    return window
