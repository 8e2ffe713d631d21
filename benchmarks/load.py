"""Load test: fit 200 units x 1e5 bins x 50 columns, and compare 8 models by cross-validation.

Run by hand (not part of the tests; one heavy job at a time on a shared machine)::

    flock /tmp/glmformula-bench.lock python benchmarks/load.py            # full size, cv=5
    python benchmarks/load.py --quick --no-write                           # a small smoke run

The data are simulated pynapple objects (nothing is read from disk): a TsGroup of 200 units
over 1e5 bins of 10 ms (1,000 s), a head angle and a speed at 100 Hz, a 2-D position at 50 Hz,
a theta phase at 250 Hz and an injected current at 1 kHz (bin-averaged), all in one epoch.
Each unit's log-rate is a random combination of the full model's features (so every term
matters for some units), and its spikes are Poisson counts placed uniformly within the bins.

The full model has 50 shared columns::

    cyclic(hd, 12) + bspline(speed, 8) + rcos(x, 10) + rcos(y, 10) + filter(current, 6,
    window=200ms) + cyclic(theta, 4)

``gf.fit`` fits it for all 200 units at once (Ridge(1e-3)); ``gf.compare`` compares 8 models
(the null model, the full model, six models in between) with contiguous-block cross-validation.
Wall time and CPU time of each step are measured, and the process's peak resident memory
(``VmHWM``, the kernel's high-water mark, cross-checked by a psutil sampler every 5 ms).
With ``--out`` (default ``docs/performance.md``) the results replace the section between
``<!-- BEGIN benchmarks/load.py -->`` and ``<!-- END benchmarks/load.py -->``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import threading
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

from _common import (  # noqa: E402
    current_rss,
    load_line,
    machine_info,
    machine_line,
    markdown_table,
    versions_line,
    write_section,
)

FULL = ("cyclic(hd, 12) + bspline(speed, 8) + rcos(x, 10) + rcos(y, 10) + "
        "filter(current, 6, window=200ms) + cyclic(theta, 4)")
MODELS = {
    "null": "spikes ~ 1",
    "hd": "spikes ~ cyclic(hd, 12)",
    "hd+speed": "spikes ~ cyclic(hd, 12) + bspline(speed, 8)",
    "place": "spikes ~ rcos(x, 10) + rcos(y, 10)",
    "hd+speed+place": "spikes ~ cyclic(hd, 12) + bspline(speed, 8) + rcos(x, 10) + rcos(y, 10)",
    "hd+speed+place+current": "spikes ~ cyclic(hd, 12) + bspline(speed, 8) + rcos(x, 10) + "
                              "rcos(y, 10) + filter(current, 6, window=200ms)",
    "hd+place+theta": "spikes ~ cyclic(hd, 12) + rcos(x, 10) + rcos(y, 10) + cyclic(theta, 4)",
    "full": "spikes ~ " + FULL,
}
BEGIN, END = "<!-- BEGIN benchmarks/load.py -->", "<!-- END benchmarks/load.py -->"


# --------------------------------------------------------------------------- memory


class PeakRSS:
    """The process's peak resident memory: ``VmHWM`` (reset at the start where the kernel
    allows it), cross-checked by a psutil sampler thread; also ``ru_maxrss``."""

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.sampled = 0

    def __enter__(self):
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.reset = True
        except OSError:
            self.reset = False
        self.start = current_rss()
        self.sampled = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.sampled = max(self.sampled, current_rss())
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        import resource
        self.ru_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.hwm = None
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        self.hwm = int(line.split()[1]) * 1024
        except OSError:
            pass
        self.peak = max(v for v in (self.hwm if self.reset else None, self.sampled,
                                    None if self.reset else self.ru_maxrss) if v is not None)
        return False


# --------------------------------------------------------------------------- data


def simulate(n_units: int, n_bins: int, bin_size: float, seed: int = 0):
    """Pynapple objects for the load test and the true weights (columns of the full model)."""
    import pynapple as nap

    import glmformula as gf

    rng = np.random.default_rng(seed)
    duration = n_bins * bin_size
    support = nap.IntervalSet(0.0, duration)

    def walk(n, step, lo=None, hi=None):
        v = np.cumsum(rng.normal(0.0, step, n))
        if lo is not None:  # reflect into [lo, hi]
            span = hi - lo
            m = np.mod(v - lo, 2 * span)
            v = np.where(m > span, 2 * span - m, m) + lo
        return v

    t100 = np.arange(0.0, duration, 0.01)
    t50 = np.arange(0.0, duration, 0.02)
    t250 = np.arange(0.0, duration, 0.004)
    t1k = np.arange(0.0, duration, 0.001)
    hd = np.mod(walk(len(t100), 0.08), 2 * np.pi)
    speed = np.abs(np.convolve(rng.normal(0.0, 1.0, len(t100) + 49), np.ones(50) / 7,
                               "valid")) * 10
    x, y = walk(len(t50), 1.5, 0.0, 100.0), walk(len(t50), 1.5, 0.0, 100.0)
    theta = np.mod(2 * np.pi * 8.0 * t250 + walk(len(t250), 0.05), 2 * np.pi)
    current = np.convolve(rng.normal(0.0, 1.0, len(t1k) + 19), np.ones(20) / 20, "valid")
    data = {
        "hd": nap.Tsd(t=t100, d=hd, time_support=support),
        "speed": nap.Tsd(t=t100, d=speed, time_support=support),
        "x": nap.Tsd(t=t50, d=x, time_support=support),
        "y": nap.Tsd(t=t50, d=y, time_support=support),
        "theta": nap.Tsd(t=t250, d=theta, time_support=support),
        "current": nap.Tsd(t=t1k, d=current, time_support=support),
        "spikes": nap.TsGroup({0: nap.Ts(np.array([duration / 2]), time_support=support)},
                              time_support=support),
    }
    # The true log-rates live in the span of the full model's features (built once).
    X = gf.design_matrix("spikes ~ " + FULL, data, bin_size=bin_size)
    features = X.storage
    P = features.shape[1]
    weights = rng.normal(0.0, 0.35, (P, n_units)) * (rng.random((P, n_units)) < 0.5)
    base = np.log(rng.uniform(2.0, 15.0, n_units) * bin_size)
    spikes = {}
    starts = X.grid.left_edges
    for lo in range(0, n_units, 25):  # blocks of units keep the (T, U) arrays small
        hi = min(lo + 25, n_units)
        eta = features @ weights[:, lo:hi]
        eta -= eta.mean(axis=0)
        counts = rng.poisson(np.exp(np.clip(eta + base[lo:hi], -20, 3)))
        for j in range(hi - lo):
            c = counts[:, j]
            rows = np.repeat(np.arange(len(c)), c)
            spikes[lo + j] = nap.Ts(np.sort(starts[rows] + rng.uniform(0, bin_size, len(rows))))
    data["spikes"] = nap.TsGroup(spikes, time_support=support)
    del features, X
    return data, P


# --------------------------------------------------------------------------- run


def run(args) -> dict:
    import jax

    import glmformula as gf

    info = {"load_before": os.getloadavg(), "machine": machine_info()}
    t0 = time.perf_counter()
    data, n_columns = simulate(args.units, args.bins, args.bin_size, args.seed)
    info["simulate_s"] = time.perf_counter() - t0
    info["n_spikes"] = int(sum(len(data["spikes"][u]) for u in data["spikes"].index))
    info["columns"] = n_columns
    print(f"simulated {args.units} units x {args.bins} bins ({info['n_spikes']:,} spikes, "
          f"{n_columns} columns) in {info['simulate_s']:.1f} s", flush=True)
    regularizer = gf.Ridge(args.ridge)
    info["rss_before"] = current_rss()

    with warnings.catch_warnings(record=True) as caught, PeakRSS() as memory:
        warnings.simplefilter("always")
        wall, cpu = time.perf_counter(), time.process_time()
        # smoothing=None: the fixed-ridge fits this benchmark has timed (gf.fit's default
        # became smoothing="auto" later; its cost is benchmarks/smoothing*)
        res = gf.fit(MODELS["full"], data, bin_size=args.bin_size, regularizer=regularizer,
                     smoothing=None)
        info["fit"] = {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu,
                       "solver": res.solver, "converged": int(np.sum(res.converged_units)),
                       "n_iter": int(np.max(res.n_iter_units)), "rows": res.n_rows,
                       "compile": float(res.compile_seconds), "chunk_size": res.chunk_size,
                       "n_params": int(res.n_params)}
        assert np.isfinite(res.weights).all() and np.isfinite(res.intercepts).all()
        print(f"fit: {info['fit']['wall']:.1f} s wall, {info['fit']['cpu']:.1f} s CPU, "
              f"solver {res.solver}, {info['fit']['converged']}/{args.units} converged", flush=True)
        del res
        wall, cpu = time.perf_counter(), time.process_time()
        table = gf.compare(MODELS, data, bin_size=args.bin_size, cv=args.cv,
                           regularizer=regularizer, progress=args.progress, smoothing=None)
        info["compare"] = {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}
        print(f"compare: {info['compare']['wall']:.1f} s wall, "
              f"{info['compare']['cpu']:.1f} s CPU", flush=True)
    info["warnings"] = sorted({w.category.__name__ for w in caught})
    info["memory"] = {"peak": memory.peak, "hwm": memory.hwm, "sampled": memory.sampled,
                      "ru_maxrss": memory.ru_maxrss, "reset": memory.reset,
                      "start": memory.start}
    info["table"] = table
    info["load_after"] = os.getloadavg()
    info["devices"] = ", ".join(str(d) for d in jax.devices())
    return info


def report(info: dict, args) -> str:
    m = info["memory"]
    fit, cmp = info["fit"], info["compare"]
    command = "python benchmarks/load.py " + " ".join(a for a in sys.argv[1:]
                                                       if not a.startswith("--out"))
    table = info["table"]
    cols = [c for c in ("n_params", "cv_bits_per_spike", "cv_bits_per_spike_se",
                        "delta_cv_bits_per_spike") if c in table.columns]
    rows = [[name] + [f"{table.loc[name, c]:.4g}" for c in cols] for name in table.index]
    lines = [
        "<!-- generated by benchmarks/load.py: rerun it rather than editing this section -->",
        f"## Load: {args.units} units x {args.bins:.0e} bins x {info['columns']} columns, "
        f"{len(MODELS)} models compared".replace("e+0", "e"),
        "",
        f"Command: `flock /tmp/glmformula-bench.lock {command.strip()}` ({datetime.date.today()}).",
        f"Machine: {machine_line(info['machine'])}; JAX devices: {info['devices']}. "
        f"{versions_line(['glmformula', 'jax', 'jaxlib', 'numpy', 'scipy', 'pynapple'])}.",
        f"{load_line(info['load_before'], info['load_after']).capitalize()} (the machine is "
        "shared: wall times include waiting for a core, CPU times do not).",
        "",
        f"Data: simulated pynapple objects, {args.units} units x {args.bins:,} bins of "
        f"{args.bin_size * 1e3:g} ms ({args.units * args.bins / 1e6:g}M unit-bins, "
        f"{info['n_spikes']:,} spikes), covariates at 50 Hz to 1 kHz (simulated in "
        f"{info['simulate_s']:.0f} s, not counted). Full model: `spikes ~ {FULL}` "
        f"({info['columns']} shared columns, {fit['n_params']} parameters over all units), "
        f"Ridge({args.ridge:g}).",
        "",
        markdown_table(["step", "wall (s)", "CPU (s)", "details"], [
            ["`gf.fit` (full model, all units at once)", f"{fit['wall']:.1f}", f"{fit['cpu']:.1f}",
             f"solver {fit['solver']}, {fit['converged']}/{args.units} units converged, "
             f"at most {fit['n_iter']} iterations, {fit['rows']:,} rows, "
             f"{'in memory' if not fit['chunk_size'] else 'blocked'}"],
            [f"`gf.compare` ({len(MODELS)} models, cv={args.cv})", f"{cmp['wall']:.1f}",
             f"{cmp['cpu']:.1f}", f"{len(MODELS) * args.cv} fold fits + "
             f"{len(MODELS)} full fits"],
            ["both", f"{fit['wall'] + cmp['wall']:.1f}", f"{fit['cpu'] + cmp['cpu']:.1f}", ""],
        ], align="lrrl"),
        "",
        f"Peak resident memory of the process during both steps: **{m['peak'] / 2**30:.2f} GiB** "
        f"(`VmHWM`{' after a reset' if m['reset'] else ''}; psutil sampler every 5 ms: "
        f"{m['sampled'] / 2**30:.2f} GiB; resident before the steps, with the data and JAX "
        f"loaded: {m['start'] / 2**30:.2f} GiB), on a machine with "
        f"{info['machine']['ram_gib']:.0f} GiB. Warnings raised: "
        f"{', '.join(info['warnings']) or 'none'}.",
        "",
        "The comparison it printed:",
        "",
        markdown_table(["model"] + cols, rows),
        "",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--units", type=int, default=200)
    ap.add_argument("--bins", type=int, default=100_000)
    ap.add_argument("--bin-size", type=float, default=0.01, help="seconds (default 0.01)")
    ap.add_argument("--cv", type=int, default=5)
    ap.add_argument("--ridge", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--progress", action="store_true", help="show the comparison's progress")
    ap.add_argument("--quick", action="store_true", help="20 units x 1e4 bins, cv=3 (a try)")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "performance.md"))
    ap.add_argument("--no-write", action="store_true", help="print the section only")
    args = ap.parse_args(argv)
    if args.quick:
        args.units, args.bins, args.cv = 20, 10_000, 3
    info = run(args)
    text = report(info, args)
    print("\n" + text)
    if not args.no_write and not args.quick:
        write_section(args.out, text, "benchmarks/load.py")
        print(f"wrote the section of {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
