"""Event kernels: what a neuron does before and after licks, tones and lights.

A SIMULATED session (known truth; no real recording is used): a mouse licks in bouts, and tones
and lights are presented at random times. Unit 0 ramps up before each lick and is suppressed
after it (preparatory activity, as in motor cortex); unit 1 answers tones with a short latency
and ignores lights. Event times are pynapple objects: the licks a ``Ts``, the two stimuli the
units of a ``TsGroup`` (0: tone, 1: light). The model:

    spikes ~ filter(licks, 10, window=500ms, log=False, start=-200ms)
           + filter(stimuli[0], 8, window=300ms) + filter(stimuli[1], 8, window=300ms)

``filter(events, k, window=..., start=...)`` counts the events into the bins and filters them
with k raised cosines over lags ``start ... start + window``; ``start=-200ms`` lets the lick
kernel begin 200 ms *before* each lick (legal because licks are events, not the neuron's own
spikes; ``history`` and ``coupling`` stay strictly causal). The session is recorded in trials
(separate epochs): no kernel reads an event of another trial, and the last bins of a trial,
whose window would reach past its end, are dropped.

A causal lick kernel (``start=0``) cannot see the ramp before the lick; the cross-validated
comparison shows what the anticipatory one adds.

Run:  python examples/event_kernel.py [--out DIR]    (about 30 s; figures in DIR)
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

NAME = "event_kernel"
BIN = 0.01  # s
LICK = "filter(licks, 10, window=500ms, log=False, start=-200ms)"
CAUSAL_LICK = "filter(licks, 10, window=300ms, log=False)"
STIMULI = "filter(stimuli[0], 8, window=300ms) + filter(stimuli[1], 8, window=300ms)"


def lick_kernel(seconds):
    """Unit 0's true log-rate change at each lag (s, negative: before the lick)."""
    return (1.1 * np.exp(-0.5 * ((seconds + 0.05) / 0.06) ** 2)
            - 0.8 * np.exp(-0.5 * ((seconds - 0.15) / 0.06) ** 2))


def tone_kernel(seconds):
    """Unit 1's true log-rate change after a tone (s)."""
    return np.where(seconds > 0, 1.5 * np.exp(-0.5 * ((seconds - 0.06) / 0.025) ** 2), 0.0)


def simulate(seed: int = 0, n_trials: int = 80, trial: float = 8.0, gap: float = 2.0):
    """Trials of ``trial`` s separated by ``gap`` s; licks in bouts, tones and lights at random.

    Rates are drawn on 10 ms bins: log rate = baseline + sum over lags L of kernel(L) x events
    in bin t - L (the model's own convention), within each trial.
    """
    rng = np.random.default_rng(seed)
    starts = np.arange(n_trials) * (trial + gap)
    trials = nap.IntervalSet(start=starts, end=starts + trial)
    lags = np.arange(-30, 51)                      # -300 ... 500 ms
    kernels = {"lick": lick_kernel(lags * BIN), "tone": tone_kernel(lags * BIN)}
    licks, tones, lights, spikes = [], [], [], {0: [], 1: []}
    n = int(round(trial / BIN))
    for start in starts:
        bouts = np.sort(rng.uniform(0.8, trial - 1.5, rng.integers(1, 3)))
        trial_licks = np.concatenate([b + np.arange(rng.integers(3, 7)) * 0.14
                                      + rng.normal(0, 0.01) for b in bouts])
        trial_tones = np.sort(rng.uniform(0.5, trial - 0.5, 2))
        trial_lights = np.sort(rng.uniform(0.5, trial - 0.5, 2))
        counts = {name: np.bincount((times / BIN).astype(int), minlength=n)[:n]
                  for name, times in (("lick", trial_licks), ("tone", trial_tones))}
        for unit, (event, baseline) in enumerate((("lick", 6.0), ("tone", 4.0))):
            drive = np.zeros(n)
            for lag, weight in zip(lags, kernels[event]):
                shifted = np.roll(counts[event], lag)  # events in bin t - lag, this trial only
                if lag > 0:
                    shifted[:lag] = 0
                elif lag < 0:
                    shifted[lag:] = 0
                drive += weight * shifted
            k = rng.poisson(np.exp(np.log(baseline * BIN) + drive))
            spikes[unit].append(start + (np.repeat(np.arange(n), k) + rng.random(k.sum())) * BIN)
        licks.append(start + trial_licks)
        tones.append(start + trial_tones)
        lights.append(start + trial_lights)
    support = nap.IntervalSet(0.0, starts[-1] + trial + gap)
    ts = lambda parts: nap.Ts(t=np.sort(np.concatenate(parts)), time_support=support)
    data = {"spikes": nap.TsGroup({u: ts(spikes[u]) for u in (0, 1)}, time_support=support),
            "licks": ts(licks),
            "stimuli": nap.TsGroup({0: ts(tones), 1: ts(lights)}, time_support=support),
            "trials": trials}
    return data


