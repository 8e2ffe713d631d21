"""R's mgcv on the real head-direction recording: the reference that automatic smoothness
selection is measured against (time, smoothing parameters, edf, held-out bits per spike).

Reads ../shared/data/hd_mouse28_140313 (32 ADn/PoS cells, the ``valid`` wake epochs, 25 ms bins)
and fits each cell's spike counts with mgcv, one cell at a time:

* ``gam(y ~ s(hd, bs="cc", k=20), knots=list(hd=K), family=poisson, method="REML")``
* ``bam(<same>, method="fREML", discrete=TRUE)`` (one thread)

with ``K`` = 20 knots evenly spaced over [0, 2 pi], as our ``cyclic(hd, 20)`` places them. (With
only the ends given, gam puts the interior knots at quantiles of hd and bam(discrete=TRUE)
nearly evenly, so the two would fit different bases on this unevenly sampled angle.)

Counts and head direction per bin come from glmformula's own design of
``spikes ~ cyclic(head_direction, 20)``: the angle is the very node that term reads (circular
interpolation at bin centres, graph/sampling.py), so both tools see identical data. Times are
each fit's wall time inside R (``proc.time``; data transfer, R start-up and prediction
excluded, first-call overheads removed by an untimed warm-up fit). Held-out: fit on the first
80% of the valid rows (time order), predict the last 20%; bits per spike as
``glmformula.results.scores.bits_per_spike`` on the test rows (null model: the test rows' own
mean rate, as ``gf.compare`` scores its folds), and also with the training mean rate as null.

    flock /tmp/glmformula-bench.lock .venv/bin/python benchmarks/smoothing_mgcv.py
    .venv/bin/python benchmarks/smoothing_mgcv.py --units 4      # a quick look (first cells)

Writes ``benchmarks/smoothing_mgcv_results.json`` (``--json`` to change): settings, machine,
versions, per-cell times, sp, edf, REML scores and held-out bits/spike, and their medians and
sums. Needs ``Rscript`` with mgcv (``apt-get install r-cran-mgcv``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "smoothing"))

import _common as common  # noqa: E402
import hd_real_fits  # noqa: E402
from mgcv_oracle import fit_smooth_cc, mgcv_version  # noqa: E402

import glmformula as gf  # noqa: E402
from glmformula.fitting.poisson import log_likelihood  # noqa: E402
from glmformula.results.scores import bits_per_spike  # noqa: E402

BIN = "25ms"
K = 20
TRAIN_FRACTION = 0.8
PERIOD = (0.0, 2 * np.pi)
RESULTS = HERE / "smoothing_mgcv_results.json"


def binned(data: dict) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Counts (rows x cells), head angle per row and unit ids, on the rows glmformula uses."""
    design = gf.design_matrix(f"spikes ~ cyclic(head_direction, {K})", data, bin_size=BIN,
                              epochs="valid")
    (node, _, _), = design.plan.blocks  # the cyclic basis; its input is the sampled angle
    angle = node.input.evaluate(design.graph, slice(None))[design.rows, 0]
    return design.counts[design.rows].astype(float), angle, design.unit_ids


def heldout_bits(counts: np.ndarray, expected: np.ndarray, train_rate: np.ndarray):
    """Held-out bits/spike per cell: glmformula's definition (null = the test rows' mean rate)
    and with the training mean rate as the null model."""
    ours = bits_per_spike(counts, expected)
    null = log_likelihood(counts, np.broadcast_to(train_rate, counts.shape))
    gain = log_likelihood(counts, expected) - null
    with np.errstate(invalid="ignore", divide="ignore"):
        train_null = np.where(counts.sum(0) > 0, gain / (counts.sum(0) * np.log(2)), np.nan)
    return ours, train_null


def summary(values) -> dict:
    values = np.asarray(values, float)
    return {"median": float(np.nanmedian(values)), "sum": float(np.nansum(values)),
            "min": float(np.nanmin(values)), "max": float(np.nanmax(values))}


