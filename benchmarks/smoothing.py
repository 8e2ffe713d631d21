"""Automatic smoothness (issue 17) on the REAL head-direction recording, side by side in one
run: speed against R's mgcv and against our own fixed-strength fits, and held-out bits per spike
against mgcv's own REML fit and a grid of ridge strengths.

Data: ../shared/data/hd_mouse28_140313 (32 ADn/PoS cells, the ``valid`` wake epochs), 25 ms
bins, ``spikes ~ cyclic(head_direction, 20)``, all 32 cells in one ``gf.fit`` call.

Speed (full valid session):

* ours, ``smoothing="auto"`` (the default): ``gf.fit`` of all units, warm (one untimed call
  compiles the kernels), median of ``--repeats`` calls; the whole call is timed (binning, design,
  REML, the final solve, standard errors);
* ours, fixed strengths, same model and data: ``smoothing=None, regularizer=gf.Ridge(3e-4)``,
  and ``cyclic(head_direction, 20, smooth=<median of the strengths auto chose>)``;
* mgcv ``gam(y ~ s(hd, bs="cc", k=20), family=poisson, method="REML")`` and
  ``bam(..., method="fREML", discrete=TRUE, nthreads=1)``, one cell at a time, summed over the
  32 cells (each fit's wall time inside R, after an untimed warm-up fit; data transfer and R
  start-up excluded: ``benchmarks/smoothing_mgcv.py``, ``tests/smoothing/mgcv_oracle.py``).

Held-out (issue 17's evidence (a)): every method is fitted on the first 80% of the valid rows
(time order) and scored on the last 20%, on the same rows of the same design (mgcv reads the
very head angle our cyclic term reads). Ours are fitted as ``gf.compare`` fits a fold (the
engine's ``fit_design`` with the training rows as row weights): ``smoothing="auto"``, the fixed
median strength, and ``smoothing=None`` with each of 7 ridge strengths ``1e-6 .. 1`` (and,
for reference, without any penalty). Scores: ``glmformula.results.scores.bits_per_spike`` on
the test rows (null model: the test rows' own mean rate, as ``gf.compare`` scores a fold) and
the same gain over the training mean rate.

Profile: one more auto fit, with the time spent in the REML selection
(``glmformula.backend.reml.select``) split by kernel (inner penalised Newton fits, criterion,
derivatives), against the final solve and the rest of ``gf.fit``.

    flock /tmp/glmformula-bench.lock .venv/bin/python benchmarks/smoothing.py
    .venv/bin/python benchmarks/smoothing.py --units 4 --repeats 1 --no-write   # a quick look

Writes ``benchmarks/smoothing_results.json`` (``--json``), the section "Automatic smoothness
(issue 17)" of docs/performance.md and the section (a) of docs/smoothness_evidence.md (not with
``--no-write`` or ``--units``). Needs ``Rscript`` with mgcv (``apt-get install r-cran-mgcv``).
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests" / "smoothing"))

import _common as common  # noqa: E402
import hd_real_fits  # noqa: E402
import smoothing_mgcv  # noqa: E402
from mgcv_oracle import fit_smooth_cc, mgcv_version  # noqa: E402

import glmformula as gf  # noqa: E402
from glmformula.backend import problem as pb  # noqa: E402
from glmformula.backend import reml  # noqa: E402
from glmformula.fitting import engine  # noqa: E402
from glmformula.fitting.poisson import expected_counts  # noqa: E402

BIN = smoothing_mgcv.BIN  # 25 ms
K = smoothing_mgcv.K  # 20
FORMULA = f"spikes ~ cyclic(head_direction, {K})"
TRAIN_FRACTION = smoothing_mgcv.TRAIN_FRACTION  # 0.8
PERIOD = smoothing_mgcv.PERIOD
FIXED_RIDGE = 3e-4
RIDGE_GRID = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
RESULTS = HERE / "smoothing_results.json"
PERFORMANCE = ROOT / "docs" / "performance.md"
EVIDENCE = ROOT / "docs" / "smoothness_evidence.md"
TARGETS = {"vs_bam": 4.0, "vs_gam": 20.0, "auto_vs_fixed": 3.0, "vs_mgcv_bits": -0.002}


def load_line() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# --------------------------------------------------------------------------- ours: speed


def time_fit(formula: str, data: dict, repeats: int, **options) -> dict:
    """``gf.fit`` of all units, warm: one untimed call, then ``repeats`` timed ones."""
    call = lambda: gf.fit(formula, data, bin_size=BIN, epochs="valid", **options)  # noqa: E731
    res = call()  # compiles
    load_before = load_line()
    timing = common.time_calls(call, repeats)
    timing["load_before"], timing["load_after"] = load_before, load_line()
    timing["solver"] = res.solver
    timing["solver_seconds"] = float(res.diagnostics.fit_seconds)
    timing["n_params"] = float(res.n_params)
    return timing | {"result": res}


def profile_auto(data: dict) -> dict:
    """One warm auto fit with the REML selection timed part by part: every compiled kernel it
    runs (``problem.compiled_call``, by function name) and the host-side steps of
    ``glmformula.backend.reml`` (``criterion``, ``derivatives``: wrapped where they exist)."""
    kernels = collections.defaultdict(lambda: {"calls": 0, "seconds": 0.0})
    inner_iterations = []
    select_info = {}
    patched = {}

    def call(fn, static, *args):
        out, compile_s, run_s = patched["compiled_call"](fn, static, *args)
        if not select_info.get("active"):
            return out, compile_s, run_s
        k = kernels["kernel " + fn.__name__]
        k["calls"] += 1
        k["seconds"] += run_s
        if fn.__name__ == "penalised_fit":
            inner_iterations.append(int(out[3]))
        return out, compile_s, run_s

    def host_step(name):
        original = getattr(reml, name)

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                k = kernels["host " + name]
                k["calls"] += 1
                k["seconds"] += time.perf_counter() - started
        return timed

    def select(*args, **kwargs):
        started = time.perf_counter()
        select_info["active"] = True
        try:
            result = patched["select"](*args, **kwargs)
        finally:
            select_info["active"] = False
        select_info["seconds"] = time.perf_counter() - started
        select_info["n_outer"], select_info["n_inner"] = result.n_outer, result.n_inner
        select_info["converged"] = int(np.sum(result.converged))
        return result

    patched["compiled_call"], patched["select"] = pb.compiled_call, reml.select
    pb.compiled_call, reml.select = call, select
    for name in ("criterion", "derivatives"):  # host-side steps (where they are host code)
        if hasattr(reml, name) and name not in {"criterion_parts"}:
            patched[name] = getattr(reml, name)
            setattr(reml, name, host_step(name))
    try:
        started = time.perf_counter()
        res = gf.fit(FORMULA, data, bin_size=BIN, epochs="valid")
        total = time.perf_counter() - started
    finally:
        pb.compiled_call, reml.select = patched.pop("compiled_call"), patched.pop("select")
        for name, original in patched.items():
            setattr(reml, name, original)
    return {"total_seconds": total, "select": select_info,
            "reml_parts": {name: dict(v) for name, v in kernels.items()},
            "inner_iterations_per_call": inner_iterations,
            "final_solve_seconds": float(res.diagnostics.fit_seconds),
            "final_solver": res.solver,
            "rest_seconds": total - select_info.get("seconds", np.nan)
            - float(res.diagnostics.fit_seconds),
            "load": load_line()}


# --------------------------------------------------------------------------- held-out


def heldout_ours(design, train: np.ndarray, test_rows: np.ndarray, options) -> dict:
    """Fit on the training rows as ``gf.compare`` fits a fold; expected counts on test rows."""
    fit = engine.fit_design(design, options, row_weight=train, covariance=False,
                            log_likelihood=False)
    eta = design.storage[test_rows] @ fit.weights + fit.intercepts
    out = {"expected": expected_counts(eta),
           "converged": np.asarray(fit.diagnostics.converged, bool)}
    if fit.smoothing is not None:
        out["edf"] = np.asarray(fit.smoothing.total_edf) - 1.0  # the term's, as mgcv's edf
        out["strength"] = np.asarray(fit.smoothing.strength)[0]
    return out


def score(counts_test, expected, train_rate) -> dict:
    ours, train_null = smoothing_mgcv.heldout_bits(counts_test, expected, train_rate)
    return {"bits_per_spike": ours, "bits_per_spike_train_mean_null": train_null}


def med(x) -> float:
    return float(np.nanmedian(np.asarray(x, float)))


# --------------------------------------------------------------------------- report


def report(r: dict) -> tuple[str, str]:
    """The performance.md section and the evidence page's section (a)."""
    s = r["speed"]
    m = r["machine"]
    v = r["versions"]
    ours = s["ours_auto"]["median"]
    rows = [
        ["ours, `smoothing=\"auto\"` (REML per unit), one `gf.fit` of 32 units",
         common.fmt_seconds(ours), f"{s['ours_auto']['cpu_median']:.2f}", "1.00",
         "/".join(map(str, s["ours_auto"]["load_before"]))],
        ["ours, fixed `Ridge(3e-4)`, `smoothing=None`", common.fmt_seconds(
            s["ours_ridge"]["median"]), f"{s['ours_ridge']['cpu_median']:.2f}",
         f"{s['ours_ridge']['median'] / ours:.2f}",
         "/".join(map(str, s["ours_ridge"]["load_before"]))],
        [f"ours, fixed `smooth={r['median_strength']:.3g}` (median auto strength)",
         common.fmt_seconds(s["ours_smooth_fixed"]["median"]),
         f"{s['ours_smooth_fixed']['cpu_median']:.2f}",
         f"{s['ours_smooth_fixed']['median'] / ours:.2f}",
         "/".join(map(str, s["ours_smooth_fixed"]["load_before"]))],
    ]
    for engine_name, label in (("bam", "mgcv `bam(discrete=TRUE, method=\"fREML\")`"),
                               ("gam", "mgcv `gam(method=\"REML\")`")):
        t = s[engine_name]
        rows.append([f"{label}, sum of 32 one-cell fits (median cell "
                     f"{t['median']:.3f} s)", common.fmt_seconds(t["sum"]),
                     f"{t['cpu_sum']:.2f}", f"{t['sum'] / ours:.2f}",
                     "/".join(map(str, t["load_before"]))])
    ratios = r["ratios"]
    tgt = r["targets"]
    perf = [
        "## Automatic smoothness (issue 17)",
        "",
        f"Generated by `{r['command']}` on {r['date'][:10]} (REAL data: the head-direction "
        f"recording `../shared/data/hd_mouse28_140313`, 32 cells, the `valid` wake epochs, "
        f"{BIN} bins, {r['n_rows']:,} rows). {common.machine_line(m)}; load average "
        f"(1/5/15 min) {'/'.join(f'{x:.2f}' for x in m['load_before'])} at the start, "
        f"{'/'.join(f'{x:.2f}' for x in m['load_after'])} at the end (other engineers' test "
        f"runs share this 2-core machine; every timed step ran under "
        f"`flock /tmp/glmformula-bench.lock`). Python {v['python']}, jax {v['jax']}, numpy "
        f"{v['numpy']}, {v['R']}, mgcv {v['mgcv']} (R's reference BLAS, one thread)."
        + common.code_line(r.get("code")),
        "",
        f"Model: `{FORMULA}` for all 32 cells; mgcv: `s(hd, bs=\"cc\", k=20)` with 20 evenly "
        "spaced knots on [0, 2 pi], Poisson, one cell per fit, on the same head angle and "
        "counts. Ours: the whole `gf.fit` call, warm (one untimed call compiles), median of "
        f"{r['repeats']} calls, binning and standard errors included. mgcv: each fit's wall "
        "time inside R (`proc.time`), data transfer and R start-up excluded, summed over the "
        "cells.",
        "",
        common.markdown_table(["fit (all 32 cells)", "wall s", "CPU s", "time / ours auto",
                               "load (1/5/15) before"], rows, "lrrrl"),
        "",
        "| target (issue 17) | measured | met |",
        "|:---|---:|:---|",
        f"| ours auto >= {tgt['vs_bam']:g}x faster than bam summed | "
        f"{ratios['bam_over_auto']:.2f}x | {'yes' if r['met']['vs_bam'] else 'NO'} |",
        f"| ours auto >= {tgt['vs_gam']:g}x faster than gam summed | "
        f"{ratios['gam_over_auto']:.2f}x | {'yes' if r['met']['vs_gam'] else 'NO'} |",
        f"| ours auto within {tgt['auto_vs_fixed']:g}x of ours fixed (Ridge / fixed smooth) | "
        f"{ratios['auto_over_ridge']:.2f}x / {ratios['auto_over_smooth_fixed']:.2f}x | "
        f"{'yes' if r['met']['auto_vs_fixed'] else 'NO'} |",
        "",
    ]
    p = r["profile"]
    parts = "; ".join(f"{name} {v['calls']} calls {v['seconds']:.2f} s"
                      for name, v in p["reml_parts"].items())
    if p["select"]["n_inner"]:  # Newton's method on the strengths (before the performance
        iterations = (f"{p['select']['n_outer']} outer iterations, "  # iteration)
                      f"{p['select']['n_inner']} inner penalised Newton iterations in "
                      f"{len(p['inner_iterations_per_call'])} inner fits")
    else:
        iterations = (f"{p['select']['n_outer']} performance iterations, each a quadratic model "
                      "per unit (`loss_gradient_hessian`), the Hessian-change slope once the "
                      "strengths settle (`_trace_dH`), the strengths chosen on the host and an "
                      "Armijo step (`damped_step`)")
    perf += [
        f"Where the auto fit's time goes (one more warm call, {p['total_seconds']:.2f} s, load "
        f"{'/'.join(map(str, p['load']))}): REML selection (`glmformula.backend.reml.select`) "
        f"{p['select']['seconds']:.2f} s ({iterations}; by part: {parts}), final solve "
        f"({p['final_solver']}, warm-started at the REML weights) "
        f"{p['final_solve_seconds']:.2f} s, the rest of `gf.fit` (binning, design, "
        f"penalties, standard errors) {p['rest_seconds']:.2f} s.",
        "",
    ]
    h = r["heldout"]
    ev_rows = []
    order = (["auto", "mgcv_gam", "mgcv_bam", "smooth_fixed"]
             + [f"ridge_{s:g}" for s in RIDGE_GRID] + ["unpenalised"])
    for key in order:
        e = h[key]
        ev_rows.append([e["label"], f"{e['median']:.4f}", f"{e['median_train_null']:.4f}",
                        f"{e['sum']:.3f}",
                        "-" if e.get("median_edf") is None else f"{e['median_edf']:.2f}",
                        e.get("wins_vs_auto", "-")])
    best = h["best_ridge"]
    evid = [
        "## (a) Head-direction cells: held-out tuning curves (REAL data)",
        "",
        f"Generated by `{r['command']}` on {r['date'][:10]} (machine and versions as in "
        "[Performance](performance.md#automatic-smoothness-issue-17)). Data: the REAL "
        "recording `../shared/data/hd_mouse28_140313`, 32 head-direction cells, the `valid` "
        f"wake epochs, {BIN} bins; `{FORMULA}`. Every method is fitted on the first 80% of "
        f"the valid rows in time order ({r['n_train']:,} rows) and scored on the last 20% "
        f"({r['n_test']:,} rows), on the same rows and the same head angle. Ours are fitted as "
        "`gf.compare` fits a fold; mgcv's is its own cyclic cubic spline "
        "`s(hd, bs=\"cc\", k=20)` (20 even knots, `method=\"REML\"`). Bits/spike: "
        "`glmformula.results.scores.bits_per_spike` on the test rows (null: the test rows' "
        "own mean rate, as `gf.compare`), and the same gain over the training mean rate.",
        "",
        common.markdown_table(
            ["fit", "median held-out bits/spike", "median, training-mean null",
             "sum over cells", "median edf of the term", "cells where it beats auto"],
            ev_rows, "lrrrrr"),
        "",
        f"Best single ridge strength (by median): `Ridge({best['strength']:g})`, "
        f"{best['median']:.4f}; best ridge strength per cell (chosen on the test rows, an "
        f"oracle no single strength reaches): median {h['per_cell_best_ridge_median']:.4f}.",
        "",
        "| target (issue 17) | measured | met |",
        "|:---|---:|:---|",
        f"| median auto >= median mgcv gam REML - 0.002 | "
        f"{h['auto']['median']:.4f} vs {h['mgcv_gam']['median']:.4f} "
        f"(difference {h['auto']['median'] - h['mgcv_gam']['median']:+.4f}) | "
        f"{'yes' if r['met']['vs_mgcv_bits'] else 'NO'} |",
        f"| median auto >= best single ridge strength's | {h['auto']['median']:.4f} vs "
        f"{best['median']:.4f} (`Ridge({best['strength']:g})`, difference "
        f"{h['auto']['median'] - best['median']:+.4f}) | "
        f"{'yes' if r['met']['vs_best_ridge'] else 'NO'} |",
        "",
    ]
    return "\n".join(perf) + "\n", "\n".join(evid) + "\n"


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--units", type=int, default=None,
                        help="mgcv and held-out on the first N cells only (a quick look; "
                             "nothing is written to docs)")
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--no-write", action="store_true", help="do not write the docs")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite the docs from the JSON of an earlier run (no fits)")
    args = parser.parse_args(argv)
    code = common.code_fingerprint()  # of the modules imported above
    if args.report_only:
        perf, evid = report(json.loads(args.json.read_text()))
        common.write_section(PERFORMANCE, perf, "benchmarks/smoothing.py")
        common.write_section(EVIDENCE, evid, "benchmarks/smoothing.py")
        print(perf + "\n" + evid + f"\nwritten to {PERFORMANCE} and {EVIDENCE}")
        return 0
    if not hd_real_fits.DATA.exists():
        print(f"skipped: the real recording is not at {hd_real_fits.DATA}")
        return 0
    if mgcv_version() is None:
        raise SystemExit("Rscript with mgcv not found: apt-get install r-cran-mgcv")
    warnings.simplefilter("ignore")
    command = "flock /tmp/glmformula-bench.lock .venv/bin/python benchmarks/smoothing.py" + \
        "".join(" " + shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    machine_before = common.machine_info()
    data = hd_real_fits.load()

    # ---- speed: ours
    print("ours: smoothing='auto' ...", flush=True)
    auto = time_fit(FORMULA, data, args.repeats)
    res_auto = auto.pop("result")
    strengths = res_auto.smoothing["strength"].to_numpy(float)
    median_strength = float(np.nanmedian(strengths))
    print(f"  median {auto['median']:.3f} s (CPU {auto['cpu_median']:.3f} s), times "
          f"{[round(t, 3) for t in auto['times']]}, load {auto['load_before']}; median "
          f"strength {median_strength:.3g}, median edf "
          f"{float(np.median(res_auto.smoothing['edf'])):.2f}", flush=True)
    print("ours: smoothing=None, Ridge(3e-4) ...", flush=True)
    ridge = time_fit(FORMULA, data, args.repeats, smoothing=None,
                     regularizer=gf.Ridge(FIXED_RIDGE))
    ridge.pop("result")
    print(f"  median {ridge['median']:.3f} s, load {ridge['load_before']}", flush=True)
    fixed_formula = f"spikes ~ cyclic(head_direction, {K}, smooth={median_strength:.6g})"
    print(f"ours: {fixed_formula} ...", flush=True)
    smooth_fixed = time_fit(fixed_formula, data, args.repeats)
    smooth_fixed.pop("result")
    print(f"  median {smooth_fixed['median']:.3f} s, load {smooth_fixed['load_before']}",
          flush=True)
    print("profile of one auto fit ...", flush=True)
    profile = profile_auto(data)
    print(f"  {json.dumps({k: v for k, v in profile.items()})}", flush=True)

    # ---- the rows both tools use
    counts, angle, units = smoothing_mgcv.binned(data)
    if args.units:
        counts, units = counts[:, :args.units], units[:args.units]
    n = len(angle)
    n_train = int(round(TRAIN_FRACTION * n))
    train, test = slice(0, n_train), slice(n_train, n)

    # ---- mgcv, speed (all rows) and held-out (80/20)
    speed = {"ours_auto": auto, "ours_ridge": ridge, "ours_smooth_fixed": smooth_fixed}
    mgcv_heldout = {}
    for engine_name in ("bam", "gam"):
        print(f"mgcv {engine_name} ...", flush=True)
        load_before = load_line()
        full = fit_smooth_cc(angle, counts, K, bounds=PERIOD, even_knots=True,
                             engine=engine_name)
        load_after = load_line()
        split = fit_smooth_cc(angle[train], counts[train], K, x_new=angle[test],
                              bounds=PERIOD, even_knots=True, engine=engine_name)
        speed[engine_name] = {
            "sum": float(np.nansum(full.seconds)), "cpu_sum": float(np.nansum(full.cpu_seconds)),
            "median": float(np.nanmedian(full.seconds)), "seconds": full.seconds.tolist(),
            "edf": full.edf.tolist(), "errors": [e for e in full.errors if e],
            "load_before": load_before, "load_after": load_after}
        mgcv_heldout[engine_name] = {"expected": split.predictions, "edf": split.edf,
                                     "errors": [e for e in split.errors if e]}
        print(f"  sum {speed[engine_name]['sum']:.2f} s over {len(units)} cells, load "
              f"{load_before}", flush=True)

    # ---- held-out: ours on the same design rows
    print("held-out fits (ours) ...", flush=True)
    design = gf.design_matrix(FORMULA, data, bin_size=BIN, epochs="valid")
    rows = design.rows
    assert len(rows) == n
    train_mask = np.zeros(design.valid.shape, bool)
    train_mask[rows[:n_train]] = True
    test_rows = rows[n_train:]
    counts_test, train_rate = counts[test], counts[train].mean(axis=0)
    cols = slice(0, len(units))
    heldout = {}

    def add(key, label, expected, edf=None, extra=None):
        sc = score(counts_test, expected[:, cols], train_rate)
        entry = {"label": label, "per_cell": sc["bits_per_spike"].tolist(),
                 "per_cell_train_null": sc["bits_per_spike_train_mean_null"].tolist(),
                 "median": med(sc["bits_per_spike"]),
                 "median_train_null": med(sc["bits_per_spike_train_mean_null"]),
                 "sum": float(np.nansum(sc["bits_per_spike"])),
                 "median_edf": None if edf is None else med(np.asarray(edf)[cols])}
        heldout[key] = entry | (extra or {})
        print(f"  {label:45s} median {entry['median']:.4f} (train-mean null "
              f"{entry['median_train_null']:.4f})", flush=True)

    fit = heldout_ours(design, train_mask, test_rows, engine.FitOptions())
    add("auto", "ours, `smoothing=\"auto\"` (REML)", fit["expected"], fit["edf"],
        {"strength": fit["strength"].tolist(), "converged": int(fit["converged"].sum())})
    add("mgcv_gam", "mgcv `gam(s(hd, bs=\"cc\", k=20), method=\"REML\")`",
        mgcv_heldout["gam"]["expected"], mgcv_heldout["gam"]["edf"])
    add("mgcv_bam", "mgcv `bam(..., discrete=TRUE, method=\"fREML\")`",
        mgcv_heldout["bam"]["expected"], mgcv_heldout["bam"]["edf"])
    fixed_design = gf.design_matrix(fixed_formula, data, bin_size=BIN, epochs="valid")
    fit = heldout_ours(fixed_design, train_mask, test_rows, engine.FitOptions())
    add("smooth_fixed", f"ours, fixed `smooth={median_strength:.3g}`", fit["expected"])
    for s in RIDGE_GRID:
        fit = heldout_ours(design, train_mask, test_rows,
                           engine.FitOptions(smoothing=None, regularizer=gf.Ridge(s)))
        add(f"ridge_{s:g}", f"ours, `smoothing=None, Ridge({s:g})`", fit["expected"],
            extra={"converged": int(fit["converged"].sum())})
    fit = heldout_ours(design, train_mask, test_rows, engine.FitOptions(smoothing=None))
    add("unpenalised", "ours, `smoothing=None`, no regularizer", fit["expected"],
        extra={"converged": int(fit["converged"].sum())})
    auto_cells = np.asarray(heldout["auto"]["per_cell"])
    for key, e in heldout.items():
        if key != "auto":
            e["wins_vs_auto"] = f"{int(np.sum(np.asarray(e['per_cell']) > auto_cells))} of " \
                                f"{len(auto_cells)}"
    ridge_keys = [f"ridge_{s:g}" for s in RIDGE_GRID]
    best_key = max(ridge_keys, key=lambda k: heldout[k]["median"])
    heldout["best_ridge"] = {"strength": float(best_key.split("_", 1)[1]),
                             "median": heldout[best_key]["median"]}
    per_cell_best = np.nanmax(np.array([heldout[k]["per_cell"] for k in ridge_keys]), axis=0)
    heldout["per_cell_best_ridge_median"] = med(per_cell_best)

    ratios = {"bam_over_auto": speed["bam"]["sum"] / auto["median"],
              "gam_over_auto": speed["gam"]["sum"] / auto["median"],
              "auto_over_ridge": auto["median"] / ridge["median"],
              "auto_over_smooth_fixed": auto["median"] / smooth_fixed["median"]}
    met = {"vs_bam": ratios["bam_over_auto"] >= TARGETS["vs_bam"],
           "vs_gam": ratios["gam_over_auto"] >= TARGETS["vs_gam"],
           "auto_vs_fixed": max(ratios["auto_over_ridge"],
                                ratios["auto_over_smooth_fixed"]) <= TARGETS["auto_vs_fixed"],
           "vs_mgcv_bits": heldout["auto"]["median"] >= heldout["mgcv_gam"]["median"]
           + TARGETS["vs_mgcv_bits"],
           "vs_best_ridge": heldout["auto"]["median"] >= heldout["best_ridge"]["median"]}
    result = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "code": code,
        "command": command, "data": "REAL: hd_mouse28_140313, valid epochs",
        "formula": FORMULA, "bin_size": BIN, "repeats": args.repeats,
        "n_rows": n, "n_train": n_train, "n_test": n - n_train, "n_units": len(units),
        "median_strength": median_strength,
        "auto_strength": strengths.tolist(),
        "auto_edf": res_auto.smoothing["edf"].to_numpy(float).tolist(),
        "speed": speed, "profile": profile, "heldout": heldout, "ratios": ratios,
        "targets": TARGETS, "met": met,
        "machine": machine_before | {"load_before": machine_before["load"],
                                     "load_after": os.getloadavg()},
        "versions": {"R": smoothing_mgcv.r_version(), "mgcv": mgcv_version(),
                     **common.versions(["numpy", "jax", "pynapple", "glmformula"])},
    }
    args.json.write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(f"wrote {args.json}")
    print(json.dumps({"ratios": ratios, "met": met}, indent=1))
    perf, evid = report(result)
    print(perf)
    print(evid)
    if not args.no_write and not args.units:
        common.write_section(PERFORMANCE, perf, "benchmarks/smoothing.py")
        common.write_section(EVIDENCE, evid, "benchmarks/smoothing.py")
        print(f"written to {PERFORMANCE} and {EVIDENCE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
