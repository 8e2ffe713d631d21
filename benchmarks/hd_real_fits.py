"""The real head-direction recording through the user's path: single fits and the three-model
comparison of issue 16, timed warm (second call in the process) and first.

Reads ../shared/data/hd_mouse28_140313 (32 ADn/PoS cells; the `valid` wake epochs; 10 ms bins;
no regularizer unless --smoothing auto) and prints, per fit, the wall time, the solver's time
and its passes over the data; for the comparison, the wall time, each model's share of it
(``table.attrs["seconds"]``) and the cross-validated bits per spike.

    python benchmarks/hd_real_fits.py [--repeats 2] [--skip-compare] [--smoothing auto]
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pynapple as nap

import glmformula as gf

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hd_mouse28_140313"
MODELS = {
    "hd": "spikes ~ cyclic(head_direction, 12)",
    "hd+history": "spikes ~ cyclic(head_direction, 12) + history(8, log, window=100ms)",
    "hd+history+coupling": "spikes ~ cyclic(head_direction, 12) + "
                           "history(8, log, window=100ms) + coupling(all)",
}


def load() -> dict:
    """The recording as its README loads it."""
    d = np.load(DATA / "Mouse28-140313_wake_hd.npz")
    wake = nap.IntervalSet(d["wake_start"], d["wake_end"])
    spikes = nap.TsGroup({i: nap.Ts(d["spike_times"][d["spike_unit"] == i])
                          for i in range(len(d["unit_ids"]))}, time_support=wake)
    return {"spikes": spikes, "head_direction": nap.Tsd(t=d["angle_t"], d=d["angle"],
                                                        time_support=wake),
            "valid": nap.IntervalSet(d["valid_start"], d["valid_end"])}


def load_or_exit() -> dict:
    """The recording (:func:`load`), or exit with a message where ../shared/data lacks it."""
    if not DATA.exists():
        raise SystemExit(f"the real recording is not at {DATA} (it lives in ../shared/data)")
    return load()


def alternation_parser(description: str) -> argparse.ArgumentParser:
    """Arguments of the scripts that alternate two settings of a comparison on this recording:
    ``--models`` (default the coupled model) and ``--repeats``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--models", nargs="+", choices=list(MODELS),
                        default=["hd+history+coupling"])
    parser.add_argument("--repeats", type=int, default=2, help="alternations of the settings")
    return parser


def alternation_setup(parser: argparse.ArgumentParser):
    """``(args, data, models)`` of an A/B script: its arguments parsed, the recording loaded
    (or exit), glmformula's warnings silenced, the models chosen by ``--models``."""
    args = parser.parse_args()
    data = load_or_exit()
    warnings.simplefilter("ignore")
    return args, data, {name: MODELS[name] for name in args.models}


def alternate(run, settings: dict, repeats: int) -> None:
    """Call ``run(setting)`` (a ``gf.compare`` table) for each labelled setting in turn,
    ``repeats`` times, printing the wall and CPU time, each model's share and the cv
    bits/spike: the two settings of an A/B under the same load."""
    for _ in range(repeats):
        for label, setting in settings.items():
            started, cpu = time.perf_counter(), time.process_time()
            table = run(setting)
            seconds = ", ".join(f"{n} {t:.1f} s" for n, t in table.attrs["seconds"].items())
            print(f"{label}: {time.perf_counter() - started:.1f} s wall, "
                  f"{time.process_time() - cpu:.1f} s CPU ({seconds}); cv bits/spike "
                  f"{np.round(table['cv_bits_per_spike'].to_numpy(), 6).tolist()}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-compare", action="store_true")
    parser.add_argument("--smoothing", choices=("none", "auto"), default="none",
                        help="none: the issue's unregularised fits (default); auto: REML")
    parser.add_argument("--models", nargs="+", choices=list(MODELS),
                        default=["hd+history", "hd+history+coupling"],
                        help="which single fits to time")
    args = parser.parse_args()
    data = load_or_exit()
    warnings.simplefilter("ignore")
    smoothing = None if args.smoothing == "none" else "auto"
    for name in args.models:
        for repeat in range(args.repeats):
            started = time.perf_counter()
            res = gf.fit(MODELS[name], data, bin_size="10ms", epochs="valid",
                         smoothing=smoothing)
            d = res.diagnostics
            print(f"{name:22s} {'first' if repeat == 0 else 'warm '} "
                  f"{time.perf_counter() - started:6.2f} s  solver {res.solver} "
                  f"{d.fit_seconds:.2f} s (compile {d.compile_seconds:.2f} s), "
                  f"{res.n_iter} iterations, {d.n_hessian_passes} Hessian + "
                  f"{d.n_matmul_passes} product passes, converged {res.converged}", flush=True)
    if args.skip_compare:
        return
    for repeat in range(args.repeats):
        started = time.perf_counter()
        table = gf.compare(MODELS, data, bin_size="10ms", epochs="valid", cv=5,
                           smoothing=smoothing)
        seconds = ", ".join(f"{name} {t:.1f} s" for name, t in table.attrs["seconds"].items())
        print(f"gf.compare, 3 models, cv=5: {'first' if repeat == 0 else 'warm '} "
              f"{time.perf_counter() - started:.1f} s ({seconds})", flush=True)
    print(table[["n_params", "cv_bits_per_spike", "cv_bits_per_spike_se",
                 "converged"]].to_string())


if __name__ == "__main__":
    main()
