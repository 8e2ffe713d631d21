"""Write the reference values that tests/reference/test_reference_values.py compares against.

Run once on a known-good version (``python tests/reference/make_reference.py``, or with case
names to rewrite those only); the test then checks that refactors leave fits, standard errors,
curves, comparisons and saved files equal to 1e-8. The fits converge to ``tol=1e-10`` so that
two correct solver paths agree far below that. Real recordings are read from ../shared/data
(cases whose folder is absent are skipped).

Rewritten since: ``current_injection_real`` in session 27, when spike counts began to be
convolved from their non-zero entries (exact zeros where the FFT left ~1e-16 of rounding): its
refractory cell's two shortest history weights are not identified (SeparationWarning), and the
FFT's rounding in their columns had let them run to -2e15 and fit that rounding (log-likelihood
-6000.70 against -6015.22 on the exact design).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from reference_cases import CASES, load_case  # noqa: E402

import glmformula as gf  # noqa: E402


def values_of(result, case) -> dict:
    out = {"weights": np.asarray(result.coef.to_numpy(), float),
           "intercepts": np.asarray(result.intercepts, float),
           "log_likelihood": np.asarray(result.log_likelihood_units, float),
           "std_errors": np.asarray(result.standard_errors().to_numpy(), float)}
    for i, term in enumerate(case["curves"]):
        curve = result.curve(term)
        out[f"curve_{i}"] = curve.to_numpy(dtype=float)
    return out


def main(names: list[str]) -> None:
    warnings.simplefilter("ignore")
    for name in names or CASES:
        data = load_case(name)
        if data is None:
            print(f"{name}: data absent, skipped")
            continue
        case = CASES[name]
        result = gf.fit(case["formula"], data, **case["fit"])
        arrays = values_of(result, case)
        if case.get("compare"):
            options = {k: v for k, v in case["fit"].items() if k != "tol"}
            table = gf.compare(case["compare"], data, cv=3, **options)
            for column in ("cv_bits_per_spike", "log_likelihood", "lr_stat"):
                arrays[f"compare_{column}"] = table[column].to_numpy(dtype=float)
        np.savez_compressed(HERE / f"{name}.npz", **arrays)
        if case.get("save"):
            result.save(HERE / f"{name}_result_v3.npz")
        print(f"{name}: {', '.join(arrays)}")


if __name__ == "__main__":
    main(sys.argv[1:])
