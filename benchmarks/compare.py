"""Cross-validated comparison of 8 nested models: ``gf.compare`` against the cross-validation of
its largest model alone, and against the same comparison written with NeMoS.

Run by hand from the repository root (not part of the tests; on a shared machine wrap it in
``flock /tmp/glmformula-bench.lock``)::

    python benchmarks/compare.py --repeats 3 --json run.json   # writes docs/performance.md
    python benchmarks/compare.py --wake 60 --no-write   # a quick look (6,000 bins)
    python benchmarks/compare.py --nemos-fits 6      # run every NeMoS fit (no extrapolation)
    python benchmarks/compare.py --wake 1000 --skip-nemos --tag "1e5 bins"   # 1e5 bins, gf only
    python benchmarks/compare.py --report run.json   # re-render a saved run's section

Data: ``gf.datasets.head_direction`` with 50 units (``coupling_strength=0.03``: with the
default 0.15 fifty coupled units fire at ~120 Hz), ``--wake`` seconds of wake at 10 ms bins
(default 200 s = 20,000 bins), plus two covariates computed from it as a user would: the
angular head speed ``speed`` (rad/s, from the 40 Hz head angle, clipped to 5.9) and the
population spike count ``population`` (all units, per 10 ms bin). Eight nested models, each
adding one term to the previous one::

    null        spikes ~ 1
    hd          + cyclic(head_direction, 12)
    speed       + bspline(speed, 5, range=(0, 6))
    gain        + cyclic(head_direction, 12):speed        (speed gain of the tuning)
    past_speed  + filter(speed, 4, window=200ms)
    history     + history(8, log, window=100ms)
    population  + filter(population, 4, window=100ms)     (coupling to the population rate)
    coupling    + coupling(all)                           (8 filters x 49 other units)

5 contiguous folds, ``Ridge(1e-4)`` (``--ridge``) on both sides, float64 on both sides.

What is measured, each in a fresh interpreter (so every time includes JAX compilation):

(i)   ``gf.compare(models, data, bin_size="10ms", epochs="wake", cv=5, regularizer=...)``,
      from the pynapple objects: binning, features, 8 x (1 full-data + 5 fold) fits, scores.
(ii)  the same call with the largest model alone; target (i) / (ii) <= 2.
      ``--repeats N`` runs (ii) and (i) alternately N times and reports medians.
(iii) the same comparison written with NeMoS 0.2.8: spike counts ``TsGroup.count``, the angle,
      speed and population count sampled at bin centres with numpy (circular interpolation for
      the angle), features from NeMoS basis objects (``CyclicBSplineEval``, ``BSplineEval``,
      ``CyclicBSplineEval * IdentityEval``, ``RaisedCosineLogConv`` on the speed, the population
      count and the spike counts), one ``PopulationGLM(regularizer="Ridge",
      solver_name="LBFGS")`` per (model, fold) with a ``feature_mask`` where units read
      different columns (history: own filtered counts only), the same contiguous folds, held-out
      log-likelihood and bits/spike computed as glmformula does. Target: (iii) / (i) >= 5.

NeMoS is slow, so by default only ``--nemos-fits 2`` of each model's 6 fits run (folds 0 and 1;
the first includes compilation); the other 4 (folds 2-4 and the full-data fit) are counted at
the time of the second (warm) fit, and the total is marked as extrapolated. That
under-counts NeMoS (a full-data fit has 25% more rows than a fold fit). ``spikes ~ 1`` is closed
form on both sides. NeMoS runs without warm starts, as a loop over models and folds is usually
written; glmformula warm-starts each fold from the model's full-data fit.

Wall and CPU time (all threads of the process) are both reported. On a machine shared with
other jobs a run that has to wait for a core shows it as a lower CPU / wall ratio; the CPU-time
ratios are then the less disturbed comparison.

Scores: glmformula's and NeMoS's held-out bits/spike (pooled over units) on the folds NeMoS ran
are compared model by model. They are not expected to agree to the last digit: the ridge
problems differ slightly (glmformula constrains terms that span the constant to average zero,
NeMoS keeps them unconstrained and lets the penalty pick the minimum-norm weights), and NeMoS's
L-BFGS stops at its own tolerance. The features themselves are compared column by column.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402

BIN = 0.01
CV = 5
N_UNITS = 50
TERMS = [
    ("null", "1"),
    ("hd", "cyclic(head_direction, 12)"),
    ("speed", "bspline(speed, 5, range=(0, 6))"),
    ("gain", "cyclic(head_direction, 12):speed"),
    ("past_speed", "filter(speed, 4, window=200ms)"),
    ("history", "history(8, log, window=100ms)"),
    ("population", "filter(population, 4, window=100ms)"),
    ("coupling", "coupling(all)"),
]
SPEED_MAX = 5.9  # rad/s; the spline's range is (0, 6)


def nested_models() -> dict[str, str]:
    out, rhs = {}, []
    for name, term in TERMS:
        rhs.append(term)
        out[name] = "spikes ~ " + " + ".join(rhs)
    return out


# --------------------------------------------------------------------------- data


def simulate(path: Path, n_units: int, wake: float, seed: int) -> dict:
    """Simulate once and save spike times and the head angle (children load the file)."""
    import glmformula as gf

    rec = gf.datasets.head_direction(seed=seed, n_units=n_units, duration=wake * 1.5,
                                     coupling_strength=0.03)
    ep = rec["wake"]
    spikes = rec["spikes"].restrict(ep)
    times = [spikes[u].t for u in spikes.keys()]
    hd = rec["head_direction"]
    np.savez(path, spike_times=np.concatenate(times),
             spike_unit=np.concatenate([np.full(len(t), i) for i, t in enumerate(times)]),
             angle_t=hd.t, angle=hd.d, wake_start=ep.start, wake_end=ep.end)
    rates = np.array([len(t) for t in times]) / ep.tot_length()
    return {"n_spikes": int(sum(len(t) for t in times)),
            "rate_range": [float(rates.min()), float(np.median(rates)), float(rates.max())]}


def load(path: Path) -> dict:
    """The simulated recording plus the two derived covariates, as pynapple objects."""
    import pynapple as nap

    d = np.load(path)
    wake = nap.IntervalSet(d["wake_start"], d["wake_end"])
    n = int(d["spike_unit"].max()) + 1
    spikes = nap.TsGroup({i: nap.Ts(d["spike_times"][d["spike_unit"] == i]) for i in range(n)},
                         time_support=wake)
    t, angle = d["angle_t"], d["angle"]
    speed = np.minimum(np.abs(np.gradient(np.unwrap(angle), t)), SPEED_MAX)
    population = spikes.count(BIN, wake).sum(axis=1)
    return {"spikes": spikes, "wake": wake,
            "head_direction": nap.Tsd(t=t, d=angle, time_support=wake),
            "speed": nap.Tsd(t=t, d=speed, time_support=wake),
            "population": nap.Tsd(t=population.t, d=np.asarray(population.d, float),
                                  time_support=wake)}


# --------------------------------------------------------------------------- glmformula child


def child_gf(path: Path, which: str, ridge: float, profile: str | None) -> dict:
    import glmformula as gf

    compare_module = sys.modules["glmformula.compare.compare"]
    data = load(path)
    models = nested_models()
    if which == "largest":
        models = {"coupling": models["coupling"]}
    task_seconds: dict = {}
    outputs: dict = {}
    run_task = compare_module.Comparison.run_task

    def timed_task(self, name, fold, *args, **kwargs):  # each (model, fold) fit: time, scores
        start = time.perf_counter()
        out = run_task(self, name, fold, *args, **kwargs)
        task_seconds[f"{name}|{fold}"] = time.perf_counter() - start
        outputs[(name, fold)] = out
        return out

    compare_module.Comparison.run_task = timed_task
    warnings.simplefilter("ignore")
    profiler = None
    if profile:
        import cProfile
        profiler = cProfile.Profile()
        profiler.enable()
    start, start_cpu = time.perf_counter(), time.process_time()
    # smoothing=None: the fixed-ridge comparison this benchmark has timed since 2026-11-25
    # (gf.compare's default became smoothing="auto" later; its cost is benchmarks/smoothing*)
    table = gf.compare(models, data, bin_size="10ms", epochs="wake", cv=CV,
                       regularizer=gf.Ridge(ridge), smoothing=None)
    wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    if profiler is not None:
        import pstats
        profiler.disable()
        with open(profile, "w") as fh:
            pstats.Stats(profiler, stream=fh).sort_stats("cumulative").print_stats(40)
    fold_bps = {}
    for name in models:
        per_fold = []
        for fold in range(CV):
            o = outputs[(name, fold)]
            per_fold.append(float(np.nansum(o["bps"] * o["spikes"]) / o["spikes"].sum()))
        fold_bps[name] = per_fold
    columns = ["n_params", "train_bits_per_spike", "cv_bits_per_spike", "cv_bits_per_spike_se",
               "delta_cv_bits_per_spike", "lr_stat", "lr_df", "lr_pvalue", "nested_in",
               "n_rows", "converged"]
    rows = {name: {c: (v.item() if hasattr(v, "item") else v) for c, v in
                   table.loc[name, columns].items()} for name in table.index}
    return {"wall": wall, "cpu": cpu, "table": rows, "fold_bps": fold_bps,
            "task_seconds": task_seconds}


# --------------------------------------------------------------------------- NeMoS child


def nemos_features(data: dict):
    """Counts (T, U) and the feature blocks, built with NeMoS basis objects on a 10 ms grid
    that tiles the wake epoch from its start (glmformula's grid)."""
    import nemos as nmo

    from glmformula.bases.raised_cosine import resolvable_time_scaling

    wake = data["wake"]
    start, end = float(wake.start[0]), float(wake.end[0])
    n = int(np.floor((end - start) / BIN + 1e-9))
    centres = start + BIN * (np.arange(n) + 0.5)
    counts = np.asarray(data["spikes"].count(BIN, wake).values[:n], float)

    def at_centres(tsd, circular=False):
        values = np.unwrap(tsd.d) if circular else np.asarray(tsd.d, float)
        out = np.interp(centres, tsd.t, values)
        out[(centres < tsd.t[0]) | (centres > tsd.t[-1])] = np.nan
        return np.mod(out, 2 * np.pi) if circular else out

    angle = at_centres(data["head_direction"], circular=True)
    speed = at_centres(data["speed"])
    population = at_centres(data["population"])

    def conv(k, window_bins):  # glmformula's log stretch (NeMoS's own for long windows)
        return nmo.basis.RaisedCosineLogConv(
            k, window_bins, time_scaling=resolvable_time_scaling(window_bins, k))

    two_pi = (0.0, 2 * np.pi)
    blocks = {
        "hd": nmo.basis.CyclicBSplineEval(12, bounds=two_pi).compute_features(angle),
        "speed": nmo.basis.BSplineEval(5, bounds=(0.0, 6.0)).compute_features(speed),
        "gain": (nmo.basis.CyclicBSplineEval(12, bounds=two_pi)
                 * nmo.basis.IdentityEval()).compute_features(angle, speed),
        "past_speed": conv(4, 20).compute_features(speed),
        "population": conv(4, 10).compute_features(population),
        "bank": conv(8, 10).compute_features(counts),  # unit u: columns 8u .. 8u+7
    }
    return counts, {k: np.asarray(v, float) for k, v in blocks.items()}


def nemos_model_columns(sizes: dict, n_units: int) -> dict:
    """Model -> (column indices into [hd|speed|gain|past_speed|population|bank], mask or None)."""
    offsets, at = {}, 0
    for key in ["hd", "speed", "gain", "past_speed", "population", "bank"]:
        offsets[key] = np.arange(at, at + sizes[key])
        at += sizes[key]
    shared_order = ["hd", "speed", "gain", "past_speed"]
    out, shared = {}, []
    for name, _ in TERMS[1:]:
        if name in shared_order:
            shared = shared + [name]
            out[name] = (np.concatenate([offsets[k] for k in shared]), None)
            continue
        if name == "history":
            base = np.concatenate([offsets[k] for k in shared])
        elif name == "population":
            base = np.concatenate([offsets[k] for k in shared + ["population"]])
        cols = np.concatenate([base, offsets["bank"]])
        mask = np.zeros((len(cols), n_units))
        mask[: len(base)] = 1.0
        if name == "coupling":
            mask[:] = 1.0
        else:  # own filtered counts only
            for u in range(n_units):
                mask[len(base) + 8 * u: len(base) + 8 * (u + 1), u] = 1.0
        out[name] = (cols, mask)
    return out


def heldout_scores(counts, expected):
    """Per-unit log-likelihood (nats, with log y!) and bits/spike against the mean rate of the
    same rows, as glmformula computes them."""
    from scipy.special import gammaln, xlogy

    def ll(mu):
        return (xlogy(counts, mu) - mu - gammaln(counts + 1)).sum(axis=0)

    spikes = counts.sum(axis=0)
    gain = ll(expected) - ll(np.broadcast_to(counts.mean(axis=0), counts.shape))
    return gain / (np.maximum(spikes, 1) * np.log(2)), spikes


def pooled_bits_per_spike(counts, expected) -> float:
    """Held-out bits/spike pooled over units (:func:`heldout_scores`' gains over all spikes),
    as ``gf.compare`` scores a fold."""
    bps, spikes = heldout_scores(counts, expected)
    return float(np.sum(bps * spikes) / spikes.sum())


def penalised_objective(eta, counts, weights, ridge: float) -> float:
    """Both libraries' objective, summed over units: mean Poisson negative log-likelihood
    (without log y!) over the training rows + ridge / 2 * |w|^2."""
    nll = np.mean(np.exp(eta) - counts * eta, axis=0)
    return float(np.sum(nll + 0.5 * ridge * np.sum(np.asarray(weights) ** 2, axis=0)))


def child_nemos(path: Path, ridge: float, n_fits: int) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)
    import nemos as nmo

    warnings.simplefilter("ignore")
    data = load(path)
    start = time.perf_counter()
    counts, blocks = nemos_features(data)
    feature_seconds = time.perf_counter() - start
    order = ["hd", "speed", "gain", "past_speed", "population", "bank"]
    X = np.concatenate([blocks[k] for k in order], axis=1)
    valid = ~np.isnan(X).any(axis=1)
    rows = np.flatnonzero(valid)
    tests = [np.isin(np.arange(len(valid)), block) for block in np.array_split(rows, CV)]
    U = counts.shape[1]
    models = nemos_model_columns({k: blocks[k].shape[1] for k in order}, U)
    fits = list(range(max(1, min(n_fits, CV))))  # folds run; the full-data fit only with 6
    run_full = n_fits > CV
    results, objective = {}, {}
    for name, (cols, mask) in models.items():
        times, fold_bps = [], {}
        for fold in fits + (["full"] if run_full else []):
            train = valid & ~tests[fold] if fold != "full" else valid
            Xtr, Ytr = X[train][:, cols], counts[train]
            t0, c0 = time.perf_counter(), time.process_time()
            model = nmo.glm.PopulationGLM(regularizer="Ridge", regularizer_strength=ridge,
                                          solver_name="LBFGS", feature_mask=mask)
            model.fit(Xtr, Ytr)
            coef, intercept = np.asarray(model.coef_), np.asarray(model.intercept_)
            test = tests[fold] if fold != "full" else valid
            eta = X[test][:, cols] @ coef + intercept
            bps, spikes = heldout_scores(counts[test], np.exp(np.clip(eta, -700, 700)))
            times.append((time.perf_counter() - t0, time.process_time() - c0))
            if fold != "full":
                fold_bps[fold] = float(np.sum(bps * spikes) / spikes.sum())
            if fold == 0:
                objective[name] = penalised_objective(Xtr @ coef + intercept, Ytr, coef, ridge)
        warm = [t for t in times[1:]] or times
        mean_warm = (float(np.mean([t[0] for t in warm])), float(np.mean([t[1] for t in warm])))
        missing = CV + 1 - len(times)
        results[name] = {"measured": [t[0] for t in times], "measured_cpu": [t[1] for t in times],
                         "n_missing": missing,
                         "total": sum(t[0] for t in times) + missing * mean_warm[0],
                         "total_cpu": sum(t[1] for t in times) + missing * mean_warm[1],
                         "fold_bps": fold_bps}
        print(f"nemos {name}: {[round(t[0], 1) for t in times]} s", file=sys.stderr, flush=True)
    # Not timed: glmformula's fold-0 fits, scored by the same objective as NeMoS's (their
    # weights are in the original basis, so they are points of NeMoS's problem too).
    import glmformula as gf
    compare_module = sys.modules["glmformula.compare.compare"]
    comparison = compare_module.Comparison(
        compare_module._named({k: v for k, v in nested_models().items() if k in models}), data,
        bin_size="10ms", epochs="wake", cv=CV, regularizer=gf.Ridge(ridge), solver="auto",
        dtype=None)
    assert int(comparison.valid.sum()) == int(valid.sum())
    train_rows = np.flatnonzero(comparison.valid & ~comparison.folds[0])
    for name in models:
        fit = comparison.fit(name, comparison.valid & ~comparison.folds[0])
        design = comparison.designs[name]
        weights, intercepts = fit.weights.copy(), fit.intercepts.copy()
        # glmformula constrains a spline term to average zero over the rows, NeMoS lets the
        # ridge choose; for a partition of unity, moving the weights' mean into the intercept
        # gives the same rates with the smaller penalty, the point NeMoS's problem prefers.
        for term in comparison.model(name).constraints:
            block = design.plan.term_storage[term]
            if np.allclose(design.storage[train_rows, block].sum(axis=1), 1.0, atol=1e-9):
                shift = weights[block].mean(axis=0)
                weights[block] -= shift
                intercepts += shift
        eta = design.storage[train_rows] @ weights + intercepts
        results[name]["objective_gf"] = penalised_objective(
            eta, design.counts[train_rows].astype(float), weights, ridge)
        results[name]["objective_nemos"] = objective[name]
    # Not timed: the features against glmformula's design of the largest model.
    design = gf.design_matrix(nested_models()["coupling"], data, bin_size="10ms", epochs="wake",
                              dtype="float64")
    ours = design.to_numpy()[:, 1:]  # drop the intercept column
    slices = design.term_slices
    theirs = X[valid]
    canonical = {name: gf.parse(f"spikes ~ {term}").terms[0] for name, term in TERMS[1:]}
    pairs = [(canonical[key], key) for key in ["hd", "speed", "gain", "past_speed", "population"]]
    at = {k: i for i, k in enumerate(order)}
    offsets = np.cumsum([0] + [blocks[k].shape[1] for k in order])
    diffs = {}
    for term, key in pairs:
        a = ours[:, slices[term]]
        b = theirs[:, offsets[at[key]]: offsets[at[key] + 1]]
        diffs[key] = float(np.max(np.abs(a - b)))
    bank = [s for t, s in slices.items() if t.startswith("history")][0]
    diffs["bank"] = float(np.max(np.abs(ours[:, bank] - theirs[:, offsets[at["bank"]]:])))
    return {"feature_seconds": feature_seconds, "models": results,
            "rows": int(valid.sum()), "gf_rows": int(ours.shape[0]), "feature_diff": diffs,
            "total": feature_seconds + sum(r["total"] for r in results.values()),
            "total_cpu": sum(r["total_cpu"] for r in results.values()),
            "extrapolated": any(r["n_missing"] for r in results.values()), "fits": n_fits}


