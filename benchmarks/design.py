"""Design-matrix building: glmformula side by side with NeMoS ``compute_features``.

Run by hand from the repository root (not part of the tests)::

    python benchmarks/design.py                    # all cases, writes docs/performance_design.md
    python benchmarks/design.py --cases single --fresh 2 --repeats 2 --no-write   # a quick look

Cases (the same features in both libraries):

single    50 simulated Poisson units (5-30 Hz), 100 s in one epoch, 1 ms bins (T = 1e5):
          ``spikes ~ history(8, log, window=100ms) + coupling(all)`` -> 400 columns, against
          ``nemos.basis.RaisedCosineLogConv(8, window_size=100).compute_features(counts)``
          on the (1e5, 50) count matrix (a NumPy array).
epochs10  the same units and formula on 10 disjoint epochs of 10 s (1 s gaps; T = 1e5);
          NeMoS gets the counts as a TsdFrame whose time support is the 10 epochs, so it
          convolves each epoch separately, as glmformula does.
hd        the real head-direction recording (../shared/data/hd_mouse28_140313; 32 units, the
          22 ``valid`` epochs, 10 ms bins, T ~ 2.3e5):
          ``spikes ~ cyclic(head_direction, 12) + history(8, log, window=100ms) +
          coupling(all)`` -> 12 + 256 columns, against ``CyclicBSplineEval(12, bounds=(0, 2pi))
          + RaisedCosineLogConv(8, window_size=10)`` on the angle and the counts (TsdFrames on
          the same epochs; NeMoS gets glmformula's log stretch for a 10-bin window, see below).

What is timed. glmformula: ``gf.design_matrix(formula, data, bin_size=..., dtype="float32")``
from the pynapple objects, so binning the spikes, sampling the angle, parsing and compiling the
formula are all inside its time. NeMoS: ``compute_features`` only, on inputs already binned
(``TsGroup.count``) and sampled; that preparation is timed separately ("NeMoS input prep") and
is *not* added to NeMoS's time. NeMoS output is float32 (JAX's default), like glmformula's.

"first" is the first call in a fresh interpreter (after imports and data creation: includes
JAX compilation for NeMoS, and for glmformula building the formula parser); "warm" is the
median of ``--repeats`` further calls in that process, every output dropped before the next
call. First-call times are the median over ``--fresh`` fresh processes.

Peak memory is the increase of the process's resident high-water mark during the first call,
over its RSS just before it (``benchmarks/_common.py``, ``PeakMemory``), median over the fresh
processes; "design" is the size of the final float32 design itself. The output stays alive
when the peak is read, so it counts in the peak: a ratio of 1.0 means no temporaries at all.

Both libraries' columns are compared on the rows both keep (glmformula's ``valid`` rows,
NeMoS's rows without NaN), matched by bin time; glmformula's columns are channel-major
(unit u, filter k at column u*8 + k, after the shared columns), as NeMoS's are.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402

HD_FOLDER = ROOT.parent / "shared" / "data" / "hd_mouse28_140313"
HD_FILE = HD_FOLDER / "Mouse28-140313_wake_hd.npz"
SPIKE_FORMULA = "spikes ~ history(8, log, window=100ms) + coupling(all)"
HD_FORMULA = "spikes ~ cyclic(head_direction, 12) + history(8, log, window=100ms) + coupling(all)"
N_FILTERS = 8
CASES = {
    "single": dict(label="simulated, 50 units, 1 epoch, 1 ms (T=1e5)", bin=0.001, window=100,
                   formula=SPIKE_FORMULA),
    "epochs10": dict(label="simulated, 50 units, 10 epochs, 1 ms (T=1e5)", bin=0.001,
                     window=100, formula=SPIKE_FORMULA),
    "hd": dict(label="head direction (real), 32 units, 22 epochs, 10 ms", bin=0.01,
               window=10, formula=HD_FORMULA),
}
LIBS = ("glmformula", "nemos")


# --------------------------------------------------------------------------- data


def simulated(case: str, n_units: int = 50, seconds: float = 100.0, seed: int = 0):
    """A TsGroup of Poisson units and the epochs of the case (1e5 bins of 1 ms in all)."""
    import pynapple as nap
    rng = np.random.default_rng(seed)
    if case == "single":
        starts, ends = np.array([0.0]), np.array([seconds])
    else:
        n = 10
        length = seconds / n
        starts = np.arange(n) * (length + 1.0)
        ends = starts + length
    total = float(ends[-1])
    rates = rng.uniform(5, 30, n_units)
    spikes = nap.TsGroup(
        {u: nap.Ts(np.sort(rng.uniform(0, total, rng.poisson(rates[u] * total))))
         for u in range(n_units)},
        time_support=nap.IntervalSet(0, total))
    return {"spikes": spikes}, nap.IntervalSet(starts, ends)


def head_direction():
    """The real recording as tests/conftest.py loads it; epochs = the ``valid`` epochs."""
    import pynapple as nap
    d = np.load(HD_FILE)
    wake = nap.IntervalSet(d["wake_start"], d["wake_end"])
    valid = nap.IntervalSet(d["valid_start"], d["valid_end"])
    spikes = nap.TsGroup({i: nap.Ts(d["spike_times"][d["spike_unit"] == i])
                          for i in range(len(d["unit_ids"]))}, time_support=wake)
    angle = nap.Tsd(t=d["angle_t"], d=d["angle"], time_support=wake)
    return {"spikes": spikes, "head_direction": angle}, valid


def case_data(case: str):
    return head_direction() if case == "hd" else simulated(case)


def hd_time_scaling(window: int) -> float:
    """The log stretch glmformula uses for ``window`` bins and 8 filters (NeMoS's 50 where the
    bins resolve it); NeMoS is given the same, so both build the same filters."""
    from glmformula import bases
    return float(bases.resolvable_time_scaling(window, N_FILTERS))


def nemos_inputs(case: str, data, epochs, spec):
    """Binned (and sampled) inputs for NeMoS, as a user would prepare them."""
    import pynapple as nap
    counts = data["spikes"].count(spec["bin"], ep=epochs)
    if case == "single":
        return (np.asarray(counts.values, dtype=np.float64),)
    counts = nap.TsdFrame(t=counts.t, d=np.asarray(counts.values, dtype=np.float64),
                          time_support=epochs)
    if case != "hd":
        return (counts,)
    # Circular linear interpolation at the bin centres (what glmformula does for a 40 Hz angle
    # on 10 ms bins), so that both libraries see the same angle.
    angle = data["head_direction"]
    sampled = np.mod(np.interp(counts.t, angle.t, np.unwrap(angle.values)), 2 * np.pi)
    return nap.Tsd(t=counts.t, d=sampled, time_support=epochs), counts


def nemos_basis(case: str, spec):
    import nemos as nmo
    if case != "hd":
        return nmo.basis.RaisedCosineLogConv(N_FILTERS, window_size=spec["window"])
    conv = nmo.basis.RaisedCosineLogConv(N_FILTERS, window_size=spec["window"],
                                         time_scaling=hd_time_scaling(spec["window"]))
    return nmo.basis.CyclicBSplineEval(12, order=4, bounds=(0, 2 * np.pi)) + conv


# ------------------------------------------------------------------------ one library, one process


def child(case: str, lib: str, repeats: int) -> dict:
    """Runs in a fresh interpreter: first call (time, peak memory), then warm calls."""
    import pynapple  # noqa: F401
    spec = CASES[case]
    if lib == "glmformula":
        import glmformula as gf
        data, epochs = case_data(case)

        def build():
            return gf.design_matrix(spec["formula"], data, bin_size=spec["bin"], epochs=epochs,
                                    dtype="float32")

        def size(result):
            return result.storage.nbytes, list(result.storage.shape)
        prep = None
    else:
        import jax  # noqa: F401
        import nemos  # noqa: F401
        data, epochs = case_data(case)
        start = time.perf_counter()
        inputs = nemos_inputs(case, data, epochs, spec)
        prep = time.perf_counter() - start
        basis = nemos_basis(case, spec)

        def build():
            out = basis.compute_features(*inputs)
            return np.asarray(out.values if hasattr(out, "values") else out)

        def size(result):
            return result.nbytes, list(result.shape)

    holder = {}
    with common.PeakMemory() as memory:
        start, start_cpu = time.perf_counter(), time.process_time()
        holder["out"] = build()
        first = time.perf_counter() - start
        first_cpu = time.process_time() - start_cpu
    nbytes, shape = size(holder.pop("out"))
    gc.collect()

    def call():
        holder["out"] = build()

    def drop():
        holder.clear()
        gc.collect()

    warm = common.time_calls(call, repeats, between=drop) if repeats else None
    return {"case": case, "lib": lib, "first": first, "first_cpu": first_cpu, "warm": warm,
            "prep": prep,
            "memory": memory.as_dict(), "nbytes": nbytes, "shape": shape}


# --------------------------------------------------------------------------- same numbers?


def check(case: str) -> dict:
    """Build both and compare the columns on the rows both keep."""
    import glmformula as gf
    spec = CASES[case]
    data, epochs = case_data(case)
    dm = gf.design_matrix(spec["formula"], data, bin_size=spec["bin"], epochs=epochs,
                          dtype="float32")
    inputs = nemos_inputs(case, data, epochs, spec)
    out = nemos_basis(case, spec).compute_features(*inputs)
    if hasattr(out, "t"):
        times, nem = np.asarray(out.t), np.asarray(out.values)
    else:  # one epoch starting at 0: row i is bin i
        times, nem = dm.grid.centers[: len(out)], np.asarray(out)
    # Bin index of each row's centre, to match rows whatever each library keeps.
    key_nem = np.round(times / spec["bin"] - 0.5).astype(np.int64)
    key_gf = np.round(dm.grid.centers / spec["bin"] - 0.5).astype(np.int64)
    common_keys, i_gf, i_nem = np.intersect1d(key_gf, key_nem, return_indices=True)
    nem_ok = ~np.isnan(nem[i_nem]).any(axis=1)
    gf_ok = dm.valid[i_gf]
    both = gf_ok & nem_ok
    ours = dm.storage[i_gf[both]].astype(np.float64)
    theirs = nem[i_nem[both]].astype(np.float64)
    diff = np.abs(ours - theirs)
    return {"case": case, "rows_gf": int(dm.valid.sum()), "rows_nemos": int(nem_ok.sum()),
        # pynapple's count keeps a last partial bin per epoch; glmformula's grid does not
        "rows_off_grid": int(len(key_nem) - len(i_nem)), "rows_compared": int(both.sum()),
        "rows_only_gf": int((gf_ok & ~nem_ok).sum()), "rows_only_nemos": int(
            (~gf_ok & nem_ok).sum()),
        "columns": [int(dm.storage.shape[1]), int(nem.shape[1])],
        "max_abs_diff": float(diff.max()), "max_abs_value": float(np.abs(theirs).max()),
        "max_rel_diff": float(diff.max() / np.abs(theirs).max())}


# --------------------------------------------------------------------------- driver


def run_case(case: str, fresh: int, repeats: int) -> dict:
    script = str(Path(__file__).resolve())
    runs = {lib: [] for lib in LIBS}
    for i in range(fresh):
        for lib in LIBS:  # alternate, so that a change of load hits both libraries
            args = ["--child", case, lib, "--repeats", str(repeats if i == 0 else 0)]
            result = common.run_child(script, args)
            runs[lib].append(result)
            mem = result["memory"]
            print(f"  {case:8s} {lib:10s} run {i + 1}/{fresh}: first {result['first']:.3f} s, "
                  f"peak +{mem['increase'] / 1e6:.0f} MB ({mem['method']}, sampled "
                  f"{mem['sampled'] / 1e6:.0f} MB), cpu {result['first_cpu']:.3f} s"
                  + (f", warm median {result['warm']['median']:.3f} s "
                     f"{[round(t, 3) for t in result['warm']['times']]} cpu "
                     f"{result['warm']['cpu_median']:.3f} s"
                     if result["warm"] else ""), flush=True)
    summary = {}
    for lib, results in runs.items():
        summary[lib] = {
            "first": statistics.median(r["first"] for r in results),
            "firsts": [r["first"] for r in results],
            "warm": results[0]["warm"]["median"] if results[0]["warm"] else None,
            "warms": results[0]["warm"]["times"] if results[0]["warm"] else [],
            "first_cpu": statistics.median(r["first_cpu"] for r in results),
            "warm_cpu": results[0]["warm"]["cpu_median"] if results[0]["warm"] else None,
            "peak": statistics.median(r["memory"]["increase"] for r in results),
            "peak_max": max(r["memory"]["increase"] for r in results),
            "method": results[0]["memory"]["method"],
            "nbytes": results[0]["nbytes"], "shape": results[0]["shape"],
            "prep": statistics.median(r["prep"] for r in results) if results[0]["prep"]
            is not None else None,
        }
    # In float32 NeMoS evaluates log(1 + s * x) with s = 1e-6 (the hd filters) too coarsely,
    # so that check runs NeMoS in float64 (its timings above stay float32).
    env = {"JAX_ENABLE_X64": "1"} if case == "hd" else None
    summary["check"] = common.run_child(script, ["--check", case], env=env)
    print(f"  {case:8s} check: {summary['check']}", flush=True)
    return summary


def report(results: dict, args, load_before, load_after, command: str) -> str:
    info = common.machine_info()
    rows = []
    for case, r in results.items():
        g, n, c = r["glmformula"], r["nemos"], r["check"]
        rows.append([
            CASES[case]["label"], f"{g['shape'][0]} x {g['shape'][1]}",
            common.fmt_seconds(g["first"]), common.fmt_seconds(g["warm"]),
            common.fmt_seconds(n["first"]), common.fmt_seconds(n["warm"]),
            f"{n['first'] / g['first']:.1f}x", f"{n['warm'] / g['warm']:.1f}x",
            f"{n['warm_cpu'] / g['warm_cpu']:.1f}x",
            common.fmt_mb(g["nbytes"]), common.fmt_mb(g["peak"]),
            f"{g['peak'] / g['nbytes']:.2f}", common.fmt_mb(n["peak"]),
            f"{c['max_rel_diff']:.1e}",
        ])
    table = common.markdown_table(
        ["case", "design (rows x cols)", "glmformula first (s)", "glmformula warm (s)",
         "NeMoS first (s)", "NeMoS warm (s)", "speed-up first", "speed-up warm",
         "speed-up warm, CPU",
         "design (MB)", "glmformula peak (MB)", "peak / design", "NeMoS peak (MB)",
         "max rel. diff"], rows)
    details = []
    for case, r in results.items():
        g, n, c = r["glmformula"], r["nemos"], r["check"]
        details.append(
            f"* **{case}**: glmformula first calls {_list(g['firsts'])} s, warm "
            f"{_list(g['warms'])} s; NeMoS first {_list(n['firsts'])} s, warm "
            f"{_list(n['warms'])} s. CPU time (all threads), first / warm median: glmformula "
            f"{g['first_cpu']:.3f} / {g['warm_cpu']:.3f} s, NeMoS {n['first_cpu']:.3f} / "
            f"{n['warm_cpu']:.3f} s. NeMoS input prep (binning"
            f"{', sampling the angle' if case == 'hd' else ''}, not in its times) "
            f"{n['prep']:.3f} s. Peak increase, largest of the fresh runs: glmformula "
            f"{g['peak_max'] / 1e6:.0f} MB, NeMoS {n['peak_max'] / 1e6:.0f} MB. Compared "
            f"{c['rows_compared']} rows x {c['columns'][0]} columns (glmformula keeps "
            f"{c['rows_gf']} rows, NeMoS {c['rows_nemos']} of the same bins; kept by only one "
            f"of them: {c['rows_only_gf']} / {c['rows_only_nemos']}"
            + (f"; NeMoS also has {c['rows_off_grid']} partial bins at epoch ends"
               if c["rows_off_grid"] else "") + "): max |diff| "
            f"{c['max_abs_diff']:.2e} for values up to {c['max_abs_value']:.2f}."
            + (HD_NOTE if case == "hd" else ""))
    verdicts = []
    for case, r in results.items():
        g, n = r["glmformula"], r["nemos"]
        speed = min(n["first"] / g["first"], n["warm"] / g["warm"])
        ratio = g["peak"] / g["nbytes"]
        verdicts.append(
            f"{case}: speed-up >= 3x {'met' if speed >= 3 else 'missed'} ({speed:.2f}x at "
            f"worst), peak <= 1.5x design {'met' if ratio <= 1.5 else 'missed'} ({ratio:.2f}x)")
    versions = common.versions_line(["glmformula", "numpy", "scipy", "pynapple", "jax",
                                     "nemos"])
    return "\n".join([
        "## Building the design: glmformula vs NeMoS `compute_features`",
        "",
        f"`{command}` (run from the repository root) on "
        f"{datetime.date.today().isoformat()}.",
        "",
        f"Machine: {common.machine_line(info)}; {versions}. "
        f"The machine was shared with other jobs: "
        f"{common.load_line(load_before, load_after)}.",
        "",
        table,
        "",
        f"Times are wall-clock seconds: *first* is the first call in a fresh process (median of "
        f"{args.fresh} processes), *warm* the median of {args.repeats} further calls. "
        "glmformula's times start from the pynapple objects (binning, sampling, parsing "
        "included); NeMoS's are `compute_features` alone on inputs binned beforehand. "
        "*Peak* is the increase of the resident high-water mark during the first call "
        f"(`{results[next(iter(results))]['glmformula']['method']}`, median of the fresh "
        "processes), with the output itself included; *design* is the final float32 design "
        "(`DesignMatrix.storage`). *max rel. diff* is the largest |glmformula - NeMoS| over "
        "the rows both keep, divided by the largest |value| (float32 on both sides). "
        "*speed-up warm, CPU* is the ratio of process CPU times (all threads) of the warm "
        "calls: the work done, less sensitive to the load than wall time.",
        "",
        *details,
        "",
        "Targets (glmformula at least 3x faster than NeMoS, first and warm; peak at most 1.5x "
        "the final float32 design): " + "; ".join(verdicts) + ".",
        "",
        NOTES,
    ])


NOTES = """\
What the numbers rest on (all in `glmformula/graph/convolution.py` and
`glmformula/graph/sparse_convolution.py`, each measured on this machine):

