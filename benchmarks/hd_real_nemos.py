"""NeMoS 0.2.8 against ``gf.compare`` on the REAL head-direction recording: the three-model,
5-fold cross-validated comparison of issue 16, written with each library as its user would,
timed side by side in one run.

Run by hand from the repository root (not part of the tests; the machine is shared, so always
under the benchmark lock)::

    flock /tmp/glmformula-bench.lock .venv/bin/python benchmarks/hd_real_nemos.py \\
        --out hd_real_nemos.md     # everything (15 min or more on 2 cores: NeMoS's L-BFGS
                                   # runs up to its limit of 500 steps per fit)
    flock /tmp/glmformula-bench.lock .venv/bin/python benchmarks/hd_real_nemos.py --minutes 3
                    # a check of the pipeline (18,000 bins; ~10 min on 2 cores: with so few
                    # spikes per fold the unpenalised fits do not converge, see the report)
    flock /tmp/glmformula-bench.lock .venv/bin/python benchmarks/hd_real_nemos.py --folds 2
                                                      # 2 NeMoS folds per model, extrapolated

Data: ``../shared/data/hd_mouse28_140313`` (Mouse28-140313, 32 head-direction cells, loaded by
``hd_real_fits.load_or_exit``), the ``valid`` epochs (or their first ``--minutes``), 10 ms
bins, no regularizer, the three models of ``hd_real_fits.MODELS``::

    hd                    spikes ~ cyclic(head_direction, 12)
    hd+history            ... + history(8, log, window=100ms)
    hd+history+coupling   ... + coupling(all)

glmformula: the call ``benchmarks/hd_real_fits.py`` times, ``gf.compare(MODELS, data,
bin_size="10ms", epochs="valid", cv=5, smoothing=None)``, first call in the process and then
``--gf-repeats - 1`` warm calls; it bins, builds the features, fits each model on all rows and
on 5 contiguous folds, and scores the held-out rows. Each (model, fold)'s pooled held-out
bits/spike is recorded on the side (``Comparison.run_task`` wrapped), so that a run with
``--folds K`` can compare the two libraries on the same K folds.

NeMoS, as its documentation writes a population GLM with spike history and coupling: counts
``spikes.count(0.01, valid)`` (pynapple), the head angle at the bin centres (linear
interpolation of the unwrapped angle, wrapped back into [0, 2pi): pynapple's ``interpolate``
and ``bin_average`` are linear and would cross the 0/2pi wrap), features from one additive
basis ``CyclicBSplineEval(12, bounds=(0, 2pi)) + RaisedCosineLogConv(8, window_size=10)``
(``compute_features`` on the pynapple objects: the convolution runs per epoch and leaves NaN in
the first 10 bins of each), rows with a NaN dropped, 5 contiguous folds (``np.array_split`` of
the remaining rows, as glmformula), and per (model, fold) one
``PopulationGLM(regularizer="UnRegularized", solver_name="LBFGS", feature_mask=...)`` fitted on
the training rows (default solver settings, no warm start) and scored on the held-out rows
with ``predict``: bits/spike pooled over units (``compare.heldout_scores``: each unit's gain
over the held-out rows' own mean rate, summed, over the held-out spikes times ln 2), then the
mean over folds, which is how ``gf.compare`` defines its ``cv_bits_per_spike``. The history
model's ``feature_mask`` lets each unit read the 12 head-direction columns and its own 8
history columns; the coupled model reads all 12 + 8 x 32 columns. ``--full-fit`` also fits
each model on all rows once (``gf.compare`` does), reported separately.

NeMoS runs in a child process started after the glmformula calls, with
``jax_enable_x64=True`` (float64, as glmformula): glmformula turns on JAX's persistent
compilation cache for the whole process the first time it compiles, which would otherwise
serve NeMoS's compilations from disk, something a NeMoS user does not get by default. Wall and
CPU time (all threads of the process) are measured; on a shared machine a lower CPU / wall
ratio means waiting for a core.

Known differences between the two pipelines, printed with the results:

* rows: pynapple's ``count`` keeps a trailing partial bin at the end of an epoch (its count
  covers less than 10 ms), glmformula's grid only whole bins (10 of the 22 epochs of the whole
  recording have one; 9 more rows for NeMoS). ``--match-rows`` drops them, so both fit the
  same rows.
* history filters: NeMoS's default log stretch (``time_scaling=50``) squeezes the first
  filters into the first lags of a 10-bin window: the (10 x 8) kernel matrix has rank 6 (one
  filter is all zeros), against 8 for glmformula's, which relaxes the stretch until every
  filter is distinct (``glmformula.bases.resolvable_time_scaling``: 1e-6 here, near-linear
  spacing). ``--history-stretch glmformula`` gives NeMoS the same filters.
* With ``--match-rows --history-stretch glmformula`` both libraries fit the same rows, counts
  and features (checked on the whole recording: 226,358 rows, features within 6e-9).
* the head-direction basis is the same (a cyclic cubic B-spline of 12 functions over
  [0, 2pi)); glmformula constrains it against the intercept, NeMoS leaves the (unpenalised)
  fit with a redundant direction, which L-BFGS does not mind.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import shlex
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import _common as common  # noqa: E402
from hd_real_fits import MODELS, load_or_exit  # noqa: E402

BIN = 0.01  # s
CV = 5
WINDOW_BINS = 10  # 100 ms of history at 10 ms bins
N_HD, N_HISTORY = 12, 8


def restricted(minutes: float | None) -> dict:
    """The recording (:func:`hd_real_fits.load_or_exit`) with ``valid`` cut to its first
    ``minutes`` (all of it when None)."""
    import pynapple as nap

    data = load_or_exit()
    if minutes:
        valid = data["valid"]
        start = float(valid.start[0])
        data["valid"] = valid.intersect(nap.IntervalSet(start, start + 60.0 * minutes))
    return data


# --------------------------------------------------------------------------- glmformula


def run_glmformula(data: dict, repeats: int) -> dict:
    """``repeats`` timed calls of the comparison as ``hd_real_fits.py`` makes it."""
    import glmformula as gf
    from glmformula.compare.comparison import Comparison

    fold_bps: dict = {}
    run_task = Comparison.run_task

    def recording_task(self, name, fold, *args, **kwargs):  # the pooled score of each fold
        out = run_task(self, name, fold, *args, **kwargs)
        if fold >= 0:
            spikes = np.asarray(out["spikes"], float)
            gain = np.nan_to_num(np.asarray(out["bps"], float)) * spikes
            fold_bps[(name, fold)] = float(gain.sum() / max(spikes.sum(), 1.0))
        return out

    Comparison.run_task = recording_task
    calls = []
    try:
        for repeat in range(repeats):
            fold_bps.clear()
            started, cpu = time.perf_counter(), time.process_time()
            table = gf.compare(MODELS, data, bin_size="10ms", epochs="valid", cv=CV,
                               smoothing=None)
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
            calls.append({"wall": wall, "cpu": cpu,
                          "seconds": {k: float(v) for k, v in table.attrs["seconds"].items()}})
            print(f"glmformula gf.compare {'first' if repeat == 0 else 'warm '}: {wall:.1f} s "
                  f"wall, {cpu:.1f} s CPU", file=sys.stderr, flush=True)
    finally:
        Comparison.run_task = run_task
    return {"calls": calls,
            "cv_bps": {name: float(table.loc[name, "cv_bits_per_spike"]) for name in MODELS},
            "converged": {name: bool(table.loc[name, "converged"]) for name in MODELS},
            "cv_flag": {name: str(table.loc[name, "cv_flag"]) for name in MODELS},
            "n_rows": int(table["n_rows"].iloc[0]),
            "fold_bps": {name: [fold_bps.get((name, f)) for f in range(CV)] for name in MODELS}}


# --------------------------------------------------------------------------- NeMoS (child)


def history_time_scaling(which: str) -> float | None:
    """NeMoS's default log stretch (None) or glmformula's (distinct filters)."""
    if which == "nemos":
        return None
    from glmformula.bases.raised_cosine import resolvable_time_scaling
    return float(resolvable_time_scaling(WINDOW_BINS, N_HISTORY))


def whole_bins(times: np.ndarray, valid) -> np.ndarray:
    """Which bins (by centre time) end inside their epoch: not pynapple's trailing partial
    bins."""
    starts, ends = np.asarray(valid.start), np.asarray(valid.end)
    epoch = np.clip(np.searchsorted(starts, times, side="right") - 1, 0, len(ends) - 1)
    return times + BIN / 2 <= ends[epoch] + 1e-9


def child_nemos(args) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)
    import nemos as nmo
    import pynapple as nap
    from compare import pooled_bits_per_spike

    warnings.simplefilter("ignore")
    data = restricted(args.minutes)
    valid = data["valid"]
    scaling = history_time_scaling(args.history_stretch)

    # ----- features, as a NeMoS user builds them
    started, cpu = time.perf_counter(), time.process_time()
    counts = data["spikes"].count(BIN, valid)
    hd = data["head_direction"]
    angle = np.mod(np.interp(counts.t, hd.t, np.unwrap(hd.d), left=np.nan, right=np.nan),
                   2 * np.pi)
    angle = nap.Tsd(t=counts.t, d=angle, time_support=counts.time_support)
    hd_basis = nmo.basis.CyclicBSplineEval(N_HD, bounds=(0.0, 2 * np.pi), label="hd")
    history_basis = nmo.basis.RaisedCosineLogConv(N_HISTORY, window_size=WINDOW_BINS,
                                                  time_scaling=scaling, label="history")
    basis = hd_basis + history_basis
    features = basis.compute_features(angle, counts)  # TsdFrame (T, 12 + 8 U)
    X = np.asarray(features.values, dtype=float)
    Y = np.asarray(counts.values, dtype=float)
    keep = ~np.isnan(X).any(axis=1)
    partial = ~whole_bins(np.asarray(counts.t), valid)
    if args.match_rows:
        keep &= ~partial
    X, Y = X[keep], Y[keep]
    feature_wall, feature_cpu = time.perf_counter() - started, time.process_time() - cpu
    del features
    kernel = np.asarray(history_basis.evaluate_on_grid(WINDOW_BINS)[1])
    print(f"nemos features: {feature_wall:.1f} s wall, {feature_cpu:.1f} s CPU; X {X.shape}",
          file=sys.stderr, flush=True)

    n, U = Y.shape
    mask = np.zeros((N_HD + N_HISTORY * U, U))
    mask[:N_HD] = 1.0
    for u in range(U):  # each unit reads its own history columns only
        mask[N_HD + N_HISTORY * u: N_HD + N_HISTORY * (u + 1), u] = 1.0
    specs = {"hd": (slice(0, N_HD), None), "hd+history": (slice(None), mask),
             "hd+history+coupling": (slice(None), None)}
    blocks = np.array_split(np.arange(n), CV)
    folds = list(range(max(1, min(args.folds, CV))))

    def fit(cols, m, rows):
        model = nmo.glm.PopulationGLM(regularizer="UnRegularized", solver_name="LBFGS",
                                      feature_mask=m)
        model.fit(X[rows, cols] if isinstance(rows, np.ndarray) else X[:, cols], Y[rows])
        info = model.optim_info_
        return model, {"steps": int(info.num_steps), "converged": bool(info.converged)}

    models = {}
    for name, (cols, m) in specs.items():
        record = {"wall": [], "cpu": [], "bps": [], "steps": [], "converged": []}
        for fold in folds:
            lo, hi = int(blocks[fold][0]), int(blocks[fold][-1]) + 1
            train = np.ones(n, bool)
            train[lo:hi] = False
            t0, c0 = time.perf_counter(), time.process_time()
            model, info = fit(cols, m, train)
            rate = np.asarray(model.predict(X[lo:hi, cols]))
            bps = pooled_bits_per_spike(Y[lo:hi], rate)
            record["wall"].append(time.perf_counter() - t0)
            record["cpu"].append(time.process_time() - c0)
            record["bps"].append(bps)
            record["steps"].append(info["steps"])
            record["converged"].append(info["converged"])
            print(f"nemos {name} fold {fold + 1}: {record['wall'][-1]:.1f} s wall, "
                  f"{record['cpu'][-1]:.1f} s CPU, {info['steps']} L-BFGS steps, "
                  f"bits/spike {record['bps'][-1]:.4f}", file=sys.stderr, flush=True)
        warm = (record["wall"][1:], record["cpu"][1:]) if len(folds) > 1 else \
            (record["wall"], record["cpu"])
        missing = CV - len(folds)
        record["total"] = sum(record["wall"]) + missing * float(np.mean(warm[0]))
        record["total_cpu"] = sum(record["cpu"]) + missing * float(np.mean(warm[1]))
        record["cv_bps"] = float(np.mean(record["bps"]))
        if args.full_fit:
            t0, c0 = time.perf_counter(), time.process_time()
            _, info = fit(cols, m, slice(None))
            record["full"] = {"wall": time.perf_counter() - t0,
                              "cpu": time.process_time() - c0, **info}
            print(f"nemos {name} all rows: {record['full']['wall']:.1f} s wall, "
                  f"{info['steps']} L-BFGS steps", file=sys.stderr, flush=True)
        models[name] = record
    return {"feature_wall": feature_wall, "feature_cpu": feature_cpu, "models": models,
            "n_rows": int(n), "grid_rows": int(len(keep)), "nan_rows": int(
                np.isnan(np.asarray(angle.values)).sum()),
            "partial_bins": int(partial.sum()),
            "partial_bins_used": 0 if args.match_rows else int((partial & keep).sum()),
            "time_scaling": float(history_basis.time_scaling),
            "kernel_rank": int(np.linalg.matrix_rank(kernel)), "folds": len(folds),
            "extrapolated": len(folds) < CV, "n_units": int(U)}


# --------------------------------------------------------------------------- report


def fmt(x, digits=3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def gfmt(x) -> str:
    """4 significant digits (a diverged fold's score can be -1e300)."""
    return "-" if x is None else f"{x:.4g}"


def report(args, gf_run, nemos, load_before, load_after, command) -> str:
    K = nemos["folds"]
    extrap = " (extrapolated from %d of 5 folds)" % K if nemos["extrapolated"] else ""
    span = f"the first {args.minutes:g} min of the `valid` epochs" if args.minutes else \
        "all `valid` epochs (2265.8 s: wake minus 21 tracking gaps)"
    lines = [
        "## NeMoS 0.2.8 and glmformula on the REAL head-direction recording: 3 models, "
        "5-fold CV (`benchmarks/hd_real_nemos.py`)", "",
        f"Generated by `{command}` on {datetime.date.today().isoformat()}.",
        f"Machine: {common.machine_line()}; {common.load_line(load_before, load_after)}.",
        "Versions: " + common.versions_line(
            ["numpy", "jax", "jaxlib", "pynapple", "nemos", "glmformula"]) + ".", "",
        f"Data: the REAL recording Mouse28-140313 ({nemos['n_units']} head-direction cells, "
        f"../shared/data/hd_mouse28_140313), {span}, 10 ms bins, no regularizer, float64 on "
        "both sides, 5 contiguous folds. glmformula: one "
        "`gf.compare(MODELS, data, bin_size=\"10ms\", epochs=\"valid\", cv=5, smoothing=None)` "
        "(binning, features, each model on all rows + 5 folds). NeMoS: pynapple counts, one "
        "additive basis `CyclicBSplineEval(12) + RaisedCosineLogConv(8, window_size=10, "
        f"time_scaling={nemos['time_scaling']:g})` (history kernel rank "
        f"{nemos['kernel_rank']} of 8), one `PopulationGLM(regularizer=\"UnRegularized\", "
        "solver_name=\"LBFGS\")` per (model, fold) (history model: `feature_mask`, each unit "
        "its own history columns), default solver settings, no warm starts"
        + ("; also one fit on all rows per model (`--full-fit`)" if args.full_fit else "")
        + ".", "",
    ]
    gf_rows = gf_run["n_rows"] if gf_run else None
    rows_line = (f"Rows: glmformula {gf_rows:,}" if gf_rows else "Rows: glmformula -") + \
        f", NeMoS {nemos['n_rows']:,} (of pynapple's {nemos['grid_rows']:,} bins, after " \
        "dropping rows with a NaN feature: the first 100 ms of each epoch"
    if nemos["partial_bins_used"]:
        rows_line += (f"; NeMoS keeps {nemos['partial_bins_used']} trailing partial bins of "
                      "pynapple's `count` that glmformula's grid leaves out, so its folds' "
                      "borders shift by a few rows")
    elif args.match_rows:
        rows_line += f"; `--match-rows`: {nemos['partial_bins']} trailing partial bins dropped"
    lines += [rows_line + ").", ""]
    headers = ["model", "glmformula cv bits/spike", "NeMoS cv bits/spike",
               "NeMoS s wall / CPU (5 folds)", "NeMoS L-BFGS steps per fold",
               "glmformula s (first / warm; `attrs['seconds']`)"]
    if args.full_fit:
        headers.insert(4, "NeMoS all rows s wall / CPU (steps)")
    table_rows = []
    for name in MODELS:
        r = nemos["models"][name]
        ours = "-"
        if gf_run:
            ours = fmt(gf_run["cv_bps"][name])
            if K < CV and all(v is not None for v in gf_run["fold_bps"][name][:K]):
                ours += f" (folds 1-{K}: {fmt(np.mean(gf_run['fold_bps'][name][:K]))})"
            if gf_run["cv_flag"][name]:
                ours += f" ({gf_run['cv_flag'][name]})"
            if not gf_run["converged"][name]:
                ours += " (not converged)"
        theirs = fmt(r["cv_bps"]) + (f" (folds 1-{K})" if K < CV else "")
        steps = "/".join(str(s) for s in r["steps"]) + (
            "" if all(r["converged"]) else " (not all converged)")
        secs = "-" if not gf_run else " / ".join(
            f"{c['seconds'][name]:.1f}" for c in gf_run["calls"][:2])
        row = [name, ours, theirs, f"{r['total']:.1f} / {r['total_cpu']:.1f}{extrap}", steps,
               secs]
        if args.full_fit:
            full = r["full"]
            row.insert(4, f"{full['wall']:.1f} / {full['cpu']:.1f} ({full['steps']})")
        table_rows.append(row)
    lines += [common.markdown_table(headers, table_rows), ""]
    folds_total = sum(r["total"] for r in nemos["models"].values())
    folds_cpu = sum(r["total_cpu"] for r in nemos["models"].values())
    nemos_wall = nemos["feature_wall"] + folds_total
    nemos_cpu = nemos["feature_cpu"] + folds_cpu
    lines.append(f"- NeMoS: features {nemos['feature_wall']:.1f} s wall / "
                 f"{nemos['feature_cpu']:.1f} s CPU; 15 fold fits {folds_total:.1f} s / "
                 f"{folds_cpu:.1f} s{extrap}; total **{nemos_wall:.1f} s wall, "
                 f"{nemos_cpu:.1f} s CPU**.")
    full_wall = full_cpu = None
    if args.full_fit:
        full_wall = nemos_wall + sum(r["full"]["wall"] for r in nemos["models"].values())
        full_cpu = nemos_cpu + sum(r["full"]["cpu"] for r in nemos["models"].values())
        lines.append(f"- NeMoS with the 3 fits on all rows as well (what `gf.compare` also "
                     f"does): {full_wall:.1f} s wall, {full_cpu:.1f} s CPU.")
    if gf_run:
        calls = gf_run["calls"]
        first, warm = calls[0], (calls[1] if len(calls) > 1 else None)
        warm_text = ", ".join(f"{c['wall']:.1f} s wall / {c['cpu']:.1f} s CPU"
                              for c in calls[1:])
        lines.append(f"- glmformula `gf.compare`: first call **{first['wall']:.1f} s wall, "
                     f"{first['cpu']:.1f} s CPU**" + (f"; warm {warm_text}" if warm else "")
                     + ".")
        for label, (w, c) in {"NeMoS (features + 15 fold fits)": (nemos_wall, nemos_cpu),
                              "NeMoS incl. fits on all rows": (full_wall, full_cpu)}.items():
            if w is None:
                continue
            text = (f"- Ratio {label} / glmformula: {w / first['wall']:.1f}x wall, "
                    f"{c / first['cpu']:.1f}x CPU against the first call")
            if warm:
                text += (f"; {w / warm['wall']:.1f}x wall, {c / warm['cpu']:.1f}x CPU against "
                         "the (first) warm call")
            lines.append(text + (" (extrapolated)" if nemos["extrapolated"] else "") + ".")
        lines.append("- Per-fold pooled bits/spike (glmformula | NeMoS): " + "; ".join(
            f"{name} " + " ".join(gfmt(v) for v in gf_run["fold_bps"][name]) + " | "
            + " ".join(gfmt(v) for v in nemos["models"][name]["bps"]) for name in MODELS)
            + ".")
    if not gf_run:
        lines.append("- glmformula not run (`--skip-gf`).")
    if args.minutes:
        lines.append(f"- Only {args.minutes:g} min of data: without a regularizer, units with few "
                     "spikes in a fold's training rows have no finite maximum-likelihood fit "
                     "(glmformula flags the fold as diverged, NeMoS stops at its iteration "
                     "limit), so the scores of a short run check the pipeline, not the models.")
    if nemos["kernel_rank"] < N_HISTORY:
        lines.append(f"- NeMoS's default history filters span {nemos['kernel_rank']} "
                     "dimensions, glmformula's 8: the history scores differ for that reason "
                     "too (`--history-stretch glmformula` gives NeMoS glmformula's filters).")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=None,
                        help="only the first M minutes of the valid epochs (a quick check)")
    parser.add_argument("--gf-repeats", type=int, default=2,
                        help="gf.compare calls: the first, then warm ones")
    parser.add_argument("--skip-gf", action="store_true")
    parser.add_argument("--folds", type=int, default=CV,
                        help="NeMoS folds run per model (the others extrapolated)")
    parser.add_argument("--full-fit", action="store_true",
                        help="NeMoS also fits each model on all rows (reported separately)")
    parser.add_argument("--history-stretch", choices=("nemos", "glmformula"), default="nemos",
                        help="NeMoS's default log stretch of the history filters, or "
                             "glmformula's (the same filters on both sides)")
    parser.add_argument("--match-rows", action="store_true",
                        help="drop pynapple's trailing partial bins: both fit the same rows")
    parser.add_argument("--out", default=None, help="also write the Markdown to this file")
    parser.add_argument("--child-nemos", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_nemos:
        common.emit(child_nemos(args))
        return

    command = "flock /tmp/glmformula-bench.lock python benchmarks/hd_real_nemos.py " + \
        shlex.join(sys.argv[1:])
    load_before = os.getloadavg()
    print(f"the REAL head-direction recording, "
          f"{'first %g min of ' % args.minutes if args.minutes else ''}the valid epochs",
          file=sys.stderr, flush=True)
    gf_run = None
    if not args.skip_gf:
        warnings.simplefilter("ignore")
        gf_run = run_glmformula(restricted(args.minutes), max(1, args.gf_repeats))
        gc.collect()
    child = [sys.executable, str(Path(__file__).resolve()), "--child-nemos",
             "--folds", str(args.folds), "--history-stretch", args.history_stretch]
    child += (["--minutes", str(args.minutes)] if args.minutes else []) + \
        (["--full-fit"] if args.full_fit else []) + \
        (["--match-rows"] if args.match_rows else [])
    proc = subprocess.run(child, stdout=subprocess.PIPE, text=True)  # progress on stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"the NeMoS child failed ({proc.returncode})")
    nemos = json.loads(lines[-1])
    text = report(args, gf_run, nemos, load_before, os.getloadavg(), command)
    print()
    print(text)
    if args.out:
        Path(args.out).write_text(text)
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
