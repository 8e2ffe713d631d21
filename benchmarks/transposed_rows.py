"""L-BFGS with and without the design's transposed copy (``Block.Xt``,
``glmformula.backend.problem.with_transposed_rows``) on the real head-direction recording.

Two parts:

* the user's path: ``gf.compare`` of the coupled model (or ``--models``), cv=5, unpenalised, 10
  ms bins, with the copy (the default) and without it (``TRANSPOSED_ROWS_MAX_FRACTION = 0``)
  alternated in one process, the first call (which compiles) discarded; wall and CPU time, each
  model's share and the cv bits/spike;
* BACKEND ONLY (labelled as such): one step pass of L-BFGS (``step_sums``: ``X @ dW``, the rates,
  ``X.T @ r``) on a fold's captured design (184,320 x 268 float64), for 32 and 4 units, the
  chunked pass over the row-major design against the pass reading the transposed copy; best and
  median of 7 calls.

    python benchmarks/transposed_rows.py [--models hd+history+coupling] [--repeats 2]
                                         [--skip-kernels]  (--repeats 0: kernels only)
"""

from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp
from hd_real_fits import MODELS, alternate, alternation_parser, alternation_setup

import glmformula as gf
import glmformula.backend.lbfgs as lbfgs
from glmformula.backend import problem as pb


def compare(models: dict, data: dict, copy: bool):
    fraction = pb.TRANSPOSED_ROWS_MAX_FRACTION
    if not copy:
        pb.TRANSPOSED_ROWS_MAX_FRACTION = 0.0
    try:
        return gf.compare(models, data, bin_size="10ms", epochs="valid", cv=5, smoothing=None)
    finally:
        pb.TRANSPOSED_ROWS_MAX_FRACTION = fraction


def captured_fold(data: dict):
    """The FitData of the coupled model's first fold (the second L-BFGS run of a comparison)."""
    captured = []
    run = lbfgs.LBFGS.run
    lbfgs.LBFGS.run = lambda self, fit_data: captured.append(fit_data) or run(self, fit_data)
    try:
        compare({"coupled": MODELS["hd+history+coupling"]}, data, copy=False)
    finally:
        lbfgs.LBFGS.run = run
    return captured[1]


def time_call(fn, *args, calls: int = 7):
    jax.block_until_ready(fn(*args))
    seconds = []
    for _ in range(calls):
        started = time.perf_counter()
        jax.block_until_ready(fn(*args))
        seconds.append(time.perf_counter() - started)
    return min(seconds), statistics.median(seconds)


def kernels(data: dict) -> None:
    fold = captured_fold(data)
    X, rw = fold.block.X, fold.block.rw
    T, P = X.shape
    Xt = jax.jit(lambda X: X.T)(X)
    chunk = pb.step_chunk(P, X.dtype.itemsize)
    print(f"BACKEND ONLY: one L-BFGS step pass on the captured fold ({T} x {P} "
          f"{X.dtype}), seconds best / median of 7:")
    for units in (32, 4):
        Y = fold.block.Y[:, :units]
        eta = jnp.broadcast_to(jnp.log(jnp.mean(Y, axis=0) + 1e-3), (T, units))
        dW = jnp.full((P, units), 1e-3, X.dtype)
        db = jnp.zeros(units, X.dtype)
        # the arrays as arguments, as in a fit (closed over, XLA would fold them in as constants)
        chunked = jax.jit(lambda X, Y, rw, e, w, db: pb.step_sums(X, Y, rw, e, w, db, chunk))
        plain = jax.jit(lambda X, Xt, Y, rw, e, w, db: pb.step_sums(X, Y, rw, e, w, db, chunk,
                                                                    None, Xt))
        a = time_call(chunked, X, Y, rw, eta, dW, db)
        b = time_call(plain, X, Xt, Y, rw, eta, dW, db)
        print(f"  {units:2d} units: row chunks {a[0] * 1e3:.0f} / {a[1] * 1e3:.0f} ms, "
              f"transposed copy {b[0] * 1e3:.0f} / {b[1] * 1e3:.0f} ms", flush=True)


def main() -> None:
    parser = alternation_parser(__doc__.splitlines()[0])
    parser.add_argument("--skip-kernels", action="store_true")
    args, data, models = alternation_setup(parser)
    if args.repeats:
        compare(models, data, copy=True)  # compiles
        compare(models, data, copy=False)
    alternate(lambda copy: compare(models, data, copy),
              {"without the transposed copy": False, "with the transposed copy": True},
              args.repeats)
    if not args.skip_kernels:
        kernels(data)


if __name__ == "__main__":
    main()
