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
log-likelihood without ``log y!`` (``mean(exp(eta) - y * eta)``), averaged over
units. Times are wall-clock seconds: "first" is the first fit of that shape in
the process (includes JAX compilation for glmformula and NeMoS), "warm" a second
fit of the same shapes. Peers that fit one unit at a time (statsmodels, glum,
scikit-learn) stop after ``--peer-cap`` seconds of a case and the time of the
remaining units is extrapolated from the mean time per unit (marked "~").
NeMoS runs with JAX float64 enabled globally (``jax_enable_x64``), so that it
can reach the same objective; glmformula enables float64 only inside its calls.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import os
import platform
import subprocess
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)  # for NeMoS (see module docs)

import glmformula.backend as gb  # noqa: E402

CASES = {
    "a1": dict(kind="single", T=100_000, P=50),
    "a2": dict(kind="single", T=100_000, P=200),
    "a3": dict(kind="single", T=1_000_000, P=50),
    "a4": dict(kind="single", T=1_000_000, P=200),
    "b": dict(kind="population", T=100_000, P=50, U=50),
    "c": dict(kind="coupled", T=100_000, U=50, F=8),
}
PEERS = ["nemos", "nemos-lbfgs", "statsmodels", "glum", "sklearn"]


# --------------------------------------------------------------------------- data


def correlated_design(rng, T, P):
    """Columns are moving averages of 3 iid normals across the column index (neighbour corr. 2/3)."""
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


def objective(X, Y, W, b, mask=None):
    """Mean Poisson NLL (no log y!) per unit, averaged over units."""
    out = []
    for u in range(Y.shape[1]):
        eta = X @ W[:, u] + b[u]
        out.append(np.mean(np.exp(eta) - Y[:, u] * eta))
    return float(np.mean(out))


# --------------------------------------------------------------------------- runners


def run_glmformula(X, Y, mask, solver):
    prob = gb.Problem(X, Y, column_mask=mask)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        first = gb.solve(prob, solver=solver)
        t_first = time.perf_counter() - t0
        t0 = time.perf_counter()
        sol = gb.solve(prob, solver=solver)
        t_warm = time.perf_counter() - t0
    return dict(
        first=t_first, warm=t_warm, W=sol.weights, b=sol.intercept, compile=first.compile_seconds,
        iters=f"{int(sol.n_iter.max())} it, {sol.n_hessian_passes} H + {sol.n_matmul_passes} M passes",
        note=f"solver={sol.solver}, converged {int(sol.converged.sum())}/{len(sol.converged)}",
    )


def run_nemos(X, Y, mask, solver_name):
    import nemos as nmo

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kw = {} if solver_name is None else dict(solver_name=solver_name)
        if Y.shape[1] == 1:
            make = lambda: nmo.glm.GLM(**kw)
            y = Y[:, 0]
        else:
            fm = None if mask is None else mask.T.astype(float)
            make = lambda: nmo.glm.PopulationGLM(feature_mask=fm, **kw)
            y = Y
        t0 = time.perf_counter()
        make().fit(X, y)
        t_first = time.perf_counter() - t0
        m = make()
        t0 = time.perf_counter()
        m.fit(X, y)
        t_warm = time.perf_counter() - t0
    W = np.asarray(m.coef_).reshape(X.shape[1], -1)
    b = np.atleast_1d(np.asarray(m.intercept_))
    st = m.solver_state_
    steps = getattr(st, "num_steps", None)
    if steps is None:
        steps = getattr(st, "step", None)
    return dict(first=t_first, warm=t_warm, W=W, b=b, iters=f"{int(steps)} it" if steps is not None else "")


