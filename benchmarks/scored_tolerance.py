"""A comparison's fits at the reported fits' tolerance (1e-8) against the scored fits' (1e-6,
``glmformula.fitting.engine.SCORED_FIT_TOL``) on the real head-direction recording: the two
alternated in one process (the first call, which compiles, discarded), wall and CPU time, each
model's share, and the cv bits/spike; with ``--per-unit``, each unit's cv bits/spike at both
tolerances (the units the data determine agree; the nearly separated ones do not).

    python benchmarks/scored_tolerance.py [--models hd+history+coupling] [--repeats 2] [--per-unit]
"""

from __future__ import annotations

import pandas as pd
from hd_real_fits import alternate, alternation_parser, alternation_setup

import glmformula as gf
from glmformula.backend.solve import DEFAULT_TOL
from glmformula.fitting import engine


def compare(models: dict, data: dict, tol: float, per_unit: bool = False) -> pd.DataFrame:
    engine.SCORED_FIT_TOL = tol
    return gf.compare(models, data, bin_size="10ms", epochs="valid", cv=5, smoothing=None,
                      per_unit=per_unit)


def main() -> None:
    parser = alternation_parser(__doc__.splitlines()[0])
    parser.add_argument("--per-unit", action="store_true")
    args, data, models = alternation_setup(parser)
    scored = engine.SCORED_FIT_TOL
    compare(models, data, scored)  # compiles
    alternate(lambda tol: compare(models, data, tol),
              {f"tol {DEFAULT_TOL:g}": DEFAULT_TOL, f"tol {scored:g}": scored}, args.repeats)
    if args.per_unit:
        exact, loose = (compare(models, data, tol, per_unit=True) for tol in (DEFAULT_TOL, scored))
        units = pd.DataFrame({"cv_bps_1e-8": exact["cv_bits_per_spike"],
                              "cv_bps_scored": loose["cv_bits_per_spike"]})
        units["difference"] = units["cv_bps_scored"] - units["cv_bps_1e-8"]
        print(units.round(5).to_string())
    engine.SCORED_FIT_TOL = scored


if __name__ == "__main__":
    main()
