"""Head-direction cells: tuning curves with bands, spike history and functional coupling.

Fits one Poisson GLM per cell of a head-direction population::

    spikes ~ cyclic(head_direction, 12) + history(8, log, window=100ms) + coupling(all)

and compares what it reads off the data with pynapple's model-free summaries: the GLM tuning
curves (gain on the rate, 95% bands) against occupancy-normalised tuning curves, and the GLM
coupling matrix against a cross-correlogram summary. It uses the real ADn/PoS recording
(Mouse28-140313, Peyrache et al. 2015) from ``../shared/data/hd_mouse28_140313`` beside the
repository when it is there, else the built-in simulation ``gf.datasets.head_direction()``, and
says which.

Run::

    python examples/head_direction.py [--out examples/output/] [--minutes 15] [--simulated]
        [--smoothing none|auto] [--ridge STRENGTH]

Choices, to keep it to a minute or two on a laptop:

* 10 ms bins: the 100 ms history window spans 10 lags, enough for 8 distinct filters.
* ``--minutes`` (default 15) of the recording's valid (well tracked) epochs for the GLM; the
  pynapple tuning curves and cross-correlograms use the same epochs. The whole session
  (38 min) works too and takes about three times as long.
* A hand-picked ``Ridge(3e-4)`` and no smoothness penalty (``smoothing=None``), unlike the other
  examples, which let glmformula choose penalty strengths from the data. Each cell has
  12 + 8 + 31 x 8 = 268 weights, and pairs of cells that rarely fire within 100 ms of each other
  leave some coupling weights barely determined; a small ridge keeps them finite. It is a
  trade-off: at 1e-4 the tuning gains are larger and the coupling matrix noisier; at 1e-3 the
  coupling matrix shows the preferred-direction structure clearly but the tuning gains shrink by
  half (coupling takes over part of what the shared tuning explains).
  The automatic choice, ``--smoothing auto`` (strengths chosen per cell and per term by REML,
  docs/smoothness.md; ``--ridge`` then defaults to none), works but is not the default here for
  two reasons, measured on the real recording (15 min, 2 CPU cores): it forms each cell's
  269 x 269 Hessian at every REML step, so the fit takes about 17 min instead of 26 s; and a
  roughness penalty smooths each coupling filter over its lags without shrinking the filters of
  poorly determined pairs towards 0, so the coupling matrix is noisier (correlation with the
  cross-correlogram excess 0.35, against 0.55 with the ridge). Tuning is unaffected (median
  difference of preferred directions to pynapple's 5 deg either way).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pynapple as nap

import glmformula as gf
from glmformula.results.plotting import draw_matrix, new_figure

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hd_mouse28_140313"
FORMULA = "spikes ~ cyclic(head_direction, 12) + history(8, log, window=100ms) + coupling(all)"
BIN_SIZE = "10ms"


def load(minutes: float, simulated: bool):
    """(data, epochs, description) of the real recording, or of the simulation."""
    file = REAL / "Mouse28-140313_wake_hd.npz"
    if file.exists() and not simulated:
        d = np.load(file)
        wake = nap.IntervalSet(d["wake_start"], d["wake_end"])
        valid = nap.IntervalSet(d["valid_start"], d["valid_end"])
        spikes = nap.TsGroup({i: nap.Ts(d["spike_times"][d["spike_unit"] == i])
                              for i in range(len(d["unit_ids"]))}, time_support=wake,
                             metadata={"name": d["unit_ids"].astype(str)})
        angle = nap.Tsd(t=d["angle_t"], d=d["angle"], time_support=wake)
        start = float(wake.start[0])
        epochs = valid.intersect(nap.IntervalSet(start, start + 60.0 * minutes))
        text = (f"REAL recording {file.name} ({len(spikes)} ADn/PoS head-direction cells), "
                f"first {epochs.tot_length() / 60:.1f} min of the valid epochs")
        return {"spikes": spikes, "head_direction": angle}, epochs, text
    recording = gf.datasets.head_direction(seed=0)
    epochs = recording["wake"]
    text = (f"SIMULATED recording gf.datasets.head_direction() ({len(recording['spikes'])} "
            f"cells, {epochs.tot_length():.0f} s of wake)"
            + ("" if simulated else f"; the real one was not found at {REAL}"))
    return recording, epochs, text


def pynapple_tuning(data, epochs):
    """Occupancy-normalised tuning curves (Hz) in 36 bins of 10 degrees."""
    return nap.compute_tuning_curves(data["spikes"], data["head_direction"], bins=36,
                                     range=(0, 2 * np.pi), epochs=epochs, return_pandas=True)


def ccg_matrix(spikes, epochs, unit_ids, window=0.1, binsize=0.005):
    """Post x pre excess of normalised cross-correlograms over lags (0, window] s.

    For a pair (i, j) pynapple's positive lags count j's spikes after i's (i -> j), its negative
    lags i's after j's (j -> i); 1 is the chance level.
    """
    ccg = nap.compute_crosscorrelogram(spikes, binsize=binsize, windowsize=window, ep=epochs,
                                       norm=True)
    lags = ccg.index.to_numpy(float)
    after, before = (lags > 0) & (lags <= window), (lags < 0) & (lags >= -window)
    out = np.full((len(unit_ids), len(unit_ids)), np.nan)
    position = {u: k for k, u in enumerate(unit_ids)}
    for i, j in ccg.columns:
        values = ccg[(i, j)].to_numpy(float)
        out[position[j], position[i]] = np.mean(values[after]) - 1.0
        out[position[i], position[j]] = np.mean(values[before]) - 1.0
    return out


def plot_tuning(res, tuning, out: Path) -> Path:
    """The GLM's tuning curves (gain with 95% band) with pynapple's (Hz, right axis)."""
    figure = res.plot("head_direction")
    panels = [ax for ax in figure.axes if ax.get_visible()]
    centres = tuning.index.to_numpy(float)
    for ax, unit in zip(panels, res.unit_ids):
        twin = ax.twinx()
        twin.plot(centres, tuning[unit].to_numpy(float), color="C3", lw=1.0, ls="--")
        twin.tick_params(labelsize=6, colors="C3")
        ax.set_xticks(np.radians([0, 90, 180, 270, 360]), ["0", "90", "180", "270", "360"])
        ax.set_xlabel("head direction (deg)", fontsize=7)
    figure.suptitle("cyclic(head_direction, 12): GLM gain, 95% band (blue, left axis) and "
                    "pynapple tuning curve (red dashed, Hz, right axis)", fontsize=11)
    path = out / "tuning_curves.png"
    figure.savefig(path, dpi=90)
    return path


def plot_coupling(res, ccg, preferred, out: Path) -> Path:
    """GLM coupling integrals next to the cross-correlogram excess, units ordered by their
    preferred direction (neighbours in the matrix prefer neighbouring directions)."""
    order = np.argsort(preferred)
    glm = res.coupling_matrix()
    ids = list(glm.index)
    glm = glm.iloc[order, order]
    figure, (left, right) = new_figure(2, panel_size=(6.0, 5.2), max_columns=2)
    # A few poorly determined pairs would set the colour scale; clip it at the 98th percentile.
    limit = float(np.nanpercentile(np.abs(glm.to_numpy()), 98))
    draw_matrix(figure, left, glm, limit=limit,
                label="sum over lags of the coupling filter (log-rate; colours clipped)")
    left.set_title("GLM coupling (tuning and history accounted for)", fontsize=10)
    ccg_frame = pd.DataFrame(ccg, index=pd.Index(ids, name="post"),
                             columns=pd.Index(ids, name="pre")).iloc[order, order]
    draw_matrix(figure, right, ccg_frame, label="mean normalised CCG - 1, lags 0-100 ms")
    right.set_title("pynapple cross-correlograms (raw co-firing)", fontsize=10)
    figure.suptitle("units sorted by preferred head direction", fontsize=11)
    path = out / "coupling.png"
    figure.savefig(path, dpi=90)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "output"),
                        help="folder for the PNGs (default: examples/output/)")
    parser.add_argument("--minutes", type=float, default=15.0,
                        help="minutes of the real recording to fit (default 15)")
    parser.add_argument("--smoothing", choices=("none", "auto"), default="none",
                        help="smoothness penalties: none (default, with --ridge 3e-4) or auto "
                             "(strengths chosen from the data by REML; slow with coupling)")
    parser.add_argument("--ridge", type=float, default=None,
                        help="Ridge penalty strength (default 3e-4 with --smoothing none, "
                             "none with --smoothing auto; 0 for none)")
    parser.add_argument("--simulated", action="store_true",
                        help="use the built-in simulation even where the real data exist")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    data, epochs, description = load(args.minutes, args.simulated)
    print("data:", description)
    started = time.perf_counter()
    smoothing = None if args.smoothing == "none" else "auto"
    ridge = args.ridge if args.ridge is not None else (3e-4 if smoothing is None else 0.0)
    res = gf.fit(FORMULA, data, bin_size=BIN_SIZE, epochs=epochs, smoothing=smoothing,
                 regularizer=gf.Ridge(ridge) if ridge > 0 else None)
    print(f"fitted {len(res.unit_ids)} cells x {res.n_rows} bins of {BIN_SIZE} in "
          f"{time.perf_counter() - started:.0f} s (solver {res.solver}, converged "
          f"{res.converged}; smoothing={smoothing}, "
          f"{'Ridge(%g)' % ridge if ridge > 0 else 'no ridge'})")
    if smoothing is not None:
        print(f"effective degrees of freedom per cell (strengths chosen by REML): median "
              f"{np.median(res.n_params_units):.1f} of {res.coef.notna().sum().max() + 1} "
              "weights and intercept")

    summary = res.summary()
    significant = summary["p_value"].lt(1e-3).groupby(level="term").mean()
    print("share of cells whose term is significant (Wald test, p < 0.001):")
    for term, share in significant.items():
        print(f"  {term:<45s} {share:6.0%}")

    tuning = pynapple_tuning(data, epochs)
    curve = res.curve("head_direction", n_points=360)
    grid = curve.index.to_numpy(float)
    preferred = np.array([grid[np.argmax(curve[(u, "estimate")].to_numpy())]
                          for u in res.unit_ids])
    centres = tuning.index.to_numpy(float)
    rates = np.stack([tuning[u].to_numpy(float) for u in res.unit_ids])
    nap_peak = centres[np.argmax(rates, axis=1)]
    error = np.degrees(np.abs(np.angle(np.exp(1j * (preferred - nap_peak)))))
    # Only cells with one clear peak have a preferred direction (mean vector length > 0.3).
    tuned = np.abs(rates @ np.exp(1j * centres)) / rates.sum(axis=1) > 0.3
    print(f"preferred direction, GLM vs pynapple tuning-curve peak, {tuned.sum()} clearly tuned "
          f"cells: median difference {np.median(error[tuned]):.1f} deg, largest "
          f"{error[tuned].max():.1f} deg")

    ccg = ccg_matrix(data["spikes"], epochs, list(res.unit_ids))
    glm = res.coupling_matrix().to_numpy()
    off = ~np.eye(len(glm), dtype=bool)
    r = np.corrcoef(glm[off], ccg[off])[0, 1]
    print(f"correlation of GLM coupling and cross-correlogram excess over pairs: {r:.2f}")

    paths = [plot_tuning(res, tuning, out), plot_coupling(res, ccg, preferred, out)]
    history = res.plot("history", scale="gain")
    paths.append(out / "history.png")
    history.savefig(paths[-1], dpi=80)
    print("wrote", ", ".join(str(p) for p in paths))
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
