"""Benchmark the Poisson GLM backend against NeMoS, statsmodels, glum and scikit-learn.

Run by hand (not part of the tests)::

    python benchmarks/fit.py                       # all cases, writes docs/performance_fit.md
    python benchmarks/fit.py --cases a1 b --quick  # smaller T, to try the script
    python benchmarks/fit.py --peer-cap 60 --skip statsmodels

Cases (identical arrays for every library, float64):

a1..a4  one unit: T = 1e5 / 1e6 rows, P = 50 / 200 correlated columns
b       50 units sharing P = 50 columns, T = 1e5
c       coupled population: 50 units, each unit's spike train filtered by 8 causal
        raised-cosine kernels (400 columns); every unit excludes its own 8 columns
        (column_mask / NeMoS feature_mask / column subsets for the others), T = 1e5

Every fit is scored by the same objective: the mean Poisson negative
log-likelihood without ``log y!`` (``mean(exp(eta) - y * eta)``) per unit.
Each library runs in its own worker process on the same arrays (saved once to
``.npy``): no thread pool of one library (XLA's, OpenBLAS's) competes with
another's, each gets a hard time limit, and "first" is an honest first fit in
a fresh process (includes JAX compilation for glmformula and NeMoS). "warm" is
the best of up to 3 further fits of the same shapes. Peers that fit one unit
at a time (statsmodels, glum, scikit-learn) stop after ``--peer-cap`` seconds
and the time of the remaining units is extrapolated from the mean time per
unit (marked "~"); their objective is compared on the units they fitted.
NeMoS workers enable JAX float64 (``jax_enable_x64``) so that NeMoS can reach
the same objective; glmformula enables float64 only inside its own calls.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

CASES = {
    "a1": dict(kind="single", T=100_000, P=50),
    "a2": dict(kind="single", T=100_000, P=200),
    "a3": dict(kind="single", T=1_000_000, P=50),
    "a4": dict(kind="single", T=1_000_000, P=200),
    "b": dict(kind="population", T=100_000, P=50, U=50),
    "c": dict(kind="coupled", T=100_000, U=50, F=8),
}
PEERS = ["nemos", "nemos-lbfgs", "statsmodels", "glum", "sklearn"]
OURS = ["glmformula", "glmformula[newton]", "glmformula[lbfgs]"]


# --------------------------------------------------------------------------- data


def correlated_design(rng, T, P):
    """Columns are moving averages of 3 iid normals across the column index (neighbour corr.
    2/3)."""
    X = np.empty((T, P))
    step = 200_000
    for i in range(0, T, step):
        Z = rng.standard_normal((min(step, T - i), P + 2))
        X[i : i + step] = (Z[:, :-2] + Z[:, 1:-1] + Z[:, 2:]) / np.sqrt(3.0)
    return X


def make_case(spec, seed=0):
    rng = np.random.default_rng(seed)
    T = spec["T"]
    if spec["kind"] in ("single", "population"):
        P, U = spec["P"], spec.get("U", 1)
        X = correlated_design(rng, T, P)
        W = rng.standard_normal((P, U)) * 0.5 / np.sqrt(P)
        b = np.log(0.05) + 0.5 * rng.standard_normal(U)  # ~5 Hz at 10 ms bins
        Y = rng.poisson(np.exp(X @ W + b)).astype(float)
        return X, Y, None
    # coupled: units driven by a shared slow latent (AR(1), 50-bin time constant)
    U, F = spec["U"], spec["F"]
    z = np.empty(T)
    z[0] = 0.0
    e = rng.standard_normal(T) * np.sqrt(1 - np.exp(-2 / 50))
    a = np.exp(-1 / 50)
    for t in range(1, T):
        z[t] = a * z[t - 1] + e[t]
    gains = rng.uniform(-0.6, 0.6, U)
    b = np.log(0.05) + 0.3 * rng.standard_normal(U)
    Y = rng.poisson(np.exp(b + np.outer(z, gains))).astype(float)
    kernels = raised_cosine(F, 100)  # (100 lags, F)
    from scipy.signal import fftconvolve

    X = np.empty((T, U * F))
    for u in range(U):
        conv = fftconvolve(Y[:, u][:, None], kernels, axes=0)[:T]
        X[1:, u * F : (u + 1) * F] = conv[:-1]  # strictly past spikes
        X[0, u * F : (u + 1) * F] = 0.0
    mask = np.ones((U, U * F), bool)
    for u in range(U):
        mask[u, u * F : (u + 1) * F] = False  # no self-coupling
    return X, Y, mask


def raised_cosine(n_basis, length):
    """Log-stretched raised-cosine bumps over ``length`` lags (NeMoS-style), unit peak."""
    t = np.log(np.arange(length) + 1.0)
    centers = np.linspace(t[0], t[-1], n_basis)
    width = centers[1] - centers[0]
    arg = np.clip((t[:, None] - centers[None, :]) * np.pi / (2 * width), -np.pi, np.pi)
    return 0.5 * (1 + np.cos(arg))


def objective(X, Y, W, b, units):
    """Mean Poisson NLL (no log y!) of each unit in ``units`` (array)."""
    out = np.full(Y.shape[1], np.nan)
    for u in units:
        eta = X @ W[:, u] + b[u]
        out[u] = np.mean(np.exp(eta) - Y[:, u] * eta)
    return out


# --------------------------------------------------------------------------- workers
# Each worker loads the case from .npy, fits, and writes result.json (+ W.npy, b.npy).


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _warm(fn, first_seconds, budget=20.0):
    """Best of up to 3 further runs (fewer when one run is slow)."""
    times, out = [], None
    for _ in range(3):
        out, t = _timed(fn)
        times.append(t)
        if sum(times) + t > budget:
            break
    return out, min(times)


def worker_glmformula(X, Y, mask, solver, cap):
    sys.path.insert(0, ROOT)
    import glmformula.backend as gb

    prob = gb.Problem(X, Y, column_mask=mask)
    warnings.simplefilter("ignore")
    first, t_first = _timed(lambda: gb.solve(prob, solver=solver))
    sol, t_warm = _warm(lambda: gb.solve(prob, solver=solver), t_first)
    return dict(
        first=t_first, warm=t_warm, W=sol.weights, b=sol.intercept, units=list(range(Y.shape[1])),
        compile=first.compile_seconds,
        iters=f"{int(sol.n_iter.max())} it, {sol.n_hessian_passes} H + "
              f"{sol.n_matmul_passes} M passes",
        note=f"{sol.solver}, converged {int(sol.converged.sum())}/{len(sol.converged)}",
    )


def worker_nemos(X, Y, mask, solver_name, cap):
    import jax

    jax.config.update("jax_enable_x64", True)
    import nemos as nmo

    warnings.simplefilter("ignore")
    kw = {} if solver_name is None else dict(solver_name=solver_name)
    if Y.shape[1] == 1:
        make, y = (lambda: nmo.glm.GLM(**kw)), Y[:, 0]
    else:
        fm = None if mask is None else mask.T.astype(float)
        make, y = (lambda: nmo.glm.PopulationGLM(feature_mask=fm, **kw)), Y
    _, t_first = _timed(lambda: make().fit(X, y))
    m, t_warm = _warm(lambda: make().fit(X, y), t_first)
    W = np.asarray(m.coef_).reshape(X.shape[1], -1)
    b = np.atleast_1d(np.asarray(m.intercept_))
    st = m.solver_state_
    steps = getattr(st, "num_steps", getattr(st, "step", None))
    return dict(first=t_first, warm=t_warm, W=W, b=b, units=list(range(Y.shape[1])),
                iters=f"{int(steps)} it" if steps is not None else "")


def fit_statsmodels(X, y):
    import statsmodels.api as sm

    r = sm.GLM(y, sm.add_constant(X, has_constant="add"), family=sm.families.Poisson()).fit()
    return r.params[1:], r.params[0], r.fit_history["iteration"]


def fit_glum(X, y):
    from glum import GeneralizedLinearRegressor

    m = GeneralizedLinearRegressor(family="poisson", alpha=0).fit(X, y)
    return m.coef_, m.intercept_, m.n_iter_


def fit_sklearn(X, y):
    from sklearn.linear_model import PoissonRegressor

    m = PoissonRegressor(alpha=0, solver="newton-cholesky", max_iter=1000).fit(X, y)
    return m.coef_, m.intercept_, m.n_iter_


def worker_per_unit(X, Y, mask, fit_one, cap):
    """Fit unit by unit; stop after ``cap`` seconds and extrapolate the rest."""
    warnings.simplefilter("ignore")
    P, U = X.shape[1], Y.shape[1]
    W, b, iters, units = np.zeros((P, U)), np.zeros(U), [], []
    fit_one(X[:2000], Y[:2000, 0])  # imports and lazy initialisation, not timed
    t0 = time.perf_counter()
    for u in range(U):
        keep = np.arange(P) if mask is None else np.flatnonzero(mask[u])
        w, c, it = fit_one(X if mask is None else X[:, keep], Y[:, u])
        W[keep, u], b[u] = w, c
        iters.append(it)
        units.append(u)
        if time.perf_counter() - t0 > cap:
            break
    total = (time.perf_counter() - t0) * U / len(units)
    return dict(first=total, warm=total, W=W, b=b, units=units, extrapolated=len(units) < U,
                iters=f"{np.mean(iters):.0f} it/unit"
                      + (f" ({len(units)}/{U} units fitted)" if len(units) < U else ""))


def worker_passes(X, Y, mask, _, cap):
    """One Hessian pass X.T @ (X * w) (one unit) and one gradient pass X.T @ R (all units),
    numpy/OpenBLAS."""
    w = np.random.default_rng(0).random(X.shape[0])
    _, t_h = _warm(lambda: X.T @ (X * w[:, None]), 0.0, budget=10)
    _, t_g = _warm(lambda: X.T @ Y, 0.0, budget=10)
    return dict(hessian=t_h, gradient=t_g)


def run_worker(lib, data_dir, cap):
    X = np.load(os.path.join(data_dir, "X.npy"))
    Y = np.load(os.path.join(data_dir, "Y.npy"))
    mask = (np.load(os.path.join(data_dir, "mask.npy"))
            if os.path.exists(os.path.join(data_dir, "mask.npy")) else None)
    if lib.startswith("glmformula"):
        solver = lib[len("glmformula["):-1] if "[" in lib else "auto"
        res = worker_glmformula(X, Y, mask, solver, cap)
    elif lib == "nemos":
        res = worker_nemos(X, Y, mask, None, cap)
    elif lib == "nemos-lbfgs":
        res = worker_nemos(X, Y, mask, "LBFGS", cap)
    elif lib == "passes":
        res = worker_passes(X, Y, mask, None, cap)
    else:
        fit_one = dict(statsmodels=fit_statsmodels, glum=fit_glum, sklearn=fit_sklearn)[lib]
        res = worker_per_unit(X, Y, mask, fit_one, cap)
    out = os.path.join(data_dir, lib)
    os.makedirs(out, exist_ok=True)
    if "W" in res:
        np.save(os.path.join(out, "W.npy"), res.pop("W"))
        np.save(os.path.join(out, "b.npy"), res.pop("b"))
    with open(os.path.join(out, "result.json"), "w") as fh:
        json.dump(res, fh)


def spawn(lib, data_dir, cap, timeout):
    """Run one worker process; returns its result dict, or a dict with 'error'."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", lib, "--data", data_dir,
           "--peer-cap", str(cap)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return dict(error=f"> {timeout:.0f} s (killed)")
    out = os.path.join(data_dir, lib)
    if proc.returncode != 0 or not os.path.exists(os.path.join(out, "result.json")):
        return dict(error=(proc.stderr.strip().splitlines() or ["failed"])[-1][:200])
    with open(os.path.join(out, "result.json")) as fh:
        res = json.load(fh)
    if os.path.exists(os.path.join(out, "W.npy")):
        res["W"] = np.load(os.path.join(out, "W.npy"))
        res["b"] = np.load(os.path.join(out, "b.npy"))
    res["wall"] = time.perf_counter() - t0
    return res


