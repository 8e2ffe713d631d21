"""A speed cell that looks like a place cell: why a tuning curve is not an encoding model.

On a linear track the animal runs fast in the middle and slowly near the ends. Unit 1 of the
SIMULATED recording ``gf.datasets.linear_maze()`` is driven by running speed only, yet its
position tuning curve (pynapple's occupancy-normalised rate) has a broad mid-track "field".
Two GLMs settle it:

    spikes[1] ~ onehot(position, 7)            # the tuning-curve hypothesis
    spikes[1] ~ onehot(position, 7) + speed    # position, given speed

Compared by 5-fold cross-validated bits per spike, the second wins, and in it the position
effect collapses to a flat line (the truth: no position effect at all). Unit 0, a real place
cell, is fitted alongside as a control: its field survives the speed term.

Run:  python examples/linear_maze.py [--out DIR]    (about 30 s; figures in DIR)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pynapple as nap  # noqa: E402

import glmformula as gf  # noqa: E402

NAME = "linear_maze"
BIN = "20ms"  # the tracking rate (50 Hz)
POSITION_ONLY = "onehot(position, 7)"
POSITION_SPEED = "onehot(position, 7) + speed"


def tuning_curves(data, bins: int = 20):
    """Occupancy-normalised firing rate (Hz) by position during running: bins x units."""
    spikes, position, run = data["spikes"], data["position"], data["run"]
    if hasattr(nap, "compute_tuning_curves"):  # pynapple >= 0.10
        return nap.compute_tuning_curves(spikes, position, bins=bins, range=(0, 100),
                                         epochs=run, return_pandas=True)
    return nap.compute_1d_tuning_curves(spikes, position, nb_bins=bins, ep=run,
                                        minmax=(0, 100))


def mean_by_position(values: nap.Tsd, position: nap.Tsd, run, bins: int = 20):
    """Mean of ``values`` in each position bin during running (same samples as position)."""
    x = position.restrict(run).values
    v = values.restrict(run).values
    edges = np.linspace(0, 100, bins + 1)
    which = np.clip(np.digitize(x, edges) - 1, 0, bins - 1)
    sums = np.bincount(which, weights=v, minlength=bins)
    counts = np.bincount(which, minlength=bins)
    return 0.5 * (edges[1:] + edges[:-1]), sums / np.maximum(counts, 1)


def centred_truth(truth, unit: int, grid: np.ndarray, visited: np.ndarray) -> np.ndarray:
    """The true position effect as a gain, centred like the fitted term (mean 0 over the
    positions the animal visited)."""
    mean = truth["position_tuning"](unit, visited).mean()
    return np.exp(truth["position_tuning"](unit, grid) - mean)


def draw_band(ax, curve, unit, color, label):
    part = curve[unit]
    x = curve.index.to_numpy(float)
    ax.fill_between(x, part["lower"], part["upper"], color=color, alpha=0.25, lw=0)
    ax.plot(x, part["estimate"], color=color, lw=1.8, label=label)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parent / "output" / NAME,
                        help="folder for the figures (default: examples/output/%(default)s)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    data = gf.datasets.linear_maze(seed=0)
    truth, run = data.truth, data["run"]
    print("Data: gf.datasets.linear_maze(seed=0), a SIMULATED recording (known truth).")
    print(data.description, "\n")

    # 1. What a tuning curve shows. -------------------------------------------------------------
    tc = tuning_curves(data)
    centres, speed_by_x = mean_by_position(data["speed"], data["position"], run)
    peak = tc[1].max() / tc[1].min()
    print(f"Position tuning curve of unit 1 (pynapple, running only): {tc[1].min():.1f} to "
          f"{tc[1].max():.1f} Hz (x{peak:.1f}), peaking at {tc[1].idxmax():.0f} cm: "
          "it looks like a place field.")
    print(f"Mean running speed by position: {speed_by_x.min():.1f} cm/s at the ends, "
          f"{speed_by_x.max():.1f} cm/s mid-track.\n")

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    for unit, color in ((0, "C2"), (1, "C3")):
        kind = data["spikes"].get_info("kind")[unit]
        ax1.plot(tc.index, tc[unit], "o-", color=color, ms=3, label=f"unit {unit} ({kind} cell)")
    ax1.set(xlabel="position (cm)", ylabel="firing rate (Hz)",
            title="Tuning curves (pynapple, running epochs)")
    ax1.legend(frameon=False)
    ax2.plot(centres, speed_by_x, "o-", color="C0", ms=3)
    ax2.set(xlabel="position (cm)", ylabel="mean speed (cm/s)",
            title="The confound: running speed by position")
    fig.savefig(args.out / "tuning_curves.png", dpi=110)
    plt.close(fig)

    # 2. Does position matter once speed is in the model? Cross-validated comparison. -------------
    models = {"position": f"spikes[1] ~ {POSITION_ONLY}",
              "position + speed": f"spikes[1] ~ {POSITION_SPEED}"}
    table = gf.compare(models, data, bin_size=BIN, epochs="run", cv=5)
    columns = ["n_params", "train_bits_per_spike", "cv_bits_per_spike", "cv_bits_per_spike_se",
               "delta_cv_bits_per_spike", "lr_stat", "lr_df", "lr_pvalue"]
    print("Unit 1, 5-fold cross-validated comparison (contiguous folds of the running epochs):")
    print(table[columns].to_string(float_format=lambda v: f"{v:.4g}"), "\n")

    fig, ax = plt.subplots(figsize=(5, 3.6), layout="constrained")
    x = np.arange(len(table))
    ax.bar(x, table["cv_bits_per_spike"], yerr=table["cv_bits_per_spike_se"], capsize=5,
           color=["C3", "C0"], alpha=0.8, label="held out (mean ± s.e. over folds)")
    ax.plot(x, table["train_bits_per_spike"], "kx", ms=8, label="training")
    ax.set_xticks(x, [f"spikes[1] ~\n{m}" for m in (POSITION_ONLY, POSITION_SPEED)], fontsize=8)
    ax.set(ylabel="bits / spike", title="Unit 1: which hypothesis predicts held-out spikes?")
    ax.legend(frameon=False, fontsize=8, loc="upper left")
    ax.set_ylim(0, 1.35 * table["train_bits_per_spike"].max())
    fig.savefig(args.out / "comparison.png", dpi=110)
    plt.close(fig)

    # 3. The position effect in both models (both units, one population fit each). ---------------
    fits = {name: gf.fit(f"spikes ~ {rhs}", data, bin_size=BIN, epochs="run")
            for name, rhs in (("position only", POSITION_ONLY),
                              ("position + speed", POSITION_SPEED))}
    visited = data["position"].restrict(run).values
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.4), layout="constrained")
    for row, unit in enumerate((1, 0)):
        ax = axes[row, 0]
        for (name, res), color in zip(fits.items(), ("C3", "C0")):
            curve = res.curve("position", n_points=400)
            draw_band(ax, curve, unit, color, f"~ {name}")
            gains = curve[unit]["estimate"]
            print(f"Unit {unit}, position effect in '~ {name}': gain {gains.min():.2f} to "
                  f"{gains.max():.2f} (x{gains.max() / gains.min():.2f} from trough to peak)")
        grid = curve.index.to_numpy(float)
        ax.plot(grid, centred_truth(truth, unit, grid, visited), "k--", lw=1, label="truth")
        kind = data["spikes"].get_info("kind")[unit]
        ax.set(xlabel="position (cm)", ylabel="gain on the rate (x)",
               title=f"unit {unit} ({kind} cell): position effect, 95% bands")
        ax.legend(frameon=False, fontsize=8)

        ax = axes[row, 1]
        speed_curve = fits["position + speed"].curve("speed")
        draw_band(ax, speed_curve, unit, "C0", "~ position + speed")
        s = speed_curve.index.to_numpy(float)
        ax.plot(s, np.exp(truth["speed_tuning"](unit, s)), "k--", lw=1, label="truth")
        ax.set(xlabel="speed (cm/s)", ylabel="gain on the rate (x)",
               title=f"unit {unit} ({kind} cell): speed effect (vs. standing still)")
        ax.legend(frameon=False, fontsize=8)
        table_speed = fits["position + speed"].table("speed").loc[unit]
        estimate, se = table_speed["estimate"].iloc[0], table_speed["std_error"].iloc[0]
        print(f"Unit {unit}, speed weight: {estimate:.4f} ± {se:.4f} log-rate per cm/s "
              f"(truth {truth['speed_coef'][unit]:.2f})")
    fig.suptitle("Position curves with and without speed in the model (simulated data)")
    fig.savefig(args.out / "position_effect.png", dpi=110)
    plt.close(fig)

    best = table["cv_bits_per_spike"].idxmax()
    gain = table.loc["position + speed", "cv_bits_per_spike"] - table.loc[
        "position", "cv_bits_per_spike"]
    print(f"\nFound: the best model for unit 1 is '{best}' (+{gain:.3f} bits/spike held out); "
          "with speed in the model, unit 1's position effect is flat (no place field), while "
          "unit 0's place field survives.")
    print(f"Figures in {args.out}: tuning_curves.png, comparison.png, position_effect.png "
          f"({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
