"""REML of every observation family against R's mgcv on the same design and penalties: the
agreement figures quoted in docs/smoothness.md ("Other families").

SIMULATED data (``tests/smoothing/test_reml_families_against_mgcv.py``'s recordings, known
smooth tuning); mgcv ``gam(..., paraPen=, method="REML")`` with ``binomial()``,
``Gamma(link="log")``, ``gaussian()`` and ``negbin(theta = 1/a)`` at our estimated dispersion.

    .venv/bin/python benchmarks/smoothing_families_oracle.py

Needs ``Rscript`` with mgcv (``apt-get install r-cran-mgcv``). Prints one line per family:
the largest |log-strength| difference, the largest relative edf difference, the largest weight
difference relative to the weights' scale, and (gamma, gaussian) the relative scale difference.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "smoothing"))

from mgcv_oracle import fit_our_design, mgcv_version  # noqa: E402
from test_reml_families_against_mgcv import BIN, FORMULA, _recording  # noqa: E402

import glmformula as gf  # noqa: E402

CASES = (("bernoulli", 1), ("gamma", 2), ("gaussian", 3), ("negative_binomial", 4))


def main() -> int:
    if mgcv_version() is None:
        print("skipped: Rscript with mgcv is not installed (apt-get install r-cran-mgcv)")
        return 0
    warnings.simplefilter("ignore")
    for family, seed in CASES:
        data = _recording(family, seed)
        res = gf.fit(FORMULA, data, bin_size=BIN, family=family)
        theta = 1.0 / res.dispersion[0] if family == "negative_binomial" else None
        setup, oracle, weights, _ = fit_our_design(FORMULA, data, BIN, family=family,
                                                   theta=theta)
        ours = np.array([res.smoothing.loc[(k, 0), "strength"] for k in setup.keys])
        edf = np.array([res.smoothing.loc[(k, 0), "edf"] for k in setup.keys])
        line = (f"{family:18s} |d log strength| {np.abs(np.log(ours / oracle.strength)).max():.2g}"
                f"  edf rel {np.abs(edf / oracle.edf - 1).max():.2g}"
                f"  weights {np.abs(res.weights[:, 0] - weights).max() / np.abs(weights).max():.2g}"
                " of scale")
        if family in ("gamma", "gaussian"):
            line += f"  scale rel {abs(res.dispersion[0] / oracle.scale - 1):.2g}"
        if family == "negative_binomial":
            line += f"  a = {res.dispersion[0]:.3f} (simulated 0.5)"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