def draw(ax, curve, unit, truth, title):
    part = curve[unit]
    lags = curve.index.to_numpy(float) * 1000
    ax.axvline(0, color="0.6", lw=0.8)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.fill_between(lags, part["lower"], part["upper"], color="C0", alpha=0.25, lw=0)
    ax.plot(lags, part["estimate"], color="C0", lw=1.8, label="fit (95% band)")
    ax.plot(lags, truth(lags / 1000), "k--", lw=1, label="truth")
    ax.set(xlabel="lag (ms; < 0: before the event)", ylabel="log-rate change",
           title=title)
    ax.legend(frameon=False, fontsize=8)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parent / "output" / NAME,
                        help="folder for the figures (default: examples/output/%(default)s)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    data = simulate(seed=0)
    print("Data: a SIMULATED session (known truth): 80 trials of 8 s as epochs, "
          f"{len(data['licks'])} licks, {len(data['stimuli'][0])} tones, "
          f"{len(data['stimuli'][1])} lights; unit 0 ramps up before licks, unit 1 answers "
          "tones.\n")

    formula = f"spikes ~ {LICK} + {STIMULI}"
    res = gf.fit(formula, data, bin_size=BIN, epochs="trials")
    design = res.design(data, epochs=data["trials"])
    print(f"{res.formula}\n(10 ms bins, trials as epochs; rows dropped per trial: "
          f"{design.dropped['window'] // 80} at the start, where the kernels' past is not "
          f"recorded, {design.dropped['missing'] // 80} at the end, where the lick kernel "
          "would read past the trial)\n")

    lick = res.curve("licks", scale="log")
    tone = res.curve("stimuli[0]", scale="log")
    light = res.curve("stimuli[1]", scale="log")
    lags = lick.index.to_numpy(float)
    r_lick = np.corrcoef(lick[(0, "estimate")], lick_kernel(lags))[0, 1]
    tone_lags = tone.index.to_numpy(float)
    r_tone = np.corrcoef(tone[(1, "estimate")], tone_kernel(tone_lags))[0, 1]
    before = lags < 0
    peak = lags[np.argmax(lick[(0, "estimate")].to_numpy())]
    print(f"Unit 0, lick kernel over {1000 * lags[0]:+.0f} ... {1000 * lags[-1]:+.0f} ms: "
          f"correlation with the truth r = {r_lick:.3f}; peak at {1000 * peak:+.0f} ms "
          f"(truth -50 ms); {before.sum()} lags before the lick.")
    print(f"Unit 1, tone kernel: r = {r_tone:.3f} with the truth; light kernel within "
          f"{np.abs(light[(1, 'estimate')]).max():.2f} of 0 (truth: no response).\n")

    models = {"causal lick kernel": f"spikes[0] ~ {CAUSAL_LICK} + {STIMULI}",
              "anticipatory lick kernel": f"spikes[0] ~ {LICK} + {STIMULI}"}
    table = gf.compare(models, data, bin_size=BIN, epochs="trials", cv=5)
    columns = ["n_params", "cv_bits_per_spike", "cv_bits_per_spike_se",
               "delta_cv_bits_per_spike"]
    print("Unit 0, 5-fold cross-validated comparison (contiguous blocks of 16 trials):")
    print(table[columns].to_string(float_format=lambda v: f"{v:.4g}"), "\n")

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), layout="constrained")
    draw(axes[0], lick, 0, lick_kernel, "unit 0: around each lick")
    draw(axes[1], tone, 1, tone_kernel, "unit 1: after each tone")
    draw(axes[2], light, 1, lambda s: 0 * s, "unit 1: after each light")
    fig.suptitle("Event kernels, res.curve(term, scale=\"log\") (simulated data)")
    fig.savefig(args.out / "kernels.png", dpi=110)
    plt.close(fig)

    best = table["cv_bits_per_spike"].idxmax()
    print(f"Found: the lick kernel starting 200 ms before the lick recovers the ramp "
          f"(r = {r_lick:.2f}); best held-out model for unit 0: '{best}'.")
    print(f"Figures in {args.out}: kernels.png ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
