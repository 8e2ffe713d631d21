"""Properties of the basis families: shapes, sums, periodicity, bounds, NaN."""

import numpy as np
import pytest

from glmformula.bases import (
    bspline,
    causal_filters,
    cyclic_bspline,
    onehot,
    raised_cosine,
    rescale_to_unit,
)

GRID = np.linspace(-2.0, 5.0, 701)


# -- shapes and dtype ---------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda x, **kw: raised_cosine(x, 6, **kw),
        lambda x, **kw: raised_cosine(x, 6, log=True, **kw),
        lambda x, **kw: bspline(x, 6, **kw),
        lambda x, **kw: cyclic_bspline(x, 6, **kw),
        lambda x, **kw: onehot(x, 6, bounds=(-2.0, 5.0), **kw),
    ],
)
def test_shape_and_dtype(make):
    assert make(GRID).shape == (GRID.size, 6)
    assert make(GRID).dtype == np.float64
    assert make(GRID, dtype=np.float32).dtype == np.float32
    assert make(GRID[:0]).shape == (0, 6)


@pytest.mark.parametrize(
    "make",
    [
        lambda x: raised_cosine(x, 4),
        lambda x: bspline(x, 4),
        lambda x: cyclic_bspline(x, 4),
        lambda x: onehot(x, 4, bounds=(0, 1)),
    ],
)
def test_rejects_non_1d(make):
    with pytest.raises(ValueError, match="1-D"):
        make(np.zeros((3, 2)))


# -- partition of unity -------------------------------------------------------


def interior(u, n_basis, width, last_peak=1.0):
    """Where no bump is missing on the unit axis (see raised_cosine Notes)."""
    spacing = last_peak / (n_basis - 1)
    eps = 1e-12
    return (u >= (width - 1) * spacing - eps) & (u <= last_peak - (width - 1) * spacing + eps)


@pytest.mark.parametrize("n_basis", [7, 12])
@pytest.mark.parametrize("width", [1.5, 2.0, 2.5, 3.0])
def test_linear_raised_cosine_sums_to_width(n_basis, width):
    """Partition of unity after dividing by width, away from the edges."""
    x = np.linspace(0.0, 1.0, 2001)
    total = raised_cosine(x, n_basis, width=width).sum(axis=1)
    inside = interior(x, n_basis, width)
    assert inside.sum() > 100
    np.testing.assert_allclose(total[inside], width, atol=1e-12)
    assert total[0] == pytest.approx((width + 1) / 2)


@pytest.mark.parametrize("width", [1.5, 2.0, 3.0])
def test_log_raised_cosine_sums_to_width_in_interior(width):
    x = np.linspace(0.0, 1.0, 4001)
    n_basis, scaling = 8, 50.0
    total = raised_cosine(x, n_basis, log=True, width=width, time_scaling=scaling).sum(1)
    stretched = np.log1p(scaling * x) / np.log1p(scaling)
    last_peak = 1 - width / (n_basis + width - 1)
    inside = interior(stretched, n_basis, width, last_peak)
    assert inside.sum() > 100
    np.testing.assert_allclose(total[inside], width, atol=1e-12)
    # The last bump has decayed to 0 at the upper bound (end of the window).
    assert total[-1] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("order", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("n_basis", [5, 11])
def test_bspline_partition_of_unity(order, n_basis):
    np.testing.assert_allclose(bspline(GRID, n_basis, order=order).sum(1), 1.0, atol=1e-12)


@pytest.mark.parametrize("order", [2, 3, 4])
def test_cyclic_bspline_partition_of_unity(order):
    np.testing.assert_allclose(cyclic_bspline(GRID, 7, order=order).sum(1), 1.0, atol=1e-12)


def test_bspline_nonnegative_and_endpoints():
    values = bspline(GRID, 7)
    assert (values >= 0).all()
    # Clamped ends: the first spline is 1 at the lower bound, the last at the upper.
    np.testing.assert_allclose(values[0], np.eye(7)[0], atol=1e-12)
    np.testing.assert_allclose(values[-1], np.eye(7)[-1], atol=1e-12)


# -- periodicity --------------------------------------------------------------


@pytest.mark.parametrize("order", [2, 3, 4])
@pytest.mark.parametrize("period", [2 * np.pi, 360.0, 1.0])
def test_cyclic_bspline_periodic(order, period):
    x = np.linspace(0.0, period, 257)
    base = cyclic_bspline(x, 6, order=order, period=period)
    for shift in (-2, -1, 1, 3):
        shifted = cyclic_bspline(x + shift * period, 6, order=order, period=period)
        np.testing.assert_allclose(shifted, base, atol=1e-9)
    np.testing.assert_allclose(base[-1], base[0], atol=1e-12)


def test_cyclic_bspline_is_smooth_across_the_wrap():
    """Order 4 is C2: left and right finite differences agree at 0 == period."""
    period, h = 2 * np.pi, 1e-4
    x = np.array([-2 * h, -h, 0.0, h, 2 * h])
    values = cyclic_bspline(x, 8, period=period)
    left = (values[2] - values[1]) / h
    right = (values[3] - values[2]) / h
    np.testing.assert_allclose(left, right, atol=1e-3)


def test_cyclic_bspline_splines_are_translates():
    n_basis, period = 6, 2 * np.pi
    x = np.linspace(0.0, period, 600, endpoint=False)
    values = cyclic_bspline(x, n_basis, period=period)
    step = x.size // n_basis
    for i in range(1, n_basis):
        np.testing.assert_allclose(values[:, i], np.roll(values[:, 0], i * step), atol=1e-12)


# -- bounds and non-finite values ---------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda x, b: raised_cosine(x, 5, bounds=b),
        lambda x, b: raised_cosine(x, 5, log=True, bounds=b),
        lambda x, b: bspline(x, 5, bounds=b),
        lambda x, b: onehot(x, 5, bounds=b),
    ],
)
def test_out_of_bounds_and_nonfinite_rows_are_nan(make):
    x = np.array([-0.5, 0.0, 0.3, 1.0, 1.0001, np.nan, np.inf, -np.inf])
    values = make(x, (0.0, 1.0))
    expected_nan = np.array([True, False, False, False, True, True, True, True])
    np.testing.assert_array_equal(np.isnan(values).all(axis=1), expected_nan)
    assert np.isfinite(values[~expected_nan]).all()


