"""causal_convolve against a plain numpy reference, per segment and per method."""

import tracemalloc

import numpy as np
import pytest

from glmformula.bases import causal_filters
from glmformula.graph import convolution
from glmformula.graph.convolution import causal_convolve, choose_method, valid_rows

METHODS = ["direct", "fft", "sparse"]

# Disjoint, deliberately unsorted; includes a segment shorter than most
# windows, a one-row segment, two touching segments and uncovered gaps
# (rows 53-59 and 200-229 belong to no segment).
SEGMENTS = np.array([[61, 200], [0, 50], [230, 400], [50, 53], [60, 61]])
N_ROWS = 400


def reference(signal, kernels, segments):
    """Double loop over segments and lags; rows outside segments stay 0.

    out[t, c*K + k] = sum_{j=1..W, t-j >= start} kernels[j-1, k] * signal[t-j, c]
    """
    signal = np.asarray(signal, dtype=np.float64)
    n_rows, n_channels = signal.shape
    width, n_filters = kernels.shape
    out = np.zeros((n_rows, n_channels * n_filters))
    for start, stop in segments:
        for lag in range(1, width + 1):
            if start + lag >= stop:
                break
            past = signal[start : stop - lag, :, None] * kernels[lag - 1][None, None, :]
            out[start + lag : stop] += past.reshape(stop - start - lag, -1)
    return out


def scalar_reference(signal, kernels, segments):
    """The definition written out index by index (small inputs only)."""
    n_rows, n_channels = signal.shape
    width, n_filters = kernels.shape
    out = np.zeros((n_rows, n_channels * n_filters))
    for start, stop in segments:
        for t in range(start, stop):
            for c in range(n_channels):
                for k in range(n_filters):
                    for j in range(1, width + 1):
                        if t - j >= start:
                            out[t, c * n_filters + k] += kernels[j - 1, k] * signal[t - j, c]
    return out


def counts(n_rows, n_channels, seed=0, rate=0.7):
    return np.random.default_rng(seed).poisson(rate, (n_rows, n_channels)).astype(np.float64)


def test_reference_is_the_definition():
    signal = counts(N_ROWS, 2)
    kernels = causal_filters(7, 3)
    np.testing.assert_allclose(
        reference(signal, kernels, SEGMENTS), scalar_reference(signal, kernels, SEGMENTS)
    )


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("width", [1, 3, 17, 60])
def test_matches_reference_including_segment_borders(method, width):
    signal = counts(N_ROWS, 3)
    kernels = causal_filters(width, 4) if width > 1 else np.array([[0.7, -0.2, 1.0, 2.0]])
    ours = causal_convolve(signal, kernels, SEGMENTS, dtype=np.float64, method=method)
    expected = reference(signal, kernels, SEGMENTS)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12 * np.abs(expected).max())
    # The first row of each segment sees nothing (FFT round-off ~1e-16 aside);
    # rows outside every segment are exactly 0.
    first_rows = ours[SEGMENTS[:, 0]]
    np.testing.assert_allclose(first_rows, 0.0, atol=1e-12 if method == "fft" else 0.0)
    np.testing.assert_array_equal(ours[53:60], 0.0)
    np.testing.assert_array_equal(ours[200:230], 0.0)


@pytest.mark.parametrize("method", METHODS)
def test_many_chunks_and_channel_blocks(method, monkeypatch):
    """Shrink the working-set targets so chunk and block borders fall everywhere."""
    monkeypatch.setattr(convolution, "_DIRECT_BLOCK_BYTES", 1)
    monkeypatch.setattr(convolution, "_FFT_BLOCK_BYTES", 1)
    n_rows = 12_000
    segments = np.array([[0, 4090], [4090, 4200], [4300, 9001], [9001, 12_000]])
    signal = np.random.default_rng(3).normal(size=(n_rows, 5))
    kernels = causal_filters(40, 6)
    ours = causal_convolve(signal, kernels, segments, dtype=np.float64, method=method)
    expected = reference(signal, kernels, segments)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-9 * np.abs(expected).max())


@pytest.mark.parametrize("width", [2, 15, 100, 700])
def test_direct_and_fft_agree(width):
    rng = np.random.default_rng(width)
    n_rows = 20_000
    signal = rng.normal(size=(n_rows, 4)) * 10.0 ** rng.integers(-3, 3, size=4)
    segments = np.array([[0, 7000], [7000, 7500], [8000, 20_000]])
    kernels = causal_filters(width, 5, log=False)
    direct = causal_convolve(signal, kernels, segments, dtype=np.float64, method="direct")
    fft = causal_convolve(signal, kernels, segments, dtype=np.float64, method="fft")
    # Compare channel by channel: FFT error scales with each channel's size.
    for c in range(4):
        cols = slice(5 * c, 5 * c + 5)
        scale = np.abs(direct[:, cols]).max()
        np.testing.assert_allclose(fft[:, cols], direct[:, cols], rtol=0, atol=1e-9 * scale)