def r_version() -> str:
    out = subprocess.run(["Rscript", "--vanilla", "-e", "cat(R.version.string)"],
                         capture_output=True, text=True, timeout=60)
    return out.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=None, help="only the first N cells")
    parser.add_argument("--json", type=Path, default=RESULTS, help="where to write results")
    args = parser.parse_args()
    if not hd_real_fits.DATA.exists():
        raise SystemExit(f"the real recording is not at {hd_real_fits.DATA}")
    if mgcv_version() is None:
        raise SystemExit("Rscript with mgcv not found: apt-get install r-cran-mgcv")
    load_before = os.getloadavg()
    counts, angle, units = binned(hd_real_fits.load())
    if args.units:
        counts, units = counts[:, :args.units], units[:args.units]
    n = len(angle)
    n_train = int(round(TRAIN_FRACTION * n))
    train, test = slice(0, n_train), slice(n_train, n)
    print(f"{n} rows of {BIN} ({n_train} train, {n - n_train} test), {len(units)} cells, "
          f"mgcv {mgcv_version()}", flush=True)

    cells = {str(u): {"n_spikes": float(counts[:, i].sum()),
                      "n_spikes_test": float(counts[test, i].sum())}
             for i, u in enumerate(units)}
    totals = {}
    for engine in ("gam", "bam"):
        started = time.perf_counter()
        full = fit_smooth_cc(angle, counts, K, bounds=PERIOD, even_knots=True, engine=engine)
        split = fit_smooth_cc(angle[train], counts[train], K, x_new=angle[test], bounds=PERIOD,
                              even_knots=True, engine=engine)
        wall = time.perf_counter() - started
        ours, train_null = heldout_bits(counts[test], split.predictions,
                                        counts[train].mean(axis=0))
        for i, u in enumerate(units):
            cells[str(u)][engine] = {
                "seconds": float(full.seconds[i]), "cpu_seconds": float(full.cpu_seconds[i]),
                "sp": float(full.sp[i]),
                "sp_raw": float(full.sp_raw[i]), "strength": float(full.sp_raw[i] / n),
                "edf": float(full.edf[i]),
                "reml": float(full.reml[i]), "converged": bool(full.converged[i]),
                "error": full.errors[i], "warnings": full.warnings[i],
                "train_seconds": float(split.seconds[i]), "train_sp": float(split.sp[i]),
                "train_edf": float(split.edf[i]), "train_error": split.errors[i],
                "heldout_bits_per_spike": float(ours[i]),
                "heldout_bits_per_spike_train_mean_null": float(train_null[i]),
            }
        totals[engine] = {
            "seconds": summary(full.seconds), "cpu_seconds": summary(full.cpu_seconds),
            "train_seconds": summary(split.seconds),
            "edf": summary(full.edf), "sp": summary(full.sp), "sp_raw": summary(full.sp_raw),
            "heldout_bits_per_spike": summary(ours),
            "heldout_bits_per_spike_train_mean_null": summary(train_null),
            "failed": int(sum(bool(e) for e in full.errors + split.errors)),
            "wall_seconds_with_transfer": wall,
        }
        t = totals[engine]
        print(f"{engine}: per cell median {t['seconds']['median']:.3f} s (CPU "
              f"{t['cpu_seconds']['median']:.3f} s), sum {t['seconds']['sum']:.1f} s (CPU "
              f"{t['cpu_seconds']['sum']:.1f} s) over {len(units)} cells (80% fits: sum "
              f"{t['train_seconds']['sum']:.1f} s); median edf {t['edf']['median']:.2f}; "
              f"median held-out {t['heldout_bits_per_spike']['median']:.4f} bits/spike "
              f"(training-mean null {t['heldout_bits_per_spike_train_mean_null']['median']:.4f})"
              f"; failed fits {t['failed']}", flush=True)

    result = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "settings": {
            "data": "hd_mouse28_140313, valid epochs", "bin_size": BIN, "k": K,
            "basis": 's(hd, bs="cc", k=20), knots=list(hd=seq(0, 2*pi, length=20)) (even); '
                     "19 cyclic cubic-spline coefficients, 18 after the sum-to-zero constraint, "
                     "+ intercept",
            "gam": 'gam(..., family=poisson(), method="REML")',
            "bam": 'bam(..., family=poisson(), method="fREML", discrete=TRUE, nthreads=1)',
            "n_rows": n, "n_train": n_train, "n_test": n - n_train,
            "train_rows": f"first {TRAIN_FRACTION:.0%} of the valid rows in time order",
            "timing": "wall time (seconds) and CPU time (cpu_seconds) of each fit inside R "
                      "(proc.time), after an untimed warm-up fit; R's reference BLAS, 1 thread",
            "sp": "fit$sp, on mgcv's rescaled penalty S / S.scale (S.scale depends on the "
                  "knots and the data)",
            "sp_raw": "sp / S.scale: on the cc basis' own penalty",
            "strength": "sp_raw / n_rows: mgcv's cc penalty in glmformula's units (mean NLL + "
                        "0.5 s w'Sw); our cyclic() basis and penalty differ, so compare edf",
            "heldout_bits_per_spike": "glmformula.results.scores.bits_per_spike on the test "
                                      "rows (null: the test rows' mean rate, as gf.compare)",
            "heldout_bits_per_spike_train_mean_null": "(LL - LL of the training mean rate) / "
                                                      "(test spikes * ln 2)",
        },
        "machine": common.machine_info() | {"load_before": load_before,
                                            "load_after": os.getloadavg()},
        "versions": {"R": r_version(), "mgcv": mgcv_version(),
                     **common.versions(["numpy", "pynapple", "glmformula"])},
        "totals": totals,
        "cells": cells,
    }
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