def wait_quiet(max_wait, threshold=1.0):
    """Wait (up to max_wait s) for the 1-minute load average to drop below threshold."""
    t0 = time.time()
    load = os.getloadavg()[0]
    while load > threshold and time.time() - t0 < max_wait:
        time.sleep(15)
        load = os.getloadavg()[0]
    return load


# --------------------------------------------------------------------------- report


def machine():
    model = cores = "?"
    with contextlib.suppress(Exception):
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("CPU(s):"):
                cores = line.split(":", 1)[1].strip()
    return model, cores


def versions():
    code = ("import jax, numpy, optimistix, nemos, statsmodels, glum, sklearn, platform;"
            "print(f'python {platform.python_version()}, numpy {numpy.__version__}, "
            "jax {jax.__version__}, "
            "optimistix {optimistix.__version__}, nemos {nemos.__version__}, "
            "statsmodels {statsmodels.__version__}, "
            "glum {glum.__version__}, scikit-learn {sklearn.__version__}')")
    return subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True).stdout.strip()


def fmt_t(r):
    if "error" in r:
        return r["error"]
    s = f"{r['warm']:.2f}"
    return ("~" + s) if r.get("extrapolated") else s


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    ap.add_argument("--skip", nargs="*", default=[], choices=PEERS, help="peers not to run")
    ap.add_argument("--peer-cap", type=float, default=90.0,
                    help="seconds per case for per-unit peers")
    ap.add_argument("--timeout", type=float, default=1500.0,
                    help="hard limit per worker process (s)")
    ap.add_argument("--skip-slow", action="store_true",
                    help="skip statsmodels on a4, b, c "
                         "(its pinv/QR IRLS takes minutes per unit there)")
    ap.add_argument("--only-auto", action="store_true", help="time glmformula's auto choice only")
    ap.add_argument("--wait-quiet", type=float, default=0.0,
                    help="before each worker, wait up to this many seconds for the load average "
                         "to drop below 1")
    ap.add_argument("--quick", action="store_true", help="T / 10 (to try the script)")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "performance_fit.md"))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return run_worker(args.worker, args.data, args.peer_cap)

    rows = []
    libs = (OURS[:1] if args.only_auto else OURS) + [p for p in PEERS if p not in args.skip]
    with tempfile.TemporaryDirectory(prefix="glmformula-bench-") as tmp:
        for name in args.cases:
            spec = dict(CASES[name])
            if args.quick:
                spec["T"] //= 10
            X, Y, mask = make_case(spec)
            data_dir = os.path.join(tmp, name)
            os.makedirs(data_dir)
            np.save(os.path.join(data_dir, "X.npy"), X)
            np.save(os.path.join(data_dir, "Y.npy"), Y)
            if mask is not None:
                np.save(os.path.join(data_dir, "mask.npy"), mask)
            passes = spawn("passes", data_dir, args.peer_cap, args.timeout)
            print(f"\n== case {name}: T={X.shape[0]} P={X.shape[1]} U={Y.shape[1]}  "
                  f"(Hessian pass {passes.get('hessian', float('nan')):.3f}s/unit, "
                  f"X.T@R {passes.get('gradient', float('nan')) * 1e3:.1f}ms)", flush=True)
            results, loads = {}, []
            for lib in libs:
                if lib == "statsmodels" and args.skip_slow and name in ("a4", "b", "c"):
                    results[lib] = dict(error="skipped (--skip-slow)")
                    continue
                if args.wait_quiet:
                    loads.append(wait_quiet(args.wait_quiet))
                else:
                    loads.append(os.getloadavg()[0])
                r = spawn(lib, data_dir, args.peer_cap, args.timeout)
                if "W" in r:
                    r["obj"] = objective(X, Y, r["W"], r["b"], r["units"])
                results[lib] = r
                if "error" in r:
                    print(f"   {lib:22s} {r['error']}", flush=True)
                else:
                    print(f"   {lib:22s} first {r['first']:8.2f}s warm {fmt_t(r):>8}s  objective "
                          f"{np.nanmean(r['obj']):.10f}  {r.get('iters', '')} {r.get('note', '')}",
                          flush=True)
            rows.append((name, spec, X.shape, Y.shape[1], passes, results,
                         max(loads) if loads else 0.0))
            del X, Y
            gc.collect()
    write_report(rows, args)


