"""Reference comparison: our bases and causal convolution against NeMoS 0.2.8.

NeMoS is a test-only dependency. Its raised cosines are computed in JAX, so
every comparison runs with JAX 64-bit mode switched on (and restored after).

Conventions checked here
------------------------
- Evaluation mode: ``raised_cosine`` / ``bspline`` / ``cyclic_bspline`` equal
  ``<Basis>Eval(...).compute_features(x)``, NaN pattern included: with
  explicit ``bounds`` NeMoS fills out-of-bounds rows with ``fill_value=nan``,
  and so do we; NaN samples give NaN rows in both.
- ``causal_filters(W, K)`` equals ``RaisedCosineLogConv(K, W).kernel_``
  (``RaisedCosineLinearConv`` for ``log=False``): the basis on
  ``linspace(0, 1, W)``.
- Convolution, shift mapping: NeMoS conv mode (``predictor_causality="causal"``,
  ``shift=True``) returns, for row ``t >= W``,
  ``sum_{m=0..W-1} kernel_[m] * x[t-1-m]`` and NaN for rows ``t < W`` of each
  epoch. Writing ``j = m + 1`` this is our
  ``sum_{j=1..W} kernels[j-1] * x[t-j]``: **no index shift between the two
  kernels** (our row j = lag j+1 = NeMoS row j after its one-bin causal
  shift), and the output rows line up one to one. NeMoS's NaN rows are
  exactly ``~valid_rows(segments, T, W)``; on those rows we return the partial
  sums instead of NaN, and the caller drops them.
"""

import warnings

import numpy as np
import pytest

from glmformula.bases import bspline, causal_filters, cyclic_bspline, raised_cosine
from glmformula.graph.convolution import causal_convolve, valid_rows

nmo = pytest.importorskip("nemos")
jax = pytest.importorskip("jax")
nap = pytest.importorskip("pynapple")

ATOL = 1e-6


@pytest.fixture(autouse=True)
def jax_x64():
    """Run NeMoS in float64 so differences are ours, not float32 rounding."""
    with jax.enable_x64(True):
        yield


