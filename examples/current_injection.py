"""A linear-nonlinear-Poisson model of a neuron driven by an injected current.

    spikes ~ filter(current, 8, window=200ms) + history(8, log, window=300ms)

at 1 ms bins: the current passes through a causal stimulus filter (8 log-spaced raised
cosines over 200 ms), the cell's own past spikes through a history filter (8 log-spaced over
300 ms: refractoriness in the first few ms, then the slower adaptation the real cell shows; a
50 ms window cuts that off and loses ~0.42 bits/spike held out), and the rate is the exponential
of their sum.

Data: the REAL current-clamp recording in ``shared/data/gif_cell3_noise`` (Pozzorini et al.
2015, PLoS Comput Biol 11:e1004275; cell 3, 9 sweeps of 20 s) when it is present beside the
repository (or in the folder named by ``--data`` or ``GLMFORMULA_DATA``), else the built-in
simulation ``gf.datasets.current_injection()``, which has the same protocol and a known
stimulus filter. The script prints which one it used.

The recording's noise current is FROZEN: every sweep repeats the same 20 s. Cross-validating
across sweeps would test on the stimulus the model was trained on, so (as the data's README
advises) the model is fitted on the first 15 s of every sweep and tested on the last 5 s,
whose stimulus it has never seen. The simulation is split the same way.

Run:  python examples/current_injection.py [--out DIR] [--data DIR] [--simulated]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pynapple as nap  # noqa: E402

import glmformula as gf  # noqa: E402

NAME = "current_injection"
FORMULA = "spikes ~ filter(current, 8, window=200ms) + history(8, log, window=300ms)"
BIN = 0.001  # s
WINDOW = 0.3  # s: the longest filter window; bins closer than this to an epoch start are dropped
TRAIN_SECONDS = 15.0  # of each 20 s sweep; the rest is the test set
RECORDING = Path("gif_cell3_noise") / "pozzorini2015_cell3_frozen_noise.npz"
# The cell never fires twice within 8.8 ms, so unpenalised refractory weights would run off to
# minus infinity (perfect separation). No hand-picked ridge is needed: every filter carries a
# roughness penalty whose strength is chosen from the data (smoothing="auto", the default;
# docs/smoothness.md), which keeps them finite.


def find_recording(folder: Path | None) -> Path | None:
    """The real recording's file: under --data, GLMFORMULA_DATA, or ../shared/data."""
    roots = [folder] if folder else []
    roots += [Path(p) for p in os.environ.get("GLMFORMULA_DATA", "").split(os.pathsep) if p]
    roots.append(Path(__file__).resolve().parents[2] / "shared" / "data")
    for root in roots:
        for candidate in (root / RECORDING, root / RECORDING.name):
            if candidate.is_file():
                return candidate
    return None


def load_recording(path: Path) -> dict:
    """The real recording as pynapple objects, as its README loads it (sweeps = epochs)."""
    d = np.load(path)
    sweeps = nap.IntervalSet(start=d["sweep_start"], end=d["sweep_end"])
    current = nap.Tsd(t=d["current_t"], d=d["current"].astype(float), time_support=sweeps)
    spikes = nap.TsGroup({0: nap.Ts(d["spike_times"])}, time_support=sweeps)
    return {"spikes": spikes, "current": current, "sweeps": sweeps}


def split_sweeps(data) -> dict:
    """Add ``train`` (first 15 s of each sweep) and ``test`` (the rest) epochs."""
    sweeps = data["sweeps"]
    data = dict(data)
    data["train"] = nap.IntervalSet(start=sweeps.start, end=sweeps.start + TRAIN_SECONDS)
    data["test"] = nap.IntervalSet(start=sweeps.start + TRAIN_SECONDS, end=sweeps.end)
    return data