def write_report(rows, args):
    model, cores = machine()
    cmd = "python benchmarks/fit.py " + " ".join(a for a in sys.argv[1:]
                                                 if not a.startswith("--out"))
    lines = [
        "<!-- generated by benchmarks/fit.py: rerun it rather than editing the tables -->",
        "## Fitting speed: glmformula backend vs NeMoS, statsmodels, glum, scikit-learn",
        "",
        f"Command: `{cmd.strip()}` ({datetime.date.today()}).",
        f"Machine: {model}, {cores} CPU cores (`lscpu`), CPU only, float64 everywhere. "
        f"{versions()}.",
        "",
        "Objective: mean Poisson NLL without log y! per unit. Δobj: mean over the units a library "
        "fitted of",
        "(its objective − the best objective any library reached on that unit); positive = worse.",
        "Times in seconds. *warm*: best of up to 3 repeated fits in the same worker process "
        "(compiled);",
        "*first*: first fit in a fresh process (includes JAX compilation). `~`: per-unit peer "
        "stopped after",
        f"{args.peer_cap:g} s, total extrapolated from the units fitted. H / M passes: passes over "
        "the rows forming",
        "Hessians (`X.T diag(w) X`, all units) / passes over the rows for the products `X @ V` "
        "and `X.T @ R`",
        "(all units at once; glmformula's line search forms both in one pass over cached row "
        "chunks).",
        "",
    ]
    summary = []
    for name, spec, shape, U, passes, results, load in rows:
        title = f"### Case {name}: T={shape[0]:,}, P={shape[1]}, units={U}"
        if spec["kind"] == "coupled":
            title += " (coupling filters, own filters masked)"
        lines += [title, ""]
        if "hessian" in passes:
            lines += ["One Hessian pass `X.T @ (X * w)` (one unit, numpy/OpenBLAS): "
                      f"{passes['hessian']:.3f} s; "
                      "one gradient pass `X.T @ R` (all units): "
                      f"{passes['gradient'] * 1e3:.1f} ms. "
                      f"Highest 1-min load average seen before a worker: {load:.1f}.", ""]
        valid = {k: r for k, r in results.items() if "obj" in r}
        best = np.nanmin(np.stack([r["obj"] for r in valid.values()]), axis=0)
        ours = results.get("glmformula", {})
        lines += ["| library | warm (s) | first (s) | objective | Δobj | iterations / passes "
                  "| glmformula faster by |",
                  "|---|---:|---:|---:|---:|---|---:|"]
        for k, r in results.items():
            if "obj" not in r:
                lines.append(f"| {k} | {fmt_t(r)} | | | | | |")
                continue
            units = r["units"]
            dobj = float(np.mean(r["obj"][units] - best[units]))
            info = r.get("iters", "") + (f"; {r['note']}" if r.get("note") else "")
            if r.get("compile") is not None:
                info += f"; compile {r['compile']:.1f} s"
            ratio = ("" if k.startswith("glmformula") or "warm" not in ours
                     else f"{r['warm'] / ours['warm']:.1f}x")
            lines.append(f"| {k} | {fmt_t(r)} | {r['first']:.2f} | "
                         f"{np.mean(r['obj'][units]):.10f} | {dobj:.1e} | "
                         f"{info} | {ratio} |")
        lines.append("")
        if "warm" not in ours:
            continue
        nemos = results.get("nemos", {})
        peers = [results[p] for p in ("statsmodels", "glum", "sklearn")
                 if p in results and "warm" in results[p]]
        fastest = min(peers, key=lambda r: r["warm"]) if peers else None
        fname = next((p for p in ("statsmodels", "glum", "sklearn") if results.get(p) is fastest),
                     "")
        ours_dobj = float(np.mean(ours["obj"] - best))
        summary.append((name, nemos.get("warm", np.nan) / ours["warm"],
                        5 if spec["kind"] == "coupled" else 10,
                        float(np.nanmean(nemos["obj"] - ours["obj"])) if "obj" in nemos else np.nan,
                        (fastest["warm"] / ours["warm"]) if fastest else np.nan, fname, ours_dobj))
    lines += ["### Targets", "",
              "| case | vs NeMoS default (target) | NeMoS objective − ours "
              "| vs fastest of statsmodels/glum/sklearn (target 2x) | our Δobj |",
              "|---|---:|---:|---:|---:|"]
    for name, rn, tn, dobj, rf, fname, od in summary:
        lines.append(f"| {name} | {rn:.1f}x ({tn}x) | {dobj:.1e} | {rf:.1f}x ({fname}) "
                     f"| {od:.1e} |")
    lines.append("")
    text = "\n".join(lines) + "\n"
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _common import write_section

    write_section(args.out, text, "benchmarks/fit.py")
    print("\n" + text)


if __name__ == "__main__":
    main()
