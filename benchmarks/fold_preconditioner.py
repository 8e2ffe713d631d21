"""Cross-validation folds that begin with the fit on all rows' L-BFGS preconditioner, against
folds that form the Gram matrix and the Hessian at their start, on the real head-direction
recording (``glmformula.compare.comparison.SHARED_PRECONDITIONER``).

The user's path: ``gf.compare`` of the coupled model (or ``--models``), cv=5, unpenalised, 10 ms
bins, ``valid`` epochs, the two settings alternated in one process after one call that compiles
both; wall and CPU time, each model's share, the cv bits/spike, and per L-BFGS call (the
fold's population loop and the narrower batches its last units continue in) the units,
iterations, Hessian and product passes and seconds.

    python benchmarks/fold_preconditioner.py [--models hd+history+coupling] [--repeats 2]
"""

from __future__ import annotations

import importlib

import numpy as np
from hd_real_fits import alternate, alternation_parser, alternation_setup

import glmformula as gf
import glmformula.backend.lbfgs as lbfgs

# by its module path: the attribute glmformula.compare is the function gf.compare
comparison = importlib.import_module("glmformula.compare.comparison")

CALLS: list = []


def record_lbfgs_calls() -> None:
    """Record (units, warm, iterations, Hessian passes, product passes, seconds) of each
    compiled L-BFGS call (counters are cumulative over a fit's narrowing batches)."""
    original = lbfgs.compiled_call

    def recorded(fn, static, *args):
        out, compile_s, run_s = original(fn, static, *args)
        raw = out[0]
        CALLS.append((args[0].W0.shape[1], static["warm"], int(np.max(raw.n_iter)),
                      int(raw.n_hessian), int(raw.n_matmul), round(run_s, 2)))
        return out, compile_s, run_s

    lbfgs.compiled_call = recorded


def main() -> None:
    args, data, models = alternation_setup(alternation_parser(__doc__.splitlines()[0]))
    record_lbfgs_calls()

    def run(shared: bool):
        comparison.SHARED_PRECONDITIONER = shared
        CALLS.clear()
        try:
            return gf.compare(models, data, bin_size="10ms", epochs="valid", cv=5,
                              smoothing=None)
        finally:
            comparison.SHARED_PRECONDITIONER = True
            print(f"  L-BFGS calls (units, warm, iterations, Hessian passes, product passes, "
                  f"seconds; cumulative within a fit): {CALLS}")

    settings = {"folds form their Hessian": False, "folds share the preconditioner": True}
    for shared in settings.values():  # compile both
        run(shared)
    alternate(run, settings, args.repeats)


if __name__ == "__main__":
    main()