# --------------------------------------------------------------------------- report


def report(args, sim, largest, everything, nemos, load_before, load_after, command) -> str:
    info = common.machine_info()
    models = nested_models()
    lines = [
        f"## Model comparison: 8 nested models, 5-fold CV, 50 units, "
        f"{int(round(args.wake / BIN)):,} bins (`benchmarks/compare.py`)",
        "",
        f"Generated by `{command}` on {datetime.date.today().isoformat()}.",
        f"Machine: {common.machine_line(info)}; {common.load_line(load_before, load_after)}.",
        f"Versions: {common.versions_line(['numpy', 'jax', 'jaxlib', 'pynapple', 'nemos'])}.",
        "",
        f"Data: `gf.datasets.head_direction(seed={args.seed}, n_units={N_UNITS}, duration="
        f"{args.wake * 1.5:g}, coupling_strength=0.03)`, {args.wake:g} s of wake at 10 ms "
        f"bins ({int(round(args.wake / BIN)):,} bins, {everything['table']['null']['n_rows']:,} "
        f"used by every model), {sim['n_spikes']:,} spikes (median rate "
        f"{sim['rate_range'][1]:.1f} Hz, {sim['rate_range'][0]:.1f}-{sim['rate_range'][2]:.1f}); "
        f"`speed` = angular head speed, `population` = all units' count per bin. "
        f"`Ridge({args.ridge:g})` and float64 on both sides; 5 contiguous folds.",
        "",
    ]
    # timing summary: medians of wall and of CPU time over the fresh processes, separately
    def med(r, key):
        return float(np.median(r.get(key + "s", [r[key]])))

    def runs(r):
        if len(r.get("walls", [])) < 2:
            return ""
        return ("; runs in order: wall " + ", ".join(f"{w:.1f}" for w in r["walls"])
                + " s, CPU " + ", ".join(f"{c:.1f}" for c in r["cpus"]) + " s")

    n_runs = len(everything.get("walls", [1]))
    median = f"medians of {n_runs} fresh processes" if n_runs > 1 else "one fresh process"
    wall_i, cpu_i = med(everything, "wall"), med(everything, "cpu")
    wall_ii, cpu_ii = med(largest, "wall"), med(largest, "cpu")
    rows = [
        ["(i) `gf.compare`, 8 models", f"{wall_i:.1f}", f"{cpu_i:.1f}",
         f"{cpu_i / wall_i:.2f}", f"48 fits, {median}{runs(everything)}"],
        ["(ii) `gf.compare`, largest model alone", f"{wall_ii:.1f}", f"{cpu_ii:.1f}",
         f"{cpu_ii / wall_ii:.2f}", f"6 fits, {median}{runs(largest)}"],
    ]
    approx = "~" if nemos and nemos["extrapolated"] else ""
    if nemos:
        n_measured = sum(len(r["measured"]) for r in nemos["models"].values())
        rows.append(["(iii) NeMoS, the same 8 models", f"{approx}{nemos['total']:.0f}",
                     f"{approx}{nemos['total_cpu']:.0f}",
                     f"{nemos['total_cpu'] / nemos['total']:.2f}",
                     f"{n_measured} of 41 fits run" + (", the rest extrapolated"
                                                     if nemos["extrapolated"] else "")])
    lines += [common.markdown_table(["what", "wall (s)", "CPU (s)", "CPU / wall", "note"], rows,
                                    "lrrrl"), ""]

    def verdict(value_wall, value_cpu, ok) -> str:
        met = [name for name, v in (("wall", value_wall), ("CPU", value_cpu)) if ok(v)]
        if len(met) == 2:
            return "met"
        return f"met in {met[0]} time only" if met else "missed"

    pairs = ""
    if n_runs > 1:
        pairs = "; pair by pair in wall time " + ", ".join(
            f"{a / b:.2f}" for a, b in zip(everything["walls"], largest["walls"]))
    lines += [f"* (i) / (ii) = **{wall_i / wall_ii:.2f}** in wall time, "
              f"**{cpu_i / cpu_ii:.2f}** in CPU time (target <= 2: "
              f"{verdict(wall_i / wall_ii, cpu_i / cpu_ii, lambda v: v <= 2)}{pairs})."]
    if nemos:
        sw, sc = nemos["total"] / wall_i, nemos["total_cpu"] / cpu_i
        lines.append(f"* (iii) / (i) = **{approx}{sw:.1f}x** in wall time, "
                     f"**{approx}{sc:.1f}x** in CPU time (target >= 5x: "
                     f"{verdict(sw, sc, lambda v: v >= 5)}).")
    lines += ["* CPU / wall is how many of the 2 cores a run kept busy on average. Both "
              "libraries use both cores when they have them (XLA's thread pool), so a value "
              "well below the others means that run waited for a core held by another job: its "
              "wall time then overstates its cost, and the CPU-time ratios are the less "
              "disturbed comparison.", ""]
    # per model
    per_model = []
    for name in models:
        g = [v for k, v in everything["task_seconds"].items() if k.split("|")[0] == name]
        n = nemos["models"].get(name) if nemos else None
        cells = [name, str(everything["table"][name]["n_params"] // N_UNITS),
                 f"{g[0]:.2f}" if g else "-",
                 f"{np.median(g[1:]):.2f}" if len(g) > 1 else "-", f"{sum(g):.1f}"]
        if n:
            cells += [", ".join(f"{t:.1f}" for t in n["measured"]),
                      f"{approx if n['n_missing'] else ''}{n['total']:.0f}"]
        elif nemos:
            cells += ["closed form", "0"]
        per_model.append(cells)
    headers = ["model", "params / unit", "gf full fit (s)", "gf fold fit, median (s)",
               "gf total (s)"]
    if nemos:
        headers += ["NeMoS fits run (s)", "NeMoS total (s)"]
    outside = everything["wall"] - sum(everything["task_seconds"].values())
    lines += ["Time per model (wall; glmformula's from inside the median run of (i), so the "
              f"binning and feature building, about {outside:.1f} s, are not in any row"
              + (f"; NeMoS's feature building took {nemos['feature_seconds']:.1f} s"
                 if nemos else "") + "):", "",
              common.markdown_table(headers, per_model), ""]
    # scores
    table_rows = []
    for name, r in everything["table"].items():
        lr = "" if r["lr_stat"] is None or np.isnan(r["lr_stat"]) else \
            f"{r['lr_stat']:.0f} ({int(r['lr_df'])} df, p={r['lr_pvalue']:.1g}) vs {r['nested_in']}"
        table_rows.append([name, f"`{models[name].split('~ ')[1].split(' + ')[-1]}`",
                           r["n_params"], f"{r['train_bits_per_spike']:.4f}",
                           f"{r['cv_bits_per_spike']:.4f} ± {r['cv_bits_per_spike_se']:.4f}",
                           f"{r['delta_cv_bits_per_spike']:.4f}", lr])
    lines += ["The comparison table of (i) (bits/spike pooled over units; ± is the s.e. over "
              "folds):", "",
              common.markdown_table(["model", "adds", "n_params", "train bits/spike",
                                     "CV bits/spike", "difference to best", "LR test"],
                                    table_rows, "llrrrrl"), ""]
    if nemos:
        agree = []
        for name in models:
            n = nemos["models"].get(name)
            if not n:
                continue
            for fold, value in n["fold_bps"].items():
                ours = everything["fold_bps"][name][int(fold)]
                objective = ["", ""]
                if str(fold) == "0" and "objective_gf" in n:
                    objective = [f"{n['objective_gf']:.6f}",
                                 f"{n['objective_nemos'] - n['objective_gf']:+.6f}"]
                agree.append([name, fold, f"{ours:.5f}", f"{value:.5f}",
                              f"{value - ours:+.5f}", *objective])
        lines += [
            "Held-out bits/spike (pooled over units) of the folds NeMoS ran, both libraries "
            f"(features equal to {max(nemos['feature_diff'].values()):.1e}, max abs over "
            f"columns; rows used: glmformula {nemos['gf_rows']:,}, NeMoS {nemos['rows']:,}):", "",
            common.markdown_table(["model", "fold", "glmformula", "NeMoS", "NeMoS - gf",
                                   "gf objective (fold 0)", "NeMoS - gf objective"], agree),
            "",
            "The objective is the one both libraries minimise (mean Poisson negative "
            "log-likelihood without log y! over the fold's training rows, plus the ridge), "
            "summed over the 50 units, at each library's fold-0 weights (glmformula's with each "
            "constrained spline's mean weight moved into the intercept: the same rates, the "
            "penalty NeMoS's unconstrained problem would charge). glmformula's weights are "
            "thus a point of NeMoS's problem, so a clearly positive difference means NeMoS "
            "stopped short of the optimum; a small negative one is the slightly different "
            "ridge problem glmformula solves.", ""]
    return "\n".join(lines) + "\n"


def _median_run(runs: list[dict]) -> dict:
    """The run with the median wall time (the lower middle one for an even count), with the
    wall and CPU times of all runs attached."""
    ordered = sorted(runs, key=lambda r: r["wall"])
    out = dict(ordered[(len(ordered) - 1) // 2])
    out["walls"] = [r["wall"] for r in runs]
    out["cpus"] = [r["cpu"] for r in runs]
    return out


# --------------------------------------------------------------------------- main


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wake", type=float, default=200.0, help="seconds of wake (10 ms bins)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ridge", type=float, default=1e-4)
    parser.add_argument("--nemos-fits", type=int, default=2,
                        help="NeMoS fits run per model (folds 0..n-1; 6: all folds + full fit)")
    parser.add_argument("--skip-nemos", action="store_true")
    parser.add_argument("--repeats", type=int, default=1,
                        help="fresh-process runs of (ii) and (i), alternated; medians reported")
    parser.add_argument("--profile", metavar="FILE", help="cProfile (i) into FILE")
    parser.add_argument("--timeout", type=float, default=3600.0, help="per child process (s)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "performance.md"))
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--json", metavar="FILE", help="also save the raw results there")
    parser.add_argument("--report", metavar="FILE",
                        help="only render the report of results saved with --json")
    parser.add_argument("--tag", default="", help="write a separate section (markers "
                        "'benchmarks/compare.py TAG'), e.g. for a larger glmformula-only run")
    parser.add_argument("--child", nargs=2, metavar=("WHAT", "DATA"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        what, path = args.child[0], Path(args.child[1])
        if what == "nemos":
            common.emit(child_nemos(path, args.ridge, args.nemos_fits))
        else:
            common.emit(child_gf(path, what, args.ridge, args.profile))
        return

    if args.report:  # re-render a saved run (e.g. after a change of the report's layout)
        saved = json.loads(Path(args.report).read_text())
        saved_args = argparse.Namespace(**saved["args"])
        text = report(saved_args, saved["sim"], saved["largest"], saved["everything"],
                      saved["nemos"], saved["load_before"], saved["load_after"],
                      saved["command"])
        print(text)
        if not args.no_write:
            common.write_section(Path(args.out), text, saved_args.tag)
        return

    command = "python benchmarks/compare.py" + "".join(
        " " + shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    load_before = os.getloadavg()
    script = str(Path(__file__).resolve())
    env = {"PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    common_args = ["--ridge", str(args.ridge), "--nemos-fits", str(args.nemos_fits)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.npz"
        start = time.perf_counter()
        sim = simulate(path, N_UNITS, args.wake, args.seed)
        print(f"simulated {args.wake:g} s x {N_UNITS} units in {time.perf_counter() - start:.0f} s",
              flush=True)
        extra = ["--profile", args.profile] if args.profile else []
        largests, everythings = [], []
        for _ in range(args.repeats):  # alternate, so that a change of load hits both
            largests.append(common.run_child(
                script, ["--child", "largest", str(path), *common_args],
                timeout=args.timeout, env=env))
            print(f"(ii) largest alone: {largests[-1]['wall']:.1f} s", flush=True)
            everythings.append(common.run_child(
                script, ["--child", "all", str(path), *common_args, *extra],
                timeout=args.timeout, env=env))
            print(f"(i) 8 models: {everythings[-1]['wall']:.1f} s "
                  f"(ratio {everythings[-1]['wall'] / largests[-1]['wall']:.2f})", flush=True)
        largest, everything = _median_run(largests), _median_run(everythings)
        nemos = None
        if not args.skip_nemos:
            nemos = common.run_child(script, ["--child", "nemos", str(path), *common_args],
                                     timeout=args.timeout, env=env)
            print(f"(iii) NeMoS: {nemos['total']:.0f} s"
                  f"{' (extrapolated)' if nemos['extrapolated'] else ''}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"args": vars(args), "sim": sim, "largest": largest, "everything": everything,
             "nemos": nemos, "load_before": load_before, "load_after": os.getloadavg(),
             "command": command}))
    text = report(args, sim, largest, everything, nemos, load_before, os.getloadavg(), command)
    print()
    print(text)
    if not args.no_write:
        common.write_section(Path(args.out), text,
                             "benchmarks/compare.py" + (f" {args.tag}" if args.tag else ""))
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