@pytest.mark.parametrize("method", METHODS)
def test_writes_into_out_float32(method):
    signal = counts(N_ROWS, 3)
    kernels = causal_filters(12, 4)
    out = np.full((N_ROWS, 12), 7.0, dtype=np.float32)
    result = causal_convolve(signal, kernels, SEGMENTS, out=out, method=method)
    assert result is out
    expected = reference(signal, kernels, SEGMENTS)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(out[200:230], 0.0)


@pytest.mark.parametrize("method", METHODS)
def test_default_output_is_float32(method):
    result = causal_convolve(counts(50, 2), causal_filters(5, 3), [[0, 50]], method=method)
    assert result.dtype == np.float32
    assert result.shape == (50, 6)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_nonfinite_input_poisons_its_window_only(method, bad_value):
    signal = counts(N_ROWS, 3)
    signal[100, 1] = bad_value  # segment [61, 200)
    signal[195, 0] = bad_value  # near the end of the same segment
    width, n_filters = 10, 4
    kernels = causal_filters(width, n_filters)
    ours = causal_convolve(signal, kernels, SEGMENTS, dtype=np.float64, method=method)

    expected_nan = np.zeros_like(ours, dtype=bool)
    expected_nan[101:111, 4:8] = True
    expected_nan[196:200, 0:4] = True  # stops at the segment border
    np.testing.assert_array_equal(np.isnan(ours), expected_nan)

    clean = signal.copy()
    clean[~np.isfinite(clean)] = 0.0
    expected = reference(clean, kernels, SEGMENTS)
    np.testing.assert_allclose(ours[~expected_nan], expected[~expected_nan], atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_integer_and_1d_signals(method):
    signal = counts(N_ROWS, 1).astype(np.int64)
    kernels = causal_filters(9, 3)
    expected = reference(signal, kernels, SEGMENTS)
    as_int = causal_convolve(signal, kernels, SEGMENTS, dtype=np.float64, method=method)
    as_1d = causal_convolve(signal[:, 0], kernels, SEGMENTS, dtype=np.float64, method=method)
    np.testing.assert_allclose(as_int, expected, atol=1e-12)
    np.testing.assert_allclose(as_1d, expected, atol=1e-12)


def test_empty_segments_give_zeros():
    out = np.ones((20, 6))
    causal_convolve(counts(20, 2), causal_filters(4, 3), np.zeros((0, 2), int), out=out)
    np.testing.assert_array_equal(out, 0.0)


def test_auto_uses_the_benchmark_rule():
    assert choose_method(convolution.FFT_MIN_WINDOW - 1, 8) == "direct"
    assert choose_method(convolution.FFT_MIN_WINDOW, 8) == "fft"
    per_window = convolution.SPARSE_MAX_PER_WINDOW
    assert choose_method(100, 8, per_window / 100) == "sparse"
    assert choose_method(100, 8, 1.01 * per_window / 100) == "fft"
    assert choose_method(10, 8, 1.01 * per_window / 10) == "direct"
    signal = counts(N_ROWS, 2)
    for width in (3, 80):
        kernels = causal_filters(width, 4)
        auto = causal_convolve(signal, kernels, SEGMENTS, dtype=np.float64)
        np.testing.assert_allclose(auto, reference(signal, kernels, SEGMENTS), atol=1e-9)


def test_peak_memory_stays_near_the_output():
    """No (T, C, K) float64 temporary: peak extra memory is a bounded block."""
    n_rows, n_channels, n_filters = 200_000, 20, 8
    signal = counts(n_rows, n_channels, rate=0.05)
    kernels = causal_filters(50, n_filters)
    out = np.empty((n_rows, n_channels * n_filters), dtype=np.float32)
    full_float64 = n_rows * n_channels * n_filters * 8
    for method in METHODS:
        tracemalloc.start()
        causal_convolve(signal, kernels, [[0, n_rows]], out=out, method=method)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < full_float64 / 4, (method, peak / 2**20)


def test_valid_rows():
    width = 5
    usable = valid_rows(SEGMENTS, N_ROWS, width)
    expected = np.zeros(N_ROWS, dtype=bool)
    for start, stop in SEGMENTS:
        for t in range(start, stop):
            expected[t] = t - start >= width
    np.testing.assert_array_equal(usable, expected)
    # Segments shorter than the window contribute no row.
    assert not usable[50:53].any() and not usable[60]
    covered = valid_rows(SEGMENTS, N_ROWS, 0)
    assert covered.sum() == (SEGMENTS[:, 1] - SEGMENTS[:, 0]).sum()


@pytest.mark.parametrize(
    "segments,error",
    [
        ([[0, 10], [5, 20]], ValueError),  # overlap
        ([[0, 10], [10, 30]], ValueError),  # past the end
        ([[-1, 10]], ValueError),
        ([[5, 3]], ValueError),
        ([[0.0, 10.0]], TypeError),
        ([0, 10], ValueError),
    ],
)
def test_bad_segments(segments, error):
    with pytest.raises(error):
        causal_convolve(counts(20, 1), causal_filters(3, 2), segments)


def test_bad_arguments():
    signal, kernels = counts(20, 2), causal_filters(3, 2)
    with pytest.raises(ValueError, match="method"):
        causal_convolve(signal, kernels, [[0, 20]], method="fast")
    with pytest.raises(ValueError, match="shape"):
        causal_convolve(signal, kernels, [[0, 20]], out=np.zeros((20, 3)))
    with pytest.raises(TypeError, match="float"):
        causal_convolve(signal, kernels, [[0, 20]], out=np.zeros((20, 4), dtype=int))
    with pytest.raises(ValueError, match="finite"):
        causal_convolve(signal, np.full((3, 2), np.nan), [[0, 20]])
    with pytest.raises(ValueError, match="kernels"):
        causal_convolve(signal, np.zeros(3), [[0, 20]])


def test_auto_takes_the_sparse_method_for_spike_counts(monkeypatch):
    """Spike counts in fine bins (a few per window) go the sparse way, a dense signal does not;
    both give the definition's values."""
    called = []
    real = convolution.sparse_causal_convolve
    monkeypatch.setattr(convolution, "sparse_causal_convolve",
                        lambda *args: called.append(1) or real(*args))
    kernels = causal_filters(100, 4)
    spikes = counts(N_ROWS, 3, rate=0.01)
    auto = causal_convolve(spikes, kernels, SEGMENTS, dtype=np.float64)
    assert called == [1]
    np.testing.assert_allclose(auto, reference(spikes, kernels, SEGMENTS), atol=1e-12)
    dense = counts(N_ROWS, 3, rate=0.7)
    auto = causal_convolve(dense, kernels, SEGMENTS, dtype=np.float64)
    assert called == [1]
    np.testing.assert_allclose(auto, reference(dense, kernels, SEGMENTS), atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sparse_method_sums_in_float64_across_chunks_and_threads(dtype, monkeypatch):
    """Row chunks shorter than the window, several threads, a strided output: each value is the
    float64 sum rounded once to the output's dtype."""
    monkeypatch.setattr("glmformula.graph.sparse_convolution.CHUNK_ROWS", 7)
    signal = counts(N_ROWS, 3, seed=3, rate=0.2) * 1e-3 + counts(N_ROWS, 3, seed=4, rate=0.1)
    kernels = causal_filters(12, 5)
    wide = np.full((N_ROWS, 2 + 15), -1.0, dtype=dtype)
    out = wide[:, 1:16]  # not contiguous
    causal_convolve(signal, kernels, SEGMENTS, out=out, method="sparse", workers=3)
    expected = reference(signal, kernels, SEGMENTS).astype(dtype)
    np.testing.assert_array_equal(out, expected) if dtype == np.float32 else \
        np.testing.assert_allclose(out, expected, rtol=1e-14, atol=1e-15)
    np.testing.assert_array_equal(wide[:, [0, 16]], -1.0)


def test_sparse_kernel_compiles_where_numba_cannot_cache(monkeypatch):
    """A read-only install without a writable cache directory: Numba refuses ``cache=True``;
    the kernel is then compiled in each process instead of failing the import."""
    import numba

    from glmformula.graph import sparse_convolution

    real = numba.njit

    def njit(**options):
        if options.get("cache"):
            raise RuntimeError("cannot cache function: no locator available for file")
        return real(**options)

    monkeypatch.setattr(numba, "njit", njit)
    kernel = sparse_convolution._compiled(sparse_convolution._convolve_chunks.py_func)
    signal = counts(N_ROWS, 2, rate=0.05)
    kernels = causal_filters(9, 3)
    out = np.zeros((N_ROWS, 6))
    tasks = np.array([[start, start, stop] for start, stop in SEGMENTS], dtype=np.int64)
    kernel(signal, kernels, tasks, out)
    np.testing.assert_allclose(out, reference(signal, kernels, SEGMENTS), atol=1e-12)