def run_per_unit(X, Y, mask, fit_one, cap):
    """Fit unit by unit; stop after ``cap`` seconds and extrapolate the rest."""
    P, U = X.shape[1], Y.shape[1]
    W = np.zeros((P, U))
    b = np.zeros(U)
    iters = []
    t0 = time.perf_counter()
    done = 0
    for u in range(U):
        keep = np.arange(P) if mask is None else np.flatnonzero(mask[u])
        Xu = X if mask is None else X[:, keep]
        w, c, it = fit_one(Xu, Y[:, u])
        W[keep, u], b[u] = w, c
        iters.append(it)
        done += 1
        if time.perf_counter() - t0 > cap and u < U - 1:
            break
    elapsed = time.perf_counter() - t0
    total = elapsed * U / done
    return dict(first=total, warm=total, W=W, b=b, units=done, extrapolated=done < U,
                iters=f"{int(np.mean(iters))} it/unit" if iters else "")


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


def pass_times(X, Y):
    """One Hessian pass X.T @ (X * w) (one unit) and one gradient pass X.T @ R (all units), numpy/OpenBLAS."""
    w = np.random.default_rng(0).random(X.shape[0])
    reps = 3
    t0 = time.perf_counter()
    for _ in range(reps):
        X.T @ (X * w[:, None])
    t_h = (time.perf_counter() - t0) / reps
    t0 = time.perf_counter()
    for _ in range(reps):
        X.T @ Y
    return t_h, (time.perf_counter() - t0) / reps


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
    import glum
    import nemos
    import optimistix
    import sklearn
    import statsmodels

    return (f"python {platform.python_version()}, numpy {np.__version__}, jax {jax.__version__}, "
            f"optimistix {optimistix.__version__}, nemos {nemos.__version__}, statsmodels {statsmodels.__version__}, "
            f"glum {glum.__version__}, scikit-learn {sklearn.__version__}")


