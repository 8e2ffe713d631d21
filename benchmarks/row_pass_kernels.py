"""The per-row Poisson kernels of ``glmformula/backend/problem.py``, old against new, and whole
fits of the real head-direction recording with the old and the new kernels.

Kernels (jit, synthetic data at real shapes; medians of interleaved calls): ``value_grad_sums``,
``loss_sum`` at ``eta + a xi`` (a line-search trial), ``loss_sums_along`` (3 steps),
``curvature`` and ``step_sums``, for (T, P, U) in :data:`SHAPES`, float64 and float32. The old
implementations are a private copy below (as they were before the change); each new result is
checked against the old one (largest difference relative to the largest value of the output).

Whole fits (the real recording in ../shared/data, :mod:`hd_real_fits`; ``smoothing=None``):
each configuration runs in its own process, old and new alternating; ``old`` sets
``problem._FUSED_MIN_UNITS`` out of reach, which routes every Poisson kernel through the old
formulation (kept verbatim for few units). One untimed call, then the median of ``--repeats``.

    flock /tmp/glmformula-bench.lock python benchmarks/row_pass_kernels.py [--skip-fits]
        [--skip-kernels] [--repeats 10] [--fit-repeats 3] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

jax.config.update("jax_enable_x64", True)

from glmformula.backend import problem as pb  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_line, machine_line, markdown_table, versions_line  # noqa: E402

SHAPES = [(90618, 20, 32), (226000, 20, 32), (226000, 268, 32), (100000, 50, 1),
          (20000, 100, 100)]
DTYPES = ["float64", "float32"]
FITS = {
    "hd20 ridge, 25 ms": dict(formula="spikes ~ cyclic(head_direction, 20)", bin_size="25ms",
                              regularizer="ridge"),
    "hd12 + history, 10 ms": dict(formula="spikes ~ cyclic(head_direction, 12) + "
                                          "history(8, log, window=100ms)", bin_size="10ms"),
}


# --------------------------------------------------------------------------- the old kernels
# A private copy of the Poisson kernels as they were before 'Per-row Poisson kernels'
# (docs/performance_decisions.md).

_DN = (((0,), (0,)), ((), ()))


def _old_rate(eta):
    cap = pb.eta_cap(eta.dtype)
    r = jnp.exp(jnp.minimum(eta, cap))
    d = jnp.maximum(eta - cap, 0.0)
    above = eta > cap
    rate_loss = jnp.where(above, r * (1.0 + d + 0.5 * d * d), r)
    rate_grad = jnp.where(above, r * (1.0 + d), r)
    return rate_loss, rate_grad, r


def old_loss_sum(eta, Y, rw):
    rate, _, _ = _old_rate(eta)
    return jnp.sum(rw[:, None] * (rate - Y * eta), axis=0)


def old_loss_sums_along(eta, xi, Y, rw, steps):
    return jax.vmap(lambda a: old_loss_sum(eta + a[None, :] * xi, Y, rw))(steps)


def old_value_grad_sums(X, Y, rw, eta):
    rate, r, _ = _old_rate(eta)
    resid = rw[:, None] * (r - Y)
    U = eta.shape[1]
    rows = jnp.concatenate([rw[:, None] * (rate - Y * eta), rw[:, None] * (rate + Y * jnp.abs(eta)),
                            resid], axis=1)
    sums = jnp.sum(rows, axis=0)
    return sums[:U], lax.dot_general(X, resid, _DN), sums[2 * U:], sums[U:2 * U]


def old_curvature(eta, rw):
    return rw[:, None] * _old_rate(eta)[2]


def old_step_sums(X, Y, rw, eta, dW, db, chunk):
    def sums_of(x, y, w, e):
        xi = x @ dW + db[None, :]
        return xi, old_value_grad_sums(x, y, w, e + xi)

    return pb.chunked_step(sums_of, X, Y, rw, eta, chunk, dW.shape[1])  # the same chunks


# --------------------------------------------------------------------------- kernels


def _data(T, P, U, dtype, seed=0):
    rng = np.random.default_rng(seed)
    eta = rng.normal(size=(T, U)) * 0.5 - 2.5
    d = dict(X=rng.normal(size=(T, P)) * 0.3, eta=eta, xi=rng.normal(size=(T, U)) * 0.05,
             Y=rng.poisson(np.exp(eta)), rw=(rng.random(T) > 0.05).astype(float),
             dW=rng.normal(size=(P, U)) * 0.01, db=rng.normal(size=U) * 0.01,
             a=np.full(U, 0.5), steps=np.stack([np.full(U, s) for s in (1.0, 0.5, 0.25)]))
    return {k: jnp.asarray(v, dtype) for k, v in d.items()}


def kernel_pairs(P, dtype):
    """name -> (old, new, argument names): the jitted kernels."""
    chunk = pb.step_chunk(P, jnp.dtype(dtype).itemsize)
    return {
        "value_grad_sums": (old_value_grad_sums, pb.value_grad_sums, "X Y rw eta"),
        "loss_sum(eta + a xi)": (lambda eta, xi, a, Y, rw: old_loss_sum(eta + a * xi, Y, rw),
                                 lambda eta, xi, a, Y, rw: pb.loss_sum(eta + a * xi, Y, rw),
                                 "eta xi a Y rw"),
        "loss_sums_along (3)": (old_loss_sums_along, pb.loss_sums_along, "eta xi Y rw steps"),
        "curvature": (old_curvature, pb.curvature, "eta rw"),
        "step_sums": (lambda *a: old_step_sums(*a, chunk), lambda *a: pb.step_sums(*a, chunk),
                      "X Y rw eta dW db"),
    }


def _difference(new, old) -> float:
    """Largest difference relative to the largest |value|, over the outputs."""
    worst = 0.0
    for x, y in zip(jax.tree_util.tree_leaves(new), jax.tree_util.tree_leaves(old)):
        x, y = np.asarray(x, float), np.asarray(y, float)
        worst = max(worst, float(np.max(np.abs(x - y)) / max(np.max(np.abs(y)), 1e-300)))
    return worst


def time_kernels(repeats: int) -> list[list[str]]:
    rows = []
    for dtype in DTYPES:
        for T, P, U in SHAPES:
            data = _data(T, P, U, dtype)
            for name, (old, new, arg_names) in kernel_pairs(P, dtype).items():
                args = [data[k] for k in arg_names.split()]
                fs = {"old": jax.jit(old), "new": jax.jit(new)}
                outs = {k: jax.block_until_ready(f(*args)) for k, f in fs.items()}
                times = {k: [] for k in fs}
                for _ in range(repeats):  # interleaved: a load change hits both alike
                    for k, f in fs.items():
                        start = time.perf_counter()
                        jax.block_until_ready(f(*args))
                        times[k].append(time.perf_counter() - start)
                old_ms, new_ms = (1e3 * statistics.median(times[k]) for k in ("old", "new"))
                rows.append([dtype, f"{T}, {P}, {U}", name, f"{old_ms:.1f}", f"{new_ms:.1f}",
                             f"{old_ms / new_ms:.2f}x",
                             f"{_difference(outs['new'], outs['old']):.0e}"])
                print(" | ".join(rows[-1]), flush=True)
    return rows


# --------------------------------------------------------------------------- whole fits


def fit_child(variant: str, repeats: int) -> dict:
    """Time the :data:`FITS` in this process with the ``variant`` kernels (old or new)."""
    import warnings

    import hd_real_fits

    import glmformula as gf

    if variant == "old":
        pb._FUSED_MIN_UNITS = 1 << 30
    warnings.simplefilter("ignore")
    data = hd_real_fits.load()
    out = {}
    for name, spec in FITS.items():
        kw = dict(bin_size=spec["bin_size"], epochs="valid", smoothing=None)
        if spec.get("regularizer") == "ridge":
            kw["regularizer"] = gf.Ridge(3e-4)
        res = gf.fit(spec["formula"], data, **kw)  # untimed: compiles
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            res = gf.fit(spec["formula"], data, **kw)
            times.append(time.perf_counter() - start)
        d = res.diagnostics
        out[name] = {"median": statistics.median(times), "times": times, "solver": res.solver,
                     "n_iter": res.n_iter, "fit_seconds": d.fit_seconds, "rows": int(res.n_rows),
                     "coef_sum": float(np.sum(np.abs(res.coef.to_numpy())))}
    return out


def time_fits(repeats: int, rounds: int) -> list[list[str]]:
    results = {"old": [], "new": []}
    for _ in range(rounds):
        for variant in ("old", "new"):
            cmd = [sys.executable, __file__, "--child", variant, "--fit-repeats", str(repeats)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            results[variant].append(json.loads(out.strip().splitlines()[-1]))
            print(variant, results[variant][-1], flush=True)
    rows = []
    for name in FITS:
        med = {v: statistics.median(r[name]["median"] for r in results[v]) for v in results}
        first = results["new"][0][name]
        same = all(abs(r[name]["coef_sum"] - results["old"][0][name]["coef_sum"])
                   <= 1e-8 * abs(results["old"][0][name]["coef_sum"])
                   for v in results for r in results[v])
        rows.append([name, first["solver"], str(first["n_iter"]), f"{med['old']:.2f}",
                     f"{med['new']:.2f}", f"{med['old'] / med['new']:.2f}x",
                     "yes" if same else "NO"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="kernel calls per variant")
    parser.add_argument("--fit-repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2, help="old/new fit processes each")
    parser.add_argument("--skip-fits", action="store_true")
    parser.add_argument("--skip-kernels", action="store_true")
    parser.add_argument("--child", choices=["old", "new"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(fit_child(args.child, args.fit_repeats)))
        return
    load_before = os.getloadavg()
    print(machine_line())
    print(versions_line(["jax", "jaxlib", "numpy"]))
    if not args.skip_kernels:
        rows = time_kernels(args.repeats)
        print()
        print(markdown_table(["dtype", "T, P, U", "kernel", "old ms", "new ms", "speed-up",
                              "difference"], rows))
    if not args.skip_fits:
        rows = time_fits(args.fit_repeats, args.rounds)
        print()
        print(markdown_table(["fit", "solver", "iterations", "old s", "new s", "speed-up",
                              "same coefficients"], rows))
    print(load_line(load_before, os.getloadavg()))


if __name__ == "__main__":
    main()
