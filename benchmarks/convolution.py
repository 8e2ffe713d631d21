"""Time the direct and FFT paths of causal_convolve across window lengths.

The crossover printed at the end is what ``FFT_MIN_WINDOW`` in
``glmformula/graph/convolution.py`` is set from.

Run from the repository root::

    python benchmarks/convolution.py                 # 50 units, 1e5 bins, K=8
    python benchmarks/convolution.py --channels 10 --filters 4 --repeats 5
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
    parser.add_argument("--rate", type=float, default=0.05, help="spikes per bin")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--windows", type=int, nargs="+", default=[2, 5, 10, 15, 20, 30, 50, 100, 200, 400]
    )
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    counts = rng.poisson(args.rate, (args.rows, args.channels)).astype(np.float64)
    edges = np.linspace(0, args.rows, args.segments + 1).astype(np.int64)
    segments = np.stack([edges[:-1], edges[1:]], axis=1)
    out = np.empty((args.rows, args.channels * args.filters), dtype=np.float32)

    print(
        f"T={args.rows} C={args.channels} K={args.filters} E={args.segments} "
        f"out=float32 {out.nbytes / 2**20:.0f} MiB"
    )
    print(f"{'W':>5} {'direct s':>9} {'fft s':>9} {'faster':>7} {'auto':>7}")
    crossover = None
    for width in args.windows:
        kernels = causal_filters(width, args.filters)
        timing = {
            method: best_time(
                lambda m=method: causal_convolve(counts, kernels, segments, out=out, method=m),
                args.repeats,
            )
            for method in ("direct", "fft")
        }
        faster = min(timing, key=timing.get)
        if faster == "fft" and crossover is None:
            crossover = width
        print(
            f"{width:>5} {timing['direct']:>9.3f} {timing['fft']:>9.3f} {faster:>7} "
            f"{choose_method(width, args.filters):>7}"
        )
    print(f"first window where fft wins: {crossover}; current FFT_MIN_WINDOW = {FFT_MIN_WINDOW}")


if __name__ == "__main__":
    main()