* Spike counts are convolved from their non-zero entries (the sparse method: the kernels
  added at the lags of the spikes in each window, sums in float64, each value written once)
  wherever a window holds at most 10 non-zero entries on average: all three cases here (the
  simulated units at 5-30 Hz hold ~1.75 per 100-bin window). It replaced the FFT path for
  them in session 27: 0.16-0.21 s -> 0.04-0.05 s for the single-epoch convolution
  (`python benchmarks/convolution.py`; docs/performance_decisions.md, 'Sparse signals:
  convolution from the non-zero entries'). Denser signals use the FFT path for windows of 48
  bins or more (overlap-save, sums in float64), whose cost per value hardly depends on the
  window; its transforms are at least 1024 points long instead of 4096: they stay in cache,
  ~25% less CPU at W = 100. The points below about FFT blocks apply to that path.
* The FFT block is converted to the output dtype in its own memory order before the
  transposing write into the design. Writing straight from the float64 block, whose lines lie
  a power of two apart, thrashed the cache: 115 -> 32 ms of CPU per 1e5 rows x 400 columns.
* The spectrum product (3.3 MB per chunk) goes into a buffer reused chunk after chunk. A fresh
  one per chunk was mapped and page-faulted anew each time, which made the *first* build in a
  process ~1.1 s instead of ~0.3 s (the warm builds hid it).
* Chunks of rows run on a pool of threads (`workers=-1`: all cores), sharing one working-set
  budget so that peak memory does not grow with the core count. With a core free this took
  the single-epoch warm build from ~0.3 s to ~0.18 s; with both cores busy elsewhere two
  threads cost 10-25% more than one (`workers=1`). On the direct path (windows
  under 48 bins: the 10-bin filters of the hd case) each BLAS product is held to one thread
  (`threadpoolctl`, when installed): multithreaded OpenBLAS on these long, thin products ran
  ~10x slower whenever other processes wanted the cores (hd warm build 4.5 s -> 0.4 s here).
* The design is written in place. What the peak holds beyond it: the binned counts (kept as
  the response: rows x units float32, 20 MB in the simulated cases), a chunk of FFT or
  lagged-copy temporaries (or of non-zero entries) per thread, and full-grid values of shared
  terms (the cyclic basis in the hd case).
* NeMoS gets the multi-epoch inputs as TsdFrames and convolves each epoch separately
  (its documented behaviour); glmformula lays the epochs end to end with zero gaps and sweeps
  them in one pass (110 chunks instead of 109 here), so epochs cost it about nothing.
* Both libraries use all cores. On this 2-core machine shared with other jobs, wall times
  move with the load (see the load average above); CPU times, in the details, move less.
  The one-epoch NumPy array is NeMoS's best case (one XLA convolution); there the FFT path
  needed ~0.3 s of CPU per build (~0.2 s of FFTs), the sparse method needs ~0.1 s of CPU for
  its convolution.
"""

HD_NOTE = (
    " The bin kept by NeMoS only is the last one, after the last angle sample: NeMoS's input "
    "was interpolated with the end value held, glmformula drops it as missing. glmformula "
    "relaxes the log stretch of 8 filters over 10 bins to 1e-6 so that no two filters "
    "coincide; NeMoS is given the same `time_scaling`, and its float32 evaluation of that "
    "stretch is too coarse to compare, so this check runs NeMoS in float64 "
    "(`JAX_ENABLE_X64=1`; its timings are float32).")


def _list(values) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in values) + "]"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--fresh", type=int, default=5, help="fresh processes per library")
    parser.add_argument("--repeats", type=int, default=5, help="warm calls (median)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "performance_design.md"))
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--child", nargs=2, metavar=("CASE", "LIB"), help=argparse.SUPPRESS)
    parser.add_argument("--check", metavar="CASE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        common.emit(child(args.child[0], args.child[1], args.repeats))
        return
    if args.check:
        common.emit(check(args.check))
        return

    cases = [c for c in args.cases if c != "hd" or HD_FILE.exists()]
    if "hd" in args.cases and "hd" not in cases:
        print(f"skipping hd: {HD_FILE} not found")
    command = "python benchmarks/design.py" + "".join(
        " " + shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    load_before = os.getloadavg()
    results = {}
    for case in cases:
        print(f"{case}: {CASES[case]['label']}", flush=True)
        results[case] = run_case(case, args.fresh, args.repeats)
    text = report(results, args, load_before, os.getloadavg(), command)
    print()
    print(text)
    if not args.no_write:
        Path(args.out).write_text(text)
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
