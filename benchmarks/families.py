"""Observation families (issue 19): glmformula against NeMoS 0.2.8 on the same design.

Run by hand (not part of the tests), under the benchmark lock so that runs do not overlap::

    flock /tmp/glmformula-bench.lock python benchmarks/families.py   # writes docs/performance.md
    python benchmarks/families.py --quick --no-write                  # smaller T, to try it

For every family NeMoS 0.2.8 has (Poisson, Bernoulli, NegativeBinomial, Gamma, Gaussian) the
same arrays go to both libraries: a correlated design ``X`` (T x P, float64) and a response
``Y`` drawn from that family with known weights (simulated). glmformula runs its backend
(``glmformula.backend.solve(..., family=...)``, the solver ``gf.fit`` would choose); NeMoS its
``GLM`` / ``PopulationGLM`` with the matching observation model and link (Gamma: ``exp``
inverse link), with its default solver and with LBFGS. NeMoS does not estimate the negative
binomial dispersion: it gets glmformula's maximum-likelihood ``a`` as its fixed ``scale``, and
glmformula is timed twice, estimating ``a`` and at that fixed ``a``.

Every fit is scored by the same objective, the mean negative log-likelihood per bin at unit
dispersion without the terms that do not depend on the weights (the losses of
:mod:`glmformula.backend.families`; the negative binomial's at the fixed ``a``), per unit:
*gap* = NeMoS's objective - glmformula's (positive: NeMoS stopped above glmformula's
optimum), the largest over units. Each library runs in its own fresh process (``first``:
includes JAX compilation); ``warm``: best of up to 3 further fits. NeMoS workers enable JAX
float64 so that they can reach the same objective.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
import warnings

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (  # noqa: E402
    emit,
    load_line,
    machine_line,
    markdown_table,
    run_child,
    versions_line,
    write_section,
)

FAMILIES = ("poisson", "bernoulli", "negative_binomial", "gamma", "gaussian")
NEMOS_MODEL = {"poisson": "Poisson", "bernoulli": "Bernoulli",
               "negative_binomial": "NegativeBinomial", "gamma": "Gamma",
               "gaussian": "Gaussian"}
CASES = {"single": dict(T=100_000, P=20, U=1), "population": dict(T=100_000, P=20, U=20)}
LIBRARIES = ("glmformula", "nemos", "nemos-lbfgs")
NB_ALPHA, GAMMA_SHAPE, GAUSS_SD = 0.5, 3.0, 1.0


# --------------------------------------------------------------------------- data
def correlated_design(rng, T, P):
    """Columns are moving averages of 3 iid normals across the column index (neighbour
    correlation 2/3), as in benchmarks/fit.py."""
    Z = rng.standard_normal((T, P + 2))
    return (Z[:, :-2] + Z[:, 1:-1] + Z[:, 2:]) / np.sqrt(3.0)


def make_case(family: str, T: int, P: int, U: int, seed: int = 0):
    """``X`` (T, P) and ``Y`` (T, U) of ``family`` with known weights (simulated)."""
    rng = np.random.default_rng(seed)
    X = correlated_design(rng, T, P)
    W = rng.standard_normal((P, U)) * 0.5 / np.sqrt(P)
    base = {"poisson": np.log(0.05), "negative_binomial": np.log(0.05),
            "bernoulli": np.log(0.05 / 0.95), "gamma": 0.0, "gaussian": 1.0}[family]
    eta = X @ W + base + 0.3 * rng.standard_normal(U)
    if family == "poisson":
        Y = rng.poisson(np.exp(eta))
    elif family == "negative_binomial":
        mu = np.exp(eta)
        Y = rng.negative_binomial(1 / NB_ALPHA, 1 / (1 + NB_ALPHA * mu))
    elif family == "bernoulli":
        Y = rng.random(eta.shape) < 1 / (1 + np.exp(-eta))
    elif family == "gamma":
        Y = rng.gamma(GAMMA_SHAPE, np.exp(eta) / GAMMA_SHAPE)
    else:
        Y = eta + GAUSS_SD * rng.standard_normal(eta.shape)
    return X, np.asarray(Y, float)


def objective(family: str, X, Y, W, b, alpha=None) -> np.ndarray:
    """Mean loss per bin of each unit (U,), at unit dispersion (see the module docstring)."""
    eta = X @ W + b[None, :]
    if family == "poisson":
        loss = np.exp(eta) - Y * eta
    elif family == "bernoulli":
        loss = np.logaddexp(0.0, eta) - Y * eta
    elif family == "negative_binomial":
        a = np.asarray(alpha, float)[None, :]
        loss = (Y + 1 / a) * np.log1p(a * np.exp(eta)) - Y * eta
    elif family == "gamma":
        loss = Y * np.exp(-eta) + eta
    else:
        loss = 0.5 * (Y - eta) ** 2
    return loss.mean(axis=0)


# --------------------------------------------------------------------------- workers
def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _warm(fn, budget: float = 60.0):
    times, out = [], None
    for _ in range(3):
        out, seconds = _timed(fn)
        times.append(seconds)
        if sum(times) + seconds > budget:
            break
    return out, min(times)


def worker(lib: str, family: str, folder: str, alpha: str) -> dict:
    X = np.load(os.path.join(folder, "X.npy"))
    Y = np.load(os.path.join(folder, "Y.npy"))
    warnings.simplefilter("ignore")
    a = None if alpha == "none" else np.asarray(json.loads(alpha), float)
    if lib.startswith("glmformula"):
        sys.path.insert(0, ROOT)
        import glmformula.backend as gb

        problem = gb.Problem(X, Y)
        fixed = lib == "glmformula-fixed"
        kw = dict(family=family, dispersion=a if fixed else None)
        first, t_first = _timed(lambda: gb.solve(problem, **kw))
        sol, t_warm = _warm(lambda: gb.solve(problem, **kw))
        return dict(first=t_first, warm=t_warm, W=sol.weights.tolist(),
                    b=np.asarray(sol.intercept).tolist(),
                    alpha=None if sol.dispersion is None else sol.dispersion.tolist(),
                    note=f"{sol.solver}, {int(sol.n_iter.max())} it, {sol.n_hessian_passes} H + "
                         f"{sol.n_matmul_passes} M passes, converged "
                         f"{int(sol.converged.sum())}/{len(sol.converged)}")
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import nemos as nmo

    model = NEMOS_MODEL[family]
    if family == "negative_binomial":
        model = nmo.observation_models.NegativeBinomialObservations(scale=float(np.mean(a)))
    kw = dict(observation_model=model)
    if family == "gamma":
        kw["inverse_link_function"] = jnp.exp
    if lib == "nemos-lbfgs":
        kw["solver_name"] = "LBFGS"
    population = Y.shape[1] > 1
    y = Y if population else Y[:, 0]

    def make():
        return nmo.glm.PopulationGLM(**kw) if population else nmo.glm.GLM(**kw)

    if family == "negative_binomial" and population and len(set(np.round(a, 12))) > 1:
        # NeMoS takes one scale for a population: fit each unit at its own dispersion
        def fit_all():
            out = []
            for u in range(Y.shape[1]):
                kw_u = dict(kw, observation_model=nmo.observation_models
                            .NegativeBinomialObservations(scale=float(a[u])))
                out.append(nmo.glm.GLM(**kw_u).fit(X, Y[:, u]))
            return out
        _, t_first = _timed(fit_all)
        models, t_warm = _warm(fit_all, budget=120.0)
        W = np.column_stack([np.asarray(m.coef_).reshape(-1) for m in models])
        b = np.array([float(np.asarray(m.intercept_).reshape(-1)[0]) for m in models])
        return dict(first=t_first, warm=t_warm, W=W.tolist(), b=b.tolist(), alpha=None,
                    note="one GLM per unit (one scale each)")
    _, t_first = _timed(lambda: make().fit(X, y))
    m, t_warm = _warm(lambda: make().fit(X, y), budget=120.0)
    W = np.asarray(m.coef_).reshape(X.shape[1], -1)
    b = np.atleast_1d(np.asarray(m.intercept_))
    state = m.solver_state_
    steps = getattr(state, "num_steps", getattr(state, "step", None))
    return dict(first=t_first, warm=t_warm, W=W.tolist(), b=b.tolist(), alpha=None,
                note=f"{m.solver_name}" + (f", {int(steps)} it" if steps is not None else ""))


# --------------------------------------------------------------------------- driver
def run(args) -> list[dict]:
    rows = []
    for case, spec in CASES.items():
        if case not in args.cases:
            continue
        T = spec["T"] // (10 if args.quick else 1)
        for family in args.families:
            X, Y = make_case(family, T, spec["P"], spec["U"])
            with tempfile.TemporaryDirectory() as folder:
                np.save(os.path.join(folder, "X.npy"), X)
                np.save(os.path.join(folder, "Y.npy"), Y)
                results = {}
                ours = run_child(__file__, ["--child", "glmformula", family, folder, "none"],
                                 timeout=args.timeout)
                results["glmformula"] = ours
                alpha = ours["alpha"]
                libs = list(LIBRARIES[1:])
                if family == "negative_binomial":
                    libs = ["glmformula-fixed"] + libs
                for lib in libs:
                    try:
                        results[lib] = run_child(
                            __file__, ["--child", lib, family, folder,
                                       json.dumps(alpha) if alpha is not None else "none"],
                            timeout=args.timeout)
                    except Exception as err:  # noqa: BLE001 - reported in the table
                        results[lib] = dict(error=str(err).splitlines()[0][:120])
            a = None if alpha is None else np.asarray(alpha)
            best = objective(family, X, Y, np.asarray(ours["W"]), np.asarray(ours["b"]), a)
            for lib, r in results.items():
                row = dict(case=case, T=T, P=spec["P"], U=spec["U"], family=family, lib=lib)
                if "error" in r:
                    row.update(error=r["error"])
                else:
                    obj = objective(family, X, Y, np.asarray(r["W"]).reshape(X.shape[1], -1),
                                    np.asarray(r["b"]).reshape(-1), a)
                    row.update(first=r["first"], warm=r["warm"], note=r["note"],
                               objective=float(np.mean(obj)),
                               gap=float(np.max(obj - best)),
                               ratio=r["warm"] / results["glmformula"]["warm"])
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def report(rows, args, load_before, load_after) -> str:
    header = ["case", "family", "library", "warm (s)", "first (s)",
              "warm time / glmformula's", "objective", "gap (NeMoS - gf)", "notes"]
    table = []
    for r in rows:
        shape = f"{r['case']} (T={r['T']:,}, P={r['P']}, U={r['U']})"
        if "error" in r:
            table.append([shape, r["family"], r["lib"], "-", "-", "-", "-", "-", r["error"]])
            continue
        gap = "" if r["lib"].startswith("glmformula") else f"{r['gap']:+.1e}"
        table.append([shape, r["family"], r["lib"], f"{r['warm']:.3f}", f"{r['first']:.2f}",
                      f"{r['ratio']:.1f}x", f"{r['objective']:.10f}", gap, r["note"]])
    command = "flock /tmp/glmformula-bench.lock python benchmarks/families.py" + \
        (" --quick" if args.quick else "")
    return (
        "## Observation families (issue 19)\n\n"
        f"Generated by `{command}` on {datetime.date.today().isoformat()}.\n\n"
        f"Machine: {machine_line()}; {load_line(load_before, load_after)}.\n"
        "Versions: " + versions_line(["numpy", "jax", "jaxlib", "nemos", "statsmodels"]) +
        ".\n\n"
        "The same simulated arrays (a correlated design `X`, float64; the response drawn from "
        "the family with known weights) go to `glmformula.backend.solve(..., family=...)` and "
        "to NeMoS 0.2.8's `GLM`/`PopulationGLM` with the matching observation model and link "
        "(Gamma with `exp` as inverse link), with NeMoS's default solver and with LBFGS. "
        "*objective*: mean negative log-likelihood per bin at unit dispersion, without the "
        "terms free of the weights (the negative binomial's at glmformula's maximum-likelihood "
        "dispersion, which NeMoS is given as its fixed `scale`: NeMoS does not estimate it), "
        "averaged over units; *gap*: the largest over units of NeMoS's objective minus "
        "glmformula's (positive: NeMoS stopped above glmformula's optimum). "
        "*warm time / glmformula's*: warm time over glmformula's warm time (> 1: glmformula "
        "faster). `glmformula` estimates the negative binomial dispersion (alternating weights "
        "and a Newton step on log a); `glmformula-fixed` fits at that dispersion, as NeMoS "
        "does. Each library runs in a fresh process; warm = best of up to 3 repeated fits.\n\n"
        + markdown_table(header, table, align="lllrrrrrl") + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    ap.add_argument("--families", nargs="*", default=list(FAMILIES), choices=list(FAMILIES))
    ap.add_argument("--quick", action="store_true", help="T / 10 (to try the script)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per library and fit")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "performance.md"))
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        emit(worker(*args.child))
        return
    load_before = os.getloadavg()
    rows = run(args)
    text = report(rows, args, load_before, os.getloadavg())
    print(text)
    if not args.no_write:
        write_section(args.out, text, "benchmarks/families.py")


if __name__ == "__main__":
    main()