def samples():
    """Covariate samples with edges, out-of-bounds values and a NaN."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1.0, 3.0, 400)
    x[:6] = [-1.0, 3.0, np.nan, 0.0, 2.0, 1.0]
    return x


def assert_same(ours, theirs):
    theirs = np.asarray(theirs, dtype=np.float64)
    assert ours.shape == theirs.shape
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
    np.testing.assert_allclose(ours, theirs, atol=ATOL, rtol=0, equal_nan=True)


@pytest.mark.parametrize("bounds", [None, (0.0, 2.0)])
@pytest.mark.parametrize("n_basis", [2, 5, 10])
@pytest.mark.parametrize("width", [1.5, 2.0, 3.0])
def test_raised_cosine_linear(bounds, n_basis, width):
    x = samples()
    ref = nmo.basis.RaisedCosineLinearEval(n_basis, width=width, bounds=bounds)
    assert_same(raised_cosine(x, n_basis, width=width, bounds=bounds), ref.compute_features(x))


@pytest.mark.parametrize("bounds", [None, (0.0, 2.0)])
@pytest.mark.parametrize("n_basis", [2, 6, 10])
@pytest.mark.parametrize("width,time_scaling", [(2.0, 50.0), (2.5, 5.0), (1.5, 200.0)])
def test_raised_cosine_log(bounds, n_basis, width, time_scaling):
    x = samples()
    ref = nmo.basis.RaisedCosineLogEval(
        n_basis, width=width, time_scaling=time_scaling, bounds=bounds
    )
    ours = raised_cosine(
        x, n_basis, log=True, width=width, time_scaling=time_scaling, bounds=bounds
    )
    assert_same(ours, ref.compute_features(x))


@pytest.mark.parametrize("bounds", [None, (0.0, 2.0)])
@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize("n_basis", [4, 9])
def test_bspline(bounds, order, n_basis):
    x = samples()
    ref = nmo.basis.BSplineEval(n_basis, order=order, bounds=bounds)
    assert_same(bspline(x, n_basis, order=order, bounds=bounds), ref.compute_features(x))


@pytest.mark.parametrize("order", [2, 3, 4])
@pytest.mark.parametrize("n_basis", [4, 9])
@pytest.mark.parametrize("period", [2 * np.pi, 1.0])
def test_cyclic_bspline(order, n_basis, period):
    """Ours takes x modulo period; NeMoS needs it folded into its bounds first."""
    x = samples() * period
    ref = nmo.basis.CyclicBSplineEval(n_basis, order=order, bounds=(0.0, period))
    theirs = ref.compute_features(np.mod(x, period))
    assert_same(cyclic_bspline(x, n_basis, order=order, period=period), theirs)


@pytest.mark.parametrize("window", [1, 2, 10, 100])
@pytest.mark.parametrize("n_basis", [2, 8])
def test_causal_filters_log(window, n_basis):
    ref = nmo.basis.RaisedCosineLogConv(n_basis, window)
    ref.setup_basis(np.zeros(window + 1))
    assert_same(causal_filters(window, n_basis), ref.kernel_)


@pytest.mark.parametrize("window", [2, 10, 100])
def test_causal_filters_linear(window):
    ref = nmo.basis.RaisedCosineLinearConv(6, window, width=2.5)
    ref.setup_basis(np.zeros(window + 1))
    assert_same(causal_filters(window, 6, log=False, width=2.5), ref.kernel_)


def spike_counts(n_rows, n_channels, seed=0):
    return np.random.default_rng(seed).poisson(0.8, (n_rows, n_channels)).astype(float)


@pytest.mark.parametrize("method", ["direct", "fft", "sparse"])
def test_convolution_matches_nemos_single_epoch(method):
    """Same rows, same columns (channel-major), no shift: see module docstring."""
    n_rows, n_channels, window, n_basis = 600, 3, 25, 6
    x = spike_counts(n_rows, n_channels)
    ref = nmo.basis.RaisedCosineLogConv(n_basis, window)
    theirs = np.asarray(ref.compute_features(x), dtype=np.float64)
    segments = np.array([[0, n_rows]])
    ours = causal_convolve(
        x, causal_filters(window, n_basis), segments, dtype=np.float64, method=method
    )
    usable = valid_rows(segments, n_rows, window)
    np.testing.assert_array_equal(usable, ~np.isnan(theirs).any(axis=1))
    np.testing.assert_allclose(ours[usable], theirs[usable], atol=1e-9, rtol=0)


@pytest.mark.parametrize("method", ["direct", "fft", "sparse"])
def test_convolution_matches_nemos_per_epoch(method):
    """NeMoS convolves a pynapple frame epoch by epoch; our segments do the same."""
    n_rows, n_channels, window, n_basis = 500, 2, 15, 4
    x = spike_counts(n_rows, n_channels, seed=1)
    t = np.arange(n_rows) * 0.01
    epochs = nap.IntervalSet(start=[0.0, 1.6, 3.0], end=[1.2, 2.905, 4.995])
    frame = nap.TsdFrame(t=t, d=x, time_support=epochs)
    ref = nmo.basis.RaisedCosineLogConv(n_basis, window)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = np.asarray(ref.compute_features(frame).values, dtype=np.float64)

    # Row ranges of each epoch in the restricted frame.
    bounds = np.searchsorted(frame.t, epochs.values)
    bounds[:, 1] = np.searchsorted(frame.t, epochs.values[:, 1], side="right")
    ours = causal_convolve(
        frame.values, causal_filters(window, n_basis), bounds, dtype=np.float64, method=method
    )
    usable = valid_rows(bounds, frame.shape[0], window)
    np.testing.assert_array_equal(usable, ~np.isnan(theirs).any(axis=1))
    np.testing.assert_allclose(ours[usable], theirs[usable], atol=1e-9, rtol=0)