@pytest.mark.parametrize(
    "make",
    [
        lambda x, b: raised_cosine(x, 5, bounds=b),
        lambda x, b: raised_cosine(x, 5, log=True, bounds=b),
        lambda x, b: bspline(x, 5, bounds=b),
        lambda x, b: onehot(x, 5, bounds=b),
    ],
)
def test_default_bounds_are_finite_min_max(make):
    x = np.array([2.0, np.nan, 7.0, 3.5, np.inf, -np.inf])
    values = make(x, None)
    np.testing.assert_array_equal(np.isnan(values).all(1), [False, True, False, False, True, True])
    np.testing.assert_allclose(values[[0, 2, 3]], make(x[[0, 2, 3]], (2.0, 7.0)))


def test_cyclic_bspline_nonfinite_rows_are_nan():
    values = cyclic_bspline(np.array([1.0, np.nan, np.inf, -7.0]), 5)
    np.testing.assert_array_equal(np.isnan(values).all(1), [False, True, True, False])


def test_rescale_to_unit():
    u, usable = rescale_to_unit(np.array([1.0, 2.0, 3.0, 5.0]), (1.0, 3.0))
    np.testing.assert_allclose(u, [0.0, 0.5, 1.0, 2.0])
    np.testing.assert_array_equal(usable, [True, True, True, False])
    # A constant covariate maps to 0 (scale 1), as in NeMoS.
    u, usable = rescale_to_unit(np.full(3, 4.0))
    np.testing.assert_array_equal(u, 0.0)
    assert usable.all()
    # All-NaN input: nothing is usable.
    _, usable = rescale_to_unit(np.full(3, np.nan))
    assert not usable.any()


@pytest.mark.parametrize("bounds", [(1.0, 1.0), (2.0, 1.0), (0.0, np.inf), (0.0,)])
def test_bad_bounds(bounds):
    with pytest.raises(ValueError, match="bounds"):
        raised_cosine(GRID, 4, bounds=bounds)


# -- onehot -------------------------------------------------------------------


def test_onehot_bins():
    x = np.array([0.0, 0.24, 0.25, 0.5, 0.99, 1.0])
    values = onehot(x, 4, bounds=(0.0, 1.0))
    np.testing.assert_array_equal(values.argmax(1), [0, 0, 1, 2, 3, 3])
    np.testing.assert_array_equal(values.sum(1), 1.0)
    assert set(np.unique(values)) == {0.0, 1.0}


# -- causal filters -----------------------------------------------------------


def test_causal_filters_shape_and_lag_one():
    kernels = causal_filters(100, 8)
    assert kernels.shape == (100, 8)
    # Row 0 is lag 1: the first (narrowest) log bump peaks there, its
    # neighbour is at half height (width 2), the others are 0.
    np.testing.assert_allclose(kernels[0], [1.0, 0.5, 0, 0, 0, 0, 0, 0], atol=1e-12)
    assert kernels[:, 0].argmax() == 0
    # The last log bump has decayed to 0 at the window's end.
    np.testing.assert_allclose(kernels[-1], 0.0, atol=1e-12)


def test_causal_filters_linear_is_raised_cosine_on_grid():
    kernels = causal_filters(30, 5, log=False, width=3.0)
    np.testing.assert_allclose(kernels, raised_cosine(np.linspace(0, 1, 30), 5, width=3.0))


# -- argument validation ------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda: raised_cosine(GRID, 1),
        lambda: raised_cosine(GRID, 4, width=1.0),
        lambda: raised_cosine(GRID, 4, width=2.2),
        lambda: raised_cosine(GRID, 4, log=True, time_scaling=0.0),
        lambda: bspline(GRID, 3, order=4),
        lambda: bspline(GRID, 5, order=0),
        lambda: cyclic_bspline(GRID, 5, order=1),
        lambda: cyclic_bspline(GRID, 5, period=0.0),
        lambda: onehot(GRID, 0, bounds=(0, 1)),
        lambda: causal_filters(0, 4),
    ],
)
def test_invalid_arguments(call):
    with pytest.raises(ValueError):
        call()
