"""Time the direct, FFT and sparse paths of causal_convolve across window lengths and spike
rates.

The crossovers printed at the end are what ``FFT_MIN_WINDOW`` and ``SPARSE_MAX_PER_WINDOW``
in ``glmformula/graph/convolution.py`` are set from: the first window where the FFT beats the
direct method on the densest rate, and the largest number of non-zero entries per window
(non-zero fraction x W) where the sparse method still beats both.

Run from the repository root::

    python benchmarks/convolution.py                 # 50 units, 1e5 bins, K=8
    python benchmarks/convolution.py --channels 10 --filters 4 --repeats 5
    python benchmarks/convolution.py --rates 0.01 0.05 0.2 --windows 10 100
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from glmformula.bases import causal_filters  # noqa: E402
from glmformula.graph.convolution import (  # noqa: E402
    FFT_MIN_WINDOW,
    SPARSE_MAX_PER_WINDOW,
    causal_convolve,
    choose_method,
)


def best_time(fn, repeats: int) -> float:
    """Minimum wall time over ``repeats`` calls after one warm-up, in seconds."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="time bins T")
    parser.add_argument("--channels", type=int, default=50, help="units C")
    parser.add_argument("--filters", type=int, default=8, help="filters K")
    parser.add_argument("--segments", type=int, default=1, help="equal epochs E")
    parser.add_argument("--rates", type=float, nargs="+", default=[0.02, 0.05, 0.2],
                        help="mean counts per bin (Poisson)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                        help="output dtype")
    parser.add_argument(
        "--windows", type=int, nargs="+", default=[2, 5, 10, 15, 20, 30, 50, 100, 200, 400]
    )
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    edges = np.linspace(0, args.rows, args.segments + 1).astype(np.int64)
    segments = np.stack([edges[:-1], edges[1:]], axis=1)
    out = np.empty((args.rows, args.channels * args.filters), dtype=args.dtype)

    print(
        f"T={args.rows} C={args.channels} K={args.filters} E={args.segments} "
        f"out={args.dtype} {out.nbytes / 2**20:.0f} MiB"
    )
    print(f"{'rate':>6} {'W':>5} {'nz/window':>9} {'direct s':>9} {'fft s':>9} {'sparse s':>9} "
          f"{'faster':>7} {'auto':>7}")
    crossover = None
    sparse_wins: list[float] = []
    sparse_loses: list[float] = []
    for rate in args.rates:
        counts = rng.poisson(rate, (args.rows, args.channels)).astype(np.float64)
        nonzero = np.count_nonzero(counts) / counts.size
        for width in args.windows:
            kernels = causal_filters(width, args.filters)
            timing = {
                method: best_time(
                    lambda m=method: causal_convolve(counts, kernels, segments, out=out,
                                                     method=m),
                    args.repeats,
                )
                for method in ("direct", "fft", "sparse")
            }
            faster = min(timing, key=timing.get)
            dense = min(("direct", "fft"), key=timing.get)
            if rate == max(args.rates) and dense == "fft" and crossover is None:
                crossover = width
            (sparse_wins if faster == "sparse" else sparse_loses).append(nonzero * width)
            print(
                f"{rate:>6} {width:>5} {nonzero * width:>9.2f} {timing['direct']:>9.3f} "
                f"{timing['fft']:>9.3f} {timing['sparse']:>9.3f} {faster:>7} "
                f"{choose_method(width, args.filters, nonzero):>7}"
            )
    print(f"first window where fft beats direct (rate {max(args.rates)}): {crossover}; "
          f"current FFT_MIN_WINDOW = {FFT_MIN_WINDOW}")
    print(f"sparse fastest up to {max(sparse_wins, default=0):.2f} non-zero entries per window, "
          f"not from {min(sparse_loses, default=float('inf')):.2f}; current "
          f"SPARSE_MAX_PER_WINDOW = {SPARSE_MAX_PER_WINDOW}")


if __name__ == "__main__":
    main()
