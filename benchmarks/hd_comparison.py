"""Real head-direction cells: does head direction explain the spikes, and do spike history and
coupling add to it? A cross-validated comparison of four nested models on a real recording.

Run by hand from the repository root (on a shared machine wrap it in
``flock /tmp/glmformula-bench.lock``)::

    python benchmarks/hd_comparison.py                 # whole session, writes
                                                       # docs/comparison_head_direction.md
    python benchmarks/hd_comparison.py --minutes 10 --no-write   # a quick look

Data: ``../shared/data/hd_mouse28_140313`` beside the repository (Mouse28-140313, Peyrache et
al. 2015: 32 head-direction cells, 17 in the anterodorsal thalamus (ADn) and 15 in the
postsubiculum (PoS), head angle at 40 Hz), loaded as in ``examples/head_direction.py``: the fit
uses the ``valid`` epochs (wake minus 21 tracking gaps), the first ``--minutes`` of them (default:
all). The script exits with a message (status 0) when the folder is absent.

Models (10 ms bins, 5 contiguous folds, ``Ridge(3e-4)`` as in ``examples/head_direction.py``;
every model is fitted and scored on the same rows, those after the first 100 ms of each epoch)::

    null       spikes ~ 1
    hd         spikes ~ cyclic(head_direction, 12)
    hd+hist    spikes ~ cyclic(head_direction, 12) + history(8, log, window=100ms)
    full       spikes ~ cyclic(head_direction, 12) + history(8, log, window=100ms) + coupling(all)

Reported: the pooled comparison table (``gf.compare``), and per unit the cross-validated gain of
each added term (its mean over folds, and whether it exceeds two standard errors over folds).
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "hd_mouse28_140313"
FILE = DATA / "Mouse28-140313_wake_hd.npz"
MODELS = {
    "null": "spikes ~ 1",
    "hd": "spikes ~ cyclic(head_direction, 12)",
    "hd+hist": "spikes ~ cyclic(head_direction, 12) + history(8, log, window=100ms)",
    "full": "spikes ~ cyclic(head_direction, 12) + history(8, log, window=100ms)"
            " + coupling(all)",
}
STEPS = [("hd", "null", "head direction"), ("hd+hist", "hd", "spike history"),
         ("full", "hd+hist", "coupling")]


def load(minutes: float | None):
    """Spikes (TsGroup with name and region), head angle (Tsd) and the epochs to fit."""
    import pynapple as nap

    d = np.load(FILE)
    wake = nap.IntervalSet(d["wake_start"], d["wake_end"])
    valid = nap.IntervalSet(d["valid_start"], d["valid_end"])
    spikes = nap.TsGroup({i: nap.Ts(d["spike_times"][d["spike_unit"] == i])
                          for i in range(len(d["unit_ids"]))}, time_support=wake,
                         metadata={"name": d["unit_ids"].astype(str),
                                   "region": d["unit_region"].astype(str)})
    angle = nap.Tsd(t=d["angle_t"], d=d["angle"], time_support=wake)
    epochs = valid
    if minutes:
        start = float(wake.start[0])
        epochs = valid.intersect(nap.IntervalSet(start, start + 60.0 * minutes))
    return {"spikes": spikes, "head_direction": angle}, epochs


def run(data, epochs, ridge: float, cv: int):
    """gf.compare's table and every model's per-fold, per-unit held-out scores.

    It runs the (model, fold) fits exactly as ``gf.compare`` does (``Comparison.tasks`` /
    ``run_task``, the same code) so that the per-fold scores behind the table, which
    ``gf.compare`` does not return, are available for the cell-by-cell summary.
    """
    import glmformula as gf
    from glmformula.compare.compare import _named, comparison_table
    from glmformula.compare.comparison import Comparison, assemble

    formulas = _named(MODELS)
    comparison = Comparison(formulas, data, bin_size="10ms", epochs=epochs, cv=cv,
                            regularizer=gf.Ridge(ridge), solver="auto", dtype=None)
    outputs = {task: output for name in formulas
               for task, output in comparison.run_model(name).items()}
    scores = {name: assemble(name, outputs, cv) for name in formulas}
    unit_ids = comparison.designs["null"].unit_ids
    return comparison_table(formulas, scores, unit_ids, per_unit=False), scores, unit_ids


def unit_gains(scores, unit_ids) -> pd.DataFrame:
    """Per unit and added term: the CV gain in bits/spike pooled over folds (held-out
    log-likelihood difference summed over folds / (ln 2 x the unit's held-out spikes)), and
    whether it is clear: the per-fold differences (nats) have a mean above 2 s.e."""
    rows = []
    for big, small, label in STEPS:
        diff = scores[big].fold_ll - scores[small].fold_ll  # (folds, units), nats
        spikes = scores[big].fold_spikes.sum(axis=0)
        mean = diff.mean(axis=0)
        se = diff.std(axis=0, ddof=1) / np.sqrt(diff.shape[0])
        for u, unit in enumerate(unit_ids):
            rows.append({"term": label, "unit": unit,
                         "gain": diff[:, u].sum() / (np.log(2) * max(spikes[u], 1)),
                         "clear_up": mean[u] > 2 * se[u], "clear_down": mean[u] < -2 * se[u]})
    return pd.DataFrame(rows)


def unit_cv(scores, name) -> np.ndarray:
    """Per unit: held-out bits/spike pooled over folds (each fold against its own mean rate)."""
    r = scores[name]
    return np.nansum(r.fold_bps * r.fold_spikes, axis=0) / np.maximum(r.fold_spikes.sum(axis=0), 1)


def report(args, pooled, scores, unit_ids, gains, names, regions, n_rows, seconds, epochs,
           command, load_before, load_after) -> str:
    info = common.machine_info()
    lines = [
        f"Generated by `{command}` on {datetime.date.today().isoformat()} in "
        f"{seconds / 60:.1f} min (binning, features and 4 x 6 fits; {common.machine_line(info)};"
        f" {common.load_line(load_before, load_after)}; "
        f"{common.versions_line(['numpy', 'jax', 'pynapple'])}).",
        "",
        f"Data: {len(names)} cells ({sum(r == 'ADn' for r in regions.values())} ADn, "
        f"{sum(r == 'PoS' for r in regions.values())} PoS), "
        + (f"the first {args.minutes:g} min of the session" if args.minutes else
           "the whole session")
        + f": the `valid` epochs ({len(epochs)} epochs, {epochs.tot_length() / 60:.1f} min), "
        f"10 ms bins, {n_rows:,} bins used by every model; {args.cv} contiguous folds; "
        f"`Ridge({args.ridge:g})`.",
        "",
        "### Pooled over cells",
        "",
    ]
    rows = []
    for name, r in pooled.iterrows():
        lr = "" if np.isnan(r["lr_stat"]) else (
            f"{r['lr_stat']:,.0f} on {int(r['lr_df'])} df, p = {r['lr_pvalue']:.1g} "
            f"(vs {r['nested_in']})")
        rows.append([name, f"`{MODELS[name].split('~ ')[1]}`", int(r["n_params"]),
                     f"{r['train_bits_per_spike']:.4f}",
                     f"{r['cv_bits_per_spike']:.4f} ± {r['cv_bits_per_spike_se']:.4f}",
                     f"{r['delta_cv_bits_per_spike']:+.4f}", lr])
    lines += [common.markdown_table(
        ["model", "formula (right-hand side)", "n_params", "train bits/spike",
         "CV bits/spike (mean ± s.e. over folds)", "difference to best",
         "likelihood-ratio test (training data)"], rows, "llrrrrl"), ""]
    lines += ["Bits/spike are pooled over cells (total gain over the mean-rate model / total "
              "spikes); a fold's mean rate is the baseline of its held-out bits/spike, so the "
              "null model scores below 0 out of sample.", "",
              "### Cell by cell", "",
              "Cross-validated gain of each added term, per cell: the held-out log-likelihood "
              "difference summed over the folds, in bits per held-out spike of the cell; "
              "\"clearly\" = the mean per-fold difference is more than 2 s.e. (over folds) "
              "from 0:", ""]
    rows = []
    for label in [s[2] for s in STEPS]:
        g = gains[gains["term"] == label]
        for region in ["all", "ADn", "PoS"]:
            sel = g if region == "all" else g[g["unit"].map(regions) == region]
            rows.append([label, region, len(sel), int((sel["gain"] > 0).sum()),
                         int(sel["clear_up"].sum()), int(sel["clear_down"].sum()),
                         f"{sel['gain'].median():+.4f}",
                         f"{sel['gain'].min():+.4f} .. {sel['gain'].max():+.4f}"])
    lines += [common.markdown_table(
        ["added term", "cells", "n", "improved", "improved clearly", "worse clearly",
         "median gain (bits/spike)", "range"], rows, "llrrrrrl"), ""]
    wide = gains.pivot(index="unit", columns="term", values="gain")
    hd = dict(zip(unit_ids, unit_cv(scores, "hd")))
    full = dict(zip(unit_ids, unit_cv(scores, "full")))
    cells = []
    for unit in wide.index:
        cells.append([names[unit], regions[unit], f"{hd[unit]:.3f}",
                      f"{wide.loc[unit, 'spike history']:+.3f}",
                      f"{wide.loc[unit, 'coupling']:+.3f}", f"{full[unit]:.3f}"])
    lines += ["Per cell: held-out bits/spike of `hd` and of `full` (pooled over folds), and the "
              "gains of history and coupling as above:",
              "", common.markdown_table(["cell", "region", "hd", "+ history", "+ coupling",
                                         "full"], cells, "llrrrr"), ""]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=0.0,
                        help="first minutes of the valid epochs (default 0: all)")
    parser.add_argument("--ridge", type=float, default=3e-4)
    parser.add_argument("--cv", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "docs" / "comparison_head_direction.md"))
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if not FILE.exists():
        print(f"skipped: the real recording is not there ({FILE}); see "
              f"{DATA / 'README.md'} for what it is and where it comes from")
        return 0
    command = "python benchmarks/hd_comparison.py" + "".join(
        " " + shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    load_before = os.getloadavg()
    warnings.simplefilter("ignore")
    started = time.perf_counter()
    data, epochs = load(args.minutes)
    pooled, scores, unit_ids = run(data, epochs, args.ridge, args.cv)
    seconds = time.perf_counter() - started
    meta = data["spikes"].metadata
    names = dict(zip(data["spikes"].index, meta["name"]))
    regions = dict(zip(data["spikes"].index, meta["region"]))
    gains = unit_gains(scores, unit_ids)
    text = report(args, pooled, scores, unit_ids, gains, names, regions,
                  int(pooled["n_rows"].iloc[0]), seconds, epochs, command, load_before,
                  os.getloadavg())
    print(text)
    if not args.no_write:
        common.write_section(Path(args.out), text, "benchmarks/hd_comparison.py")
        print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
