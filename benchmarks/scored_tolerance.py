"""A comparison's fits at two tolerances on the real head-direction recording, by default the
reported fits' (1e-8) against the scored fits' (``glmformula.fitting.engine.SCORED_FIT_TOL``):
the two alternated in one process (the first call, which compiles, discarded), wall and CPU
time, each model's share, and the cv bits/spike; with ``--per-unit``, each unit's cv bits/spike
at both tolerances (the units the data determine agree; the nearly separated ones do not).

    python benchmarks/scored_tolerance.py [--models hd+history+coupling] [--repeats 2] \
        [--tolerances 1e-8 1e-5] [--per-unit]
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
    scored = engine.SCORED_FIT_TOL
    parser.add_argument("--tolerances", nargs=2, type=float, default=[DEFAULT_TOL, scored],
                        help="the two tolerances alternated (default: gf.fit's and the scored "
                             "fits')")
    args, data, models = alternation_setup(parser)
    tight, loose = args.tolerances
    compare(models, data, scored)  # compiles
    alternate(lambda tol: compare(models, data, tol),
              {f"tol {tight:g}": tight, f"tol {loose:g}": loose}, args.repeats)
    if args.per_unit:
        first, second = (compare(models, data, tol, per_unit=True) for tol in (tight, loose))
        units = pd.DataFrame({f"cv_bps_{tight:g}": first["cv_bits_per_spike"],
                              f"cv_bps_{loose:g}": second["cv_bits_per_spike"]})
        units["difference"] = units.iloc[:, 1] - units.iloc[:, 0]
        print(units.round(6).to_string())
    engine.SCORED_FIT_TOL = scored


if __name__ == "__main__":
    main()