def fmt_t(r):
    if r is None:
        return "skipped"
    s = f"{r['warm']:.2f}"
    return ("~" + s) if r.get("extrapolated") else s


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    ap.add_argument("--skip", nargs="*", default=[], choices=PEERS, help="peers not to run")
    ap.add_argument("--peer-cap", type=float, default=90.0, help="seconds per case for per-unit peers")
    ap.add_argument("--skip-slow", action="store_true",
                    help="skip statsmodels on the largest cases (a4, b, c: minutes to hours)")
    ap.add_argument("--also", nargs="*", default=["newton", "lbfgs"], help="explicit glmformula solvers to time too")
    ap.add_argument("--quick", action="store_true", help="T / 10 (to try the script)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "docs", "performance_fit.md"))
    args = ap.parse_args(argv)

    rows = []
    for name in args.cases:
        spec = dict(CASES[name])
        if args.quick:
            spec["T"] //= 10
        X, Y, mask = make_case(spec)
        t_h, t_g = pass_times(X, Y)
        print(f"\n== case {name}: T={X.shape[0]} P={X.shape[1]} U={Y.shape[1]}  "
              f"(Hessian pass {t_h:.3f}s/unit, X.T@R {t_g * 1e3:.1f}ms)", flush=True)
        results = {}
        results["glmformula"] = run_glmformula(X, Y, mask, "auto")
        for s in args.also:
            results[f"glmformula[{s}]"] = run_glmformula(X, Y, mask, s)
        for peer in PEERS:
            if peer in args.skip:
                continue
            if peer == "statsmodels" and args.skip_slow and name in ("a4", "b", "c"):
                results[peer] = None
                continue
            gc.collect()
            try:
                if peer == "nemos":
                    results[peer] = run_nemos(X, Y, mask, None)
                elif peer == "nemos-lbfgs":
                    results[peer] = run_nemos(X, Y, mask, "LBFGS")
                else:
                    fit_one = dict(statsmodels=fit_statsmodels, glum=fit_glum, sklearn=fit_sklearn)[peer]
                    results[peer] = run_per_unit(X, Y, mask, fit_one, args.peer_cap)
            except Exception as exc:  # a peer failing must not lose the other numbers
                print(f"   {peer} failed: {exc!r}")
                results[peer] = None
        for k, r in results.items():
            if r is not None:
                r["obj"] = objective(X, Y, r["W"], r["b"], mask)
                print(f"   {k:22s} first {r['first']:8.2f}s warm {fmt_t(r):>8}s  objective {r['obj']:.10f}  {r.get('iters', '')} {r.get('note', '')}", flush=True)
        rows.append((name, spec, X.shape, Y.shape[1], t_h, t_g, results))
        del X, Y
        gc.collect()
    write_report(rows, args)


def write_report(rows, args):
    model, cores = machine()
    cmd = "python benchmarks/fit.py " + " ".join(sys.argv[1:])
    lines = [
        "## Fitting speed (backend)",
        "",
        f"Generated by `{cmd.strip()}` on {datetime.date.today()}.",
        f"Machine: {model}, {cores} CPU cores (`lscpu`), CPU only. {versions()}.",
        "Other processes shared the machine during the run, so times are noisy (±30 %).",
        "",
        "Objective: mean Poisson NLL without log y! (averaged over units), identical for everybody;",
        "Δobj is the difference to the best objective of the case (positive = worse).",
        "Times in seconds: *warm* = second fit of the same shapes (compiled), *first* = first fit in the process",
        "(includes JAX compilation). `~`: per-unit peer stopped after the time cap, total extrapolated.",
        "",
    ]
    summary = []
    for name, spec, shape, U, t_h, t_g, results in rows:
        lines += [f"### Case {name}: T={shape[0]:,}, P={shape[1]}, units={U}" + (" (coupled, own filters masked)" if spec["kind"] == "coupled" else ""), ""]
        lines += [f"One Hessian pass `X.T @ (X * w)` (one unit, numpy/OpenBLAS): {t_h:.3f} s; "
                  f"one gradient pass `X.T @ R` (all units): {t_g * 1e3:.1f} ms.", ""]
        valid = {k: r for k, r in results.items() if r is not None}
        best = min(r["obj"] for r in valid.values())
        ours = results["glmformula"]
        lines += ["| library | warm (s) | first (s) | objective | Δobj | iterations / passes | ours faster by |",
                  "|---|---:|---:|---:|---:|---|---:|"]
        for k, r in results.items():
            if r is None:
                lines.append(f"| {k} | skipped | | | | | |")
                continue
            ratio = r["warm"] / ours["warm"]
            iters = r.get("iters", "") + (f"; {r['note']}" if r.get("note") else "")
            if r.get("compile") is not None:
                iters += f"; compile {r['compile']:.1f} s"
            lines.append(f"| {k} | {fmt_t(r)} | {r['first']:.2f} | {r['obj']:.10f} | {r['obj'] - best:.1e} | {iters} | "
                         f"{'' if k.startswith('glmformula') else f'{ratio:.1f}x'} |")
        lines.append("")
        nemos = results.get("nemos")
        peers = [results.get(p) for p in ("statsmodels", "glum", "sklearn") if results.get(p) is not None]
        fastest = min(peers, key=lambda r: r["warm"]) if peers else None
        target_nemos = 5 if spec["kind"] == "coupled" else 10
        summary.append((name, nemos["warm"] / ours["warm"] if nemos else None, target_nemos,
                        nemos["obj"] - ours["obj"] if nemos else None,
                        fastest["warm"] / ours["warm"] if fastest else None))
    lines += ["### Targets", "",
              "| case | vs NeMoS default (target) | NeMoS Δobj − ours | vs fastest of statsmodels/glum/sklearn (target 2x) |",
              "|---|---:|---:|---:|"]
    for name, rn, tn, dobj, rf in summary:
        lines.append(f"| {name} | {'' if rn is None else f'{rn:.1f}x'} ({tn}x) | {'' if dobj is None else f'{dobj:.1e}'} | "
                     f"{'' if rf is None else f'{rf:.1f}x'} |")
    lines.append("")
    text = "\n".join(lines) + "\n"
    with open(args.out, "w") as fh:
        fh.write(text)
    print("\n" + text)


if __name__ == "__main__":
    main()
