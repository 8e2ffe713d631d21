"""The real head-direction recording through the user's path: single fits and the three-model
comparison of issue 16, timed warm (second call in the process) and first.

Reads ../shared/data/hd_mouse28_140313 (32 ADn/PoS cells; the `valid` wake epochs; 10 ms bins;
no regularizer unless --smoothing auto) and prints, per fit, the wall time, the solver's time
and its passes over the data; for the comparison, the wall time, each model's share of it
(``table.attrs["seconds"]``) and the cross-validated bits per spike.

    python benchmarks/hd_real_fits.py [--repeats 2] [--skip-compare] [--smoothing auto]

``--log-compiles`` also lists every compilation of a solver program (function, static
settings, rows, seconds); with an empty disk cache and no single fits it shows where the
comparison's first call goes:

    GLMFORMULA_COMPILATION_CACHE=$(mktemp -d) python benchmarks/hd_real_fits.py --models \
        --log-compiles
"""

from __future__ import annotations

import argparse
import sys
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


def log_compiles() -> list:
    """Record each compilation of ``glmformula.backend.problem.compiled_call`` (every module
    that imported it calls the recording wrapper): (function, static settings, rows of its
    first argument's design, seconds)."""
    from glmformula.backend import problem

    original = problem.compiled_call
    log: list = []

    def recorded(fn, static, *args):
        out, compile_s, run_s = original(fn, static, *args)
        if compile_s > 0:
            design = getattr(getattr(args[0], "block", args[0]), "X", None)
            log.append((fn.__name__, ", ".join(f"{k}={v}" for k, v in sorted(static.items())),
                        None if design is None else design.shape[0], compile_s))
        return out, compile_s, run_s

    for module in list(sys.modules.values()):
        if (getattr(module, "__name__", "").startswith("glmformula")
                and getattr(module, "compiled_call", None) is original):
            module.compiled_call = recorded
    return log


def print_compiles(log: list) -> None:
    """The recorded compilations, longest first, and their sum."""
    for name, static, rows, seconds in sorted(log, key=lambda entry: -entry[3]):
        print(f"  {seconds:6.2f} s  {name} rows={rows} {static}")
    print(f"  {sum(entry[3] for entry in log):6.2f} s  compiling, {len(log)} programs")


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
    parser.add_argument("--models", nargs="*", choices=list(MODELS),
                        default=["hd+history", "hd+history+coupling"],
                        help="which single fits to time (none: the comparison only)")
    parser.add_argument("--log-compiles", action="store_true",
                        help="list every compilation of a solver program")
    args = parser.parse_args()
    data = load_or_exit()
    warnings.simplefilter("ignore")
    compiles = log_compiles() if args.log_compiles else None
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
    if compiles is not None and args.models:
        print("compilations of the single fits:")
        print_compiles(compiles)
        compiles.clear()
    if args.skip_compare:
        return
    for repeat in range(args.repeats):
        started, cpu = time.perf_counter(), time.process_time()
        table = gf.compare(MODELS, data, bin_size="10ms", epochs="valid", cv=5,
                           smoothing=smoothing)
        seconds = ", ".join(f"{name} {t:.1f} s" for name, t in table.attrs["seconds"].items())
        print(f"gf.compare, 3 models, cv=5: {'first' if repeat == 0 else 'warm '} "
              f"{time.perf_counter() - started:.1f} s, CPU {time.process_time() - cpu:.1f} s "
              f"({seconds})", flush=True)
        if compiles is not None and repeat == 0:
            print_compiles(compiles)
    print(table[["n_params", "cv_bits_per_spike", "cv_bits_per_spike_se",
                 "converged"]].to_string())


if __name__ == "__main__":
    main()