def draw_band(ax, curve, color="C0", label="fit (95% band)", scale=1.0):
    part = curve[0]
    lag_ms = 1000 * curve.index.to_numpy(float)
    ax.fill_between(lag_ms, scale * part["lower"], scale * part["upper"], color=color,
                    alpha=0.3, lw=0)
    ax.plot(lag_ms, scale * part["estimate"], color=color, lw=1.6, label=label)
    return lag_ms


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parent / "output" / NAME,
                        help="folder for the figures (default: %(default)s)")
    parser.add_argument("--data", type=Path, help="folder holding gif_cell3_noise/")
    parser.add_argument("--simulated", action="store_true",
                        help="use the built-in simulation even if the recording is present")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    path = None if args.simulated else find_recording(args.data)
    truth = None
    if path is not None:
        data = load_recording(path)
        source = "REAL recording, Pozzorini et al. 2015 cell 3 (frozen noise)"
        print(f"Data: the {source}, from {path}")
    else:
        simulation = gf.datasets.current_injection(seed=0)
        data, truth = dict(simulation), simulation.truth
        source = "SIMULATED recording, gf.datasets.current_injection(seed=0)"
        print(f"Data: the {source} (the real recording was not found).")
        print(simulation.description)
    data = split_sweeps(data)
    n_sweeps = len(data["sweeps"])
    print(f"{n_sweeps} sweeps; fit on the first {TRAIN_SECONDS:.0f} s of each, test on the "
          f"last {data['test'].tot_length() / n_sweeps:.0f} s (stimulus never seen in training)")

    res = gf.fit(FORMULA, data, bin_size=BIN, epochs="train")   # smoothing="auto"
    test_bps = res.score(data, epochs="test")
    train_bps = res.score(data, epochs="train")
    print(f"\n{res.formula}  (1 ms bins, solver {res.solver}, "
          f"converged={res.converged}, {res.n_rows} training bins)")
    print("smoothness penalties chosen by REML (strength, effective degrees of freedom):")
    print(res.smoothing.to_string(float_format="{:.3g}".format))
    print(f"bits/spike: training {train_bps:.3f}, HELD-OUT (last 5 s of each sweep) "
          f"{test_bps:.3f}")
    print(f"pseudo-R2 (McFadden's) on the test set: "
          f"{res.score(data, 'pseudo_r2', epochs='test'):.3f}; deviance explained "
          f"{res.score(data, 'deviance_explained', epochs='test'):.3f}")
    res.print_summary()

    # Filters. ------------------------------------------------------------------------------------
    # The stimulus filter's weights are per pA in one 1 ms bin; x1000: the log-rate change that
    # 1 nA injected for 1 ms causes at each lag.
    stim = res.curve("filter", scale="log")
    history = res.curve("history")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    lag_ms = draw_band(ax1, stim, scale=1000.0)
    if truth is not None:
        lags = stim.index.to_numpy(float)
        ax1.plot(lag_ms, 1000.0 * truth["stimulus_filter"](lags) * BIN, "k--", lw=1,
                 label="truth")
    ax1.axhline(0, color="0.6", lw=0.7)
    ax1.set_xscale("log")
    ax1.set(xlabel="lag (ms)", ylabel="log-rate change per nA·ms",
            title="stimulus filter")
    ax1.legend(frameon=False)
    lag_ms = draw_band(ax2, history)
    if truth is not None:
        lags = history.index.to_numpy(float)
        ax2.plot(lag_ms, np.exp(truth["history_filter"](lags)), "k--", lw=1, label="truth")
    ax2.axhline(1, color="0.6", lw=0.7)
    ax2.set(xlabel="time since the cell's own spike (ms)", ylabel="gain on the rate (x)",
            title="spike-history filter (refractoriness, adaptation)")
    ax2.legend(frameon=False, loc="lower right")
    fig.suptitle(f"{FORMULA}\n{source}", fontsize=9)
    fig.savefig(args.out / "filters.png", dpi=110)
    plt.close(fig)

    peak = stim[0]["estimate"].idxmax()
    print(f"\nStimulus filter peaks at {1000 * peak:.0f} ms lag; history: gain "
          f"{history[0]['estimate'].iloc[0]:.3g} 1 ms after a spike, "
          f"{history[0]['estimate'].iloc[-1]:.2f} at {1000 * history.index[-1]:.0f} ms")

    # Predicted rate against the spikes on a few seconds of one test segment. -------------------
    # The first 300 ms of every segment have no full filter window and are not predicted.
    first = data["test"].start[0] + WINDOW
    window = nap.IntervalSet(first, first + 2.0)
    rate = res.predict(data, epochs=data["test"]).restrict(window)
    rate = nap.Tsd(t=rate.t, d=rate.values).bin_average(0.005)  # 5 ms means, for the eye
    spike_times = data["spikes"][0].restrict(window).t
    current = data["current"].restrict(window)
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(10, 5.2), sharex=True,
                                        layout="constrained", height_ratios=(1.2, 0.35, 2))
    ax1.plot(current.t - first, current.values, color="0.4", lw=0.4)
    ax1.set(ylabel="current (pA)",
            title="held-out test segment (stimulus never seen in training)")
    ax2.vlines(spike_times - first, 0, 1, color="k", lw=1)
    ax2.set(yticks=[], ylabel="spikes")
    ax3.plot(rate.t - first, rate.values, color="C0", lw=1)
    ax3.set(xlabel="time (s)", ylabel="predicted rate (Hz)",
            title="rate given the current and the cell's own recorded past spikes "
                  "(5 ms means)")
    ax3.set_xlim(0, 2.0)
    fig.savefig(args.out / "prediction.png", dpi=110)
    plt.close(fig)

    print(f"\nFound: held-out {test_bps:.2f} bits/spike on the {source}.")
    print(f"Figures in {args.out}: filters.png, prediction.png "
          f"({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
