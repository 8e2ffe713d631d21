"""What users run, end to end: glmformula from pynapple objects vs NeMoS and glum.

Run by hand from the repository root (not part of the tests)::

    python benchmarks/user_path.py                  # both cases, writes its section of
                                                    # docs/performance.md
    python benchmarks/user_path.py --cases unit --fresh 2 --repeats 3 --no-write

Cases:

unit    One unit, T = 1e5 bins of 10 ms, 50 correlated covariate columns (a TsdFrame sampled
        at the bin centres) and a spike train (Ts) drawn from the Poisson GLM.
        glmformula: ``gf.fit("y ~ x", data, bin_size="10ms")``, everything from the pynapple
        objects (binning, sampling, design, constraints, solve, log-likelihood, standard
        errors). The time outside the solver is the total minus ``res.fit_seconds``.
        NeMoS 0.2.8 as its docs write it: ``counts = spikes.count(bin_size, ep)``, then
        ``nmo.glm.GLM(...).fit(x, counts)`` on the TsdFrame of raw covariates (its default
        solver, and ``solver_name="LBFGS"`` as its tutorials use), float64 (``jax_enable_x64``,
        so that it reaches the same optimum). glum: ``GeneralizedLinearRegressor(
        family="poisson", alpha=0).fit(X, y)`` on ready NumPy arrays (binning not timed).
design  50 simulated units, T = 1e5 bins of 1 ms, one epoch:
        ``gf.design_matrix("spikes[0] ~ history(8, log, window=100ms) + coupling(all)", ...)
        .to_numpy()`` (400 columns + the intercept) from the TsGroup, against pynapple
        ``TsGroup.count`` + NeMoS ``RaisedCosineLogConv(8, window_size=100)
        .compute_features`` on the (1e5, 50) counts (float32, JAX's default).

Every library runs in its own fresh process per measurement (``--fresh`` processes each,
alternating libraries, so that a change of load hits all of them); "first" is the first call
in a process (JAX and Numba compilation included), "warm" the median of ``--repeats`` further
calls in the first process. The processes share a persistent compilation cache folder (JAX's and
Numba's) that starts empty: the first process compiles, the later ones load the kernels from
disk (what a user's second session does; ``gf.config.compilation_cache``).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import shlex
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402

UNIT = dict(T=100_000, P=50, bin=0.01)
DESIGN_FORMULA = "spikes[0] ~ history(8, log, window=100ms) + coupling(all)"
CASES = {
    "unit": dict(label="one unit, 1e5 bins x 50 columns, fit",
                 libs=("glmformula", "nemos", "nemos-lbfgs", "glum")),
    "design": dict(label="50 units x 1e5 bins, history + coupling design, to_numpy()",
                   libs=("glmformula", "glmformula-f32", "nemos")),
}
SECTION = "benchmarks/user_path.py"


# --------------------------------------------------------------------------- data


def unit_data(seed: int = 0):
    """A spike train from a Poisson GLM on 50 correlated columns sampled at the bin centres."""
    import pynapple as nap
    rng = np.random.default_rng(seed)
    T, P, bs = UNIT["T"], UNIT["P"], UNIT["bin"]
    Z = rng.standard_normal((T, P + 2))
    X = (Z[:, :-2] + Z[:, 1:-1] + Z[:, 2:]) / np.sqrt(3.0)  # neighbour correlation 2/3
    w = rng.standard_normal(P) * 0.5 / np.sqrt(P)
    counts = rng.poisson(np.exp(X @ w + np.log(0.05)))  # ~5 Hz
    t = (np.arange(T) + 0.5) * bs
    spikes = np.sort(np.repeat(t, counts) + rng.uniform(-0.45, 0.45, counts.sum()) * bs)
    support = nap.IntervalSet(0.0, T * bs)
    return {"y": nap.Ts(spikes, time_support=support),
            "x": nap.TsdFrame(t=t, d=X, time_support=support)}, support


def objective(X, y, w, b) -> float:
    """Mean Poisson negative log-likelihood without log y! (the same for every library)."""
    eta = X @ np.asarray(w, float) + float(b)
    return float(np.mean(np.exp(eta) - y * eta))


# --------------------------------------------------------------------------- children


def child_unit(lib: str, repeats: int) -> dict:
    import pynapple  # noqa: F401
    data, support = unit_data()
    bs = UNIT["bin"]
    holder: dict = {}
    if lib == "glmformula":
        import glmformula as gf
        stages = _stage_timers()

        def call():
            stages.clear()
            holder["res"] = gf.fit("y ~ x", data, bin_size="10ms")

        def parameters():
            res = holder["res"]
            return np.asarray(res.coef.values, float).ravel(), float(
                np.asarray(res.intercept.values).ravel()[0])

        def detail():
            res = holder["res"]
            return {"solver": float(res.fit_seconds), "compile": float(res.compile_seconds),
                    **stages}
    elif lib.startswith("nemos"):
        import jax
        jax.config.update("jax_enable_x64", True)
        import nemos as nmo
        warnings.simplefilter("ignore")
        kwargs = {"solver_name": "LBFGS"} if lib == "nemos-lbfgs" else {}

        def call():
            counts = data["y"].count(bs, ep=support)
            holder["model"] = nmo.glm.GLM(**kwargs).fit(data["x"], counts)

        def parameters():
            m = holder["model"]
            return np.asarray(m.coef_, float).ravel(), float(np.asarray(m.intercept_).ravel()[0])

        def detail():
            return {}
    else:  # glum on ready arrays
        from glum import GeneralizedLinearRegressor
        X = np.ascontiguousarray(data["x"].values)
        y = np.asarray(data["y"].count(bs, ep=support).values, float)

        def call():
            holder["model"] = GeneralizedLinearRegressor(family="poisson", alpha=0).fit(X, y)

        def parameters():
            m = holder["model"]
            return np.asarray(m.coef_, float), float(m.intercept_)

        def detail():
            return {}

    start, start_cpu = time.perf_counter(), time.process_time()
    call()
    first = time.perf_counter() - start
    first_cpu = time.process_time() - start_cpu
    first_detail = detail()
    details = []

    def timed():
        call()

    def after():
        details.append(detail())
        gc.collect()

    warm = common.time_calls(timed, repeats, between=after) if repeats else None
    w, b = parameters()
    X = data["x"].values
    y = np.asarray(data["y"].count(bs, ep=support).values, float)
    return {"first": first, "first_cpu": first_cpu, "warm": warm, "first_detail": first_detail,
            "details": details, "objective": objective(X, y, w, b)}


#: Where the time of ``gf.fit`` goes: (module, function, label). Timed by wrapping the
#: functions (a missing one is skipped: internal names may change).
STAGES = [
    ("glmformula.results.fit", "prepare", "formula + data binding"),
    ("glmformula.results.fit", "build", "design"),
    ("glmformula.fitting.engine", "design_constraints", "constraints"),
    ("glmformula.fitting.engine", "_means", "column means"),
    ("glmformula.fitting.information", "log_likelihood", "log-likelihood"),
    ("glmformula.fitting.engine", "_covariance", "standard errors"),
    ("glmformula.graph.layout", "record_covariate_ranges", "covariate ranges"),
]


def _stage_timers() -> dict:
    import importlib
    totals: dict = {}
    for module_name, name, label in STAGES:
        module = importlib.import_module(module_name)
        function = getattr(module, name, None)
        if function is None:
            continue

        def timed(*args, _function=function, _label=label, **kwargs):
            start = time.perf_counter()
            try:
                return _function(*args, **kwargs)
            finally:
                totals[_label] = totals.get(_label, 0.0) + time.perf_counter() - start
        setattr(module, name, timed)
    return totals


def child_design(lib: str, repeats: int) -> dict:
    import pynapple  # noqa: F401
    from design import simulated  # the same units as benchmarks/design.py's "single" case
    data, epochs = simulated("single")
    holder: dict = {}
    parts: list = []
    if lib.startswith("glmformula"):
        import glmformula as gf
        dtype = "float32" if lib.endswith("f32") else "float64"

        def call():
            t0 = time.perf_counter()
            dm = gf.design_matrix(DESIGN_FORMULA, data, bin_size=0.001, epochs=epochs,
                                  dtype=dtype)
            t1 = time.perf_counter()
            holder["X"] = dm.to_numpy()
            parts.append({"design": t1 - t0, "to_numpy": time.perf_counter() - t1})
    else:
        import jax  # noqa: F401
        import nemos as nmo
        basis = nmo.basis.RaisedCosineLogConv(8, window_size=100)

        def call():
            counts = data["spikes"].count(0.001, ep=epochs)
            holder["X"] = np.asarray(basis.compute_features(np.asarray(counts.values, float)))

    start, start_cpu = time.perf_counter(), time.process_time()
    call()
    first = time.perf_counter() - start
    first_cpu = time.process_time() - start_cpu
    shape, dtype = list(holder["X"].shape), str(holder["X"].dtype)
    holder.clear()
    gc.collect()

    def drop():
        holder.clear()
        gc.collect()

    warm = common.time_calls(call, repeats, between=drop) if repeats else None
    return {"first": first, "first_cpu": first_cpu, "warm": warm, "shape": shape,
            "dtype": dtype, "parts": parts}


# --------------------------------------------------------------------------- driver


def run_case(case: str, fresh: int, repeats: int, cache_dir: str) -> dict:
    script = str(Path(__file__).resolve())
    libs = CASES[case]["libs"]
    runs = {lib: [] for lib in libs}
    for i in range(fresh):
        for lib in libs:
            # JAX's and Numba's disk caches start empty for every library
            env = {"XDG_CACHE_HOME": cache_dir, "NUMBA_CACHE_DIR": str(Path(cache_dir) / "numba")}
            args = ["--child", case, lib, "--repeats", str(repeats if i == 0 else 0)]
            result = common.run_child(script, args, env=env,
                                      timeout=1800)
            runs[lib].append(result)
            warm = result["warm"]
            print(f"  {case:6s} {lib:14s} run {i + 1}/{fresh}: first {result['first']:.3f} s"
                  + (f", warm median {warm['median']:.3f} s "
                     f"{[round(t, 3) for t in warm['times']]}" if warm else "")
                  + (f", objective {result['objective']:.10f}" if "objective" in result else "")
                  + (f", {result['details']}" if result.get("details") else "")
                  + (f", {result['parts']}" if result.get("parts") else ""), flush=True)
    summary = {}
    for lib, results in runs.items():
        first = results[0]
        summary[lib] = {
            "first_cold": first["first"],
            "first_later": (statistics.median(r["first"] for r in results[1:])
                            if len(results) > 1 else None),
            "warm": first["warm"]["median"], "warms": first["warm"]["times"],
            "warm_cpu": first["warm"]["cpu_median"],
            "objective": first.get("objective"),
            "details": first.get("details"), "first_detail": first.get("first_detail"),
            "parts": first.get("parts"), "shape": first.get("shape"),
            "dtype": first.get("dtype"),
        }
    return summary


def _list(values) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in values) + "]"


def report(results: dict, args, load_before, load_after, command: str) -> str:
    info = common.machine_info()
    lines = [
        "## What users run: glmformula from pynapple vs NeMoS and glum (`benchmarks/user_path.py`)",
        "",
        f"`{command}` (run from the repository root) on {datetime.date.today().isoformat()}.",
        "",
        f"Machine: {common.machine_line(info)}; "
        f"{common.versions_line(['glmformula', 'numpy', 'pynapple', 'jax', 'nemos', 'glum'])}. "
        f"The machine was shared with other jobs: {common.load_line(load_before, load_after)};"
        " wall times move with the load, CPU times less.",
        "",
        f"Every number is a wall-clock time in seconds in a fresh process per library "
        f"({args.fresh} processes each, libraries alternating): *first* is the first call in "
        f"the first process (JAX and Numba compilation included; their disk caches start "
        f"empty), *first, later processes* the median first call of the other processes "
        f"(glmformula loads its kernels from the caches on disk; NeMoS compiles again), "
        f"*warm* the median of {args.repeats} further calls in the first process.",
        "",
    ]
    verdicts = []
    if "unit" in results:
        r = results["unit"]
        g = r["glmformula"]
        solver = statistics.median(d["solver"] for d in g["details"])
        outside = g["warm"] - solver
        rows = []
        names = {"glmformula": "glmformula `gf.fit(\"y ~ x\", data, bin_size=\"10ms\")`",
                 "nemos": "NeMoS `count` + `GLM().fit(x, counts)` (default solver)",
                 "nemos-lbfgs": "NeMoS `count` + `GLM(solver_name=\"LBFGS\").fit(x, counts)`",
                 "glum": "glum `GeneralizedLinearRegressor(family=\"poisson\", alpha=0)` "
                         "on ready arrays"}
        for lib in CASES["unit"]["libs"]:
            s = r[lib]
            rows.append([names[lib], common.fmt_seconds(s["first_cold"]),
                         common.fmt_seconds(s["first_later"]), common.fmt_seconds(s["warm"]),
                         f"{s['warm_cpu']:.3f}",
                         f"{s['warm'] / g['warm']:.1f}x" if lib != "glmformula" else "1",
                         f"{s['objective']:.10f}"])
        lines += [
            "### One unit end to end: T = 1e5 bins of 10 ms, 50 columns",
            "",
            common.markdown_table(["library and call", "first (s)", "first, later processes (s)",
                                   "warm (s)", "warm CPU (s)", "warm time / glmformula's",
                                   "objective"], rows),
            "",
            f"glmformula's warm fit: {g['warm']:.3f} s, of which the solver (`res.fit_seconds`)"
            f" {solver:.3f} s and everything around it {outside:.3f} s "
            f"({outside / solver:.1f}x the solver): "
            + ", ".join(f"{label} {statistics.median(d.get(label, 0.0) for d in g['details']):.3f}"
                        for _, _, label in STAGES if label in g["details"][0])
            + f" s (medians of the warm calls). Compilation in the first process "
            f"{g['first_detail']['compile']:.2f} s. Warm calls: glmformula "
            f"{_list(g['warms'])}, solver {_list(d['solver'] for d in g['details'])}. The "
            "objective is the mean Poisson negative log-likelihood (without log y!) of each "
            "library's weights on the same counts.",
            "",
        ]
        nemos_best = min(r["nemos"]["warm"], r["nemos-lbfgs"]["warm"])
        verdicts += [
            f"one unit: >= 10x NeMoS {'met' if nemos_best >= 10 * g['warm'] else 'missed'} "
            f"({nemos_best / g['warm']:.2f}x its faster solver, warm)",
            f">= 2x glum {'met' if r['glum']['warm'] >= 2 * g['warm'] else 'missed'} "
            f"({r['glum']['warm'] / g['warm']:.2f}x, warm)",
            f"time outside the solver <= the solver's {'met' if outside <= solver else 'missed'}"
            f" ({outside:.3f} s vs {solver:.3f} s)",
        ]
    if "design" in results:
        r = results["design"]
        n = r["nemos"]
        rows = []
        names = {"glmformula": "glmformula `design_matrix(...).to_numpy()`, float64",
                 "glmformula-f32": "glmformula `design_matrix(..., dtype=\"float32\")"
                                   ".to_numpy()`",
                 "nemos": "pynapple `count` + NeMoS `RaisedCosineLogConv(8, window_size=100)"
                          ".compute_features` (float32)"}
        for lib in CASES["design"]["libs"]:
            s = r[lib]
            parts = ""
            if s["parts"]:
                parts = (f"design {statistics.median(p['design'] for p in s['parts'][1:]):.3f}"
                         f" + to_numpy "
                         f"{statistics.median(p['to_numpy'] for p in s['parts'][1:]):.3f}")
            rows.append([names[lib], f"{s['shape'][0]} x {s['shape'][1]}",
                         common.fmt_seconds(s["first_cold"]),
                         common.fmt_seconds(s["first_later"]), common.fmt_seconds(s["warm"]),
                         parts, f"{s['warm_cpu']:.3f}",
                         f"{n['warm'] / s['warm']:.1f}x" if lib != "nemos" else "1"])
        lines += [
            "### History and coupling design: 50 units x 1e5 bins of 1 ms, to a NumPy array",
            "",
            common.markdown_table(["library and call", "output", "first (s)",
                                   "first, later processes (s)", "warm (s)",
                                   "warm parts (s)", "warm CPU (s)",
                                   "NeMoS warm / this"], rows),
            "",
            f"`{DESIGN_FORMULA}`: the unit's 8 history columns and 8 per other unit (400), plus "
            "the intercept; NeMoS's output has the same 400 columns without the intercept. "
            "glmformula's rows are the 99,900 bins after the first window; NeMoS keeps all "
            "1e5 with NaN in the first window. *warm parts* split glmformula's warm call into "
            "`design_matrix` (binning, parsing, the convolution into the stored design: "
            "spike counts from their non-zero entries) "
            "and `to_numpy` (one pass writing the output, intercept included). On this "
            "machine the first large allocation of a fresh process is often slow (a bare "
            "NumPy allocate-and-copy of the 320 MB float64 output took 0.03 s warm and "
            "0.4-0.6 s in some fresh processes): that, not compilation, is most of the "
            "float64 first calls.",
            "",
        ]
        for lib in ("glmformula", "glmformula-f32"):
            speed = n["warm"] / r[lib]["warm"]
            verdicts.append(f"design ({'float32' if lib.endswith('f32') else 'float64'}): "
                            f">= 3x NeMoS {'met' if speed >= 3 else 'missed'} ({speed:.2f}x "
                            "warm)")
    lines += ["Targets: " + "; ".join(verdicts) + ".", ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--fresh", type=int, default=3, help="fresh processes per library")
    parser.add_argument("--repeats", type=int, default=5, help="warm calls (median)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "performance.md"))
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--child", nargs=2, metavar=("CASE", "LIB"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        case, lib = args.child
        common.emit((child_unit if case == "unit" else child_design)(lib, args.repeats))
        return
    command = "python benchmarks/user_path.py" + "".join(
        " " + shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    load_before = os.getloadavg()
    results = {}
    with tempfile.TemporaryDirectory(prefix="glmformula-cache-") as cache_dir:
        for case in args.cases:
            print(f"{case}: {CASES[case]['label']}", flush=True)
            results[case] = run_case(case, args.fresh, args.repeats, cache_dir)
    text = report(results, args, load_before, os.getloadavg(), command)
    print()
    print(text)
    if not args.no_write:
        common.write_section(Path(args.out), text, SECTION)
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
