"""Newton forming the linear predictor from the weights in every pass, against storing it, on the
real head-direction recording (``glmformula.backend.newton.FORMED_PREDICTOR``).

The user's path: per setting, one ``gf.fit`` of the first model (solver seconds, iterations,
Hessian and product passes), then ``gf.compare`` of ``--models`` (default the head-direction
model, the one that forms its predictor), cv=5, unpenalised, 10 ms bins, ``valid`` epochs; the
two settings alternated in one process after one call of each that compiles both.

    python benchmarks/formed_predictor.py [--models hd hd+history hd+history+coupling]
        [--repeats 2]
"""

from __future__ import annotations

import numpy as np
from hd_real_fits import alternate, alternation_parser, alternation_setup

import glmformula as gf
import glmformula.backend.newton as newton


def main() -> None:
    parser = alternation_parser(__doc__.splitlines()[0])
    parser.set_defaults(models=["hd"])
    args, data, models = alternation_setup(parser)
    first = next(iter(models.values()))
    settings = {"stored predictor": False, "formed predictor": True}

    def fit(formed: bool):
        newton.FORMED_PREDICTOR = formed
        try:
            return gf.fit(first, data, bin_size="10ms", epochs="valid", smoothing=None)
        finally:
            newton.FORMED_PREDICTOR = True

    def run(formed: bool):
        newton.FORMED_PREDICTOR = formed
        try:
            return gf.compare(models, data, bin_size="10ms", epochs="valid", cv=5,
                              smoothing=None)
        finally:
            newton.FORMED_PREDICTOR = True

    for formed in settings.values():  # compile both
        fit(formed)
        run(formed)
    for _ in range(args.repeats):
        for label, formed in settings.items():
            res = fit(formed)
            d = res.diagnostics
            print(f"{label}: one gf.fit, solver {d.fit_seconds:.2f} s, "
                  f"{int(np.max(res.n_iter))} iterations, {d.n_hessian_passes} Hessian + "
                  f"{d.n_matmul_passes} product passes", flush=True)
    alternate(run, settings, args.repeats)


if __name__ == "__main__":
    main()
