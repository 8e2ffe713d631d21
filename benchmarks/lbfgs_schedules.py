"""L-BFGS settings on the real head-direction recording's coupled model: iterations, passes,
solver time and log-likelihood per setting (docs/performance_decisions.md, 'L-BFGS refresh
interval' and 'L-BFGS: the last units on their own').

Reads ../shared/data/hd_mouse28_140313 (32 cells, `valid` epochs, 10 ms bins, no regularizer)
and fits `cyclic(head_direction, 12) + history(8, log, window=100ms) + coupling(all)` once per
setting, warm (one untimed fit compiles first). Each setting is a JSON object of L-BFGS
options (`refresh`, `stride`, `refreshes`, `history`, `narrow_units`: how many last units
continue alone, 0 turns it off; `{}` for the defaults), plus `tol`:

    python benchmarks/lbfgs_schedules.py '{}' \\
        '{"refresh": 67, "stride": 1, "refreshes": 0, "narrow_units": 0}' '{"narrow_units": 0}'
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
from hd_real_fits import DATA, MODELS, load

import glmformula as gf


def fit(data, setting: dict):
    options = dict(setting)
    tol = options.pop("tol", None)
    return gf.fit(MODELS["hd+history+coupling"], data, bin_size="10ms", epochs="valid",
                  smoothing=None, solver="lbfgs", tol=tol, solver_options=options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("settings", nargs="+", help="JSON objects of L-BFGS options")
    parser.add_argument("--repeats", type=int, default=1, help="timed fits per setting")
    args = parser.parse_args()
    if not DATA.exists():
        raise SystemExit(f"the real recording is not at {DATA} (it lives in ../shared/data)")
    data = load()
    warnings.simplefilter("ignore")
    settings = [json.loads(s) for s in args.settings]
    fit(data, settings[0])  # compiles the common kernels
    reference = None
    for repeat in range(args.repeats):
        for text, setting in zip(args.settings, settings):
            started = time.perf_counter()
            res = fit(data, setting)
            wall = time.perf_counter() - started
            d = res.diagnostics
            ll = res.log_likelihood_units
            reference = ll if reference is None else reference
            print(f"{text}: {wall:.2f} s (solver {d.fit_seconds:.2f} s, compile "
                  f"{d.compile_seconds:.2f} s), {res.n_iter} iterations, "
                  f"{d.n_hessian_passes} Hessian + {d.n_matmul_passes} product passes, "
                  f"converged {int(np.sum(res.converged_units))}/{len(ll)}; log-likelihood "
                  f"{np.sum(ll):.6f} (vs the first setting: total {np.sum(ll - reference):+.2e},"
                  f" largest unit {np.max(np.abs(ll - reference)):.1e})", flush=True)
            print(f"  iterations per unit {np.sort(res.n_iter_units).tolist()}", flush=True)


if __name__ == "__main__":
    main()
