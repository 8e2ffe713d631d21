"""Does functional coupling between head-direction cells change with angular head speed?

Fits one Poisson GLM per cell of a head-direction population::

    spikes ~ cyclic(head_direction, 12) + history(8, log, window=100ms)
           + coupling(all) + coupling(all):fast

where ``fast`` is an IntervalSet derived from the data: the times when the angular head speed
(|d head_direction / dt|, smoothed by a Gaussian of 0.2 s sd) is above its median over the
fitted epochs. ``coupling(all):fast`` multiplies every coupling column by the indicator of
``fast``: a pair's coupling filter is ``K w`` in slow epochs and ``K (w + w_fast)`` in fast ones.
Its likelihood-ratio test (``res.summary(data=data, refit=["coupling:fast"])``: the model
refitted without it on the same bins) asks, cell by cell, whether the coupling onto that cell
differs between fast and slow head turns (df = 31 sources x 8 filters = 248). The script prints
the table of the test, writes it as markdown and draws the coupling matrices per state
(``res.coupling_matrix(state=...)``).

It uses the REAL ADn/PoS recording (Mouse28-140313, Peyrache et al. 2015) from
``../shared/data/hd_mouse28_140313`` beside the repository when it is there, else (or with
``--simulated``) the SIMULATED population ``gf.datasets.head_direction()``, whose coupling does
not depend on speed (a negative control: the test should not reject there), and says which.

Run::

    python examples/state_dependent_coupling.py [--out examples/output/] [--minutes M]
        [--bin-size 10ms] [--ridge 0] [--controls] [--simulated]

``--controls`` adds two checks of the test (four more fits): the same test with ``fast``
shifted 10 min in time (a null: it should reject at its nominal rate), and with the tuning
allowed to change in fast epochs (``cyclic(head_direction, 12):fast`` in both models: a
confound that ``coupling(all):fast`` could otherwise absorb).

Choices:

* 10 ms bins, the whole valid session (38 min) by default (``--minutes`` takes the first M
  minutes of the valid epochs instead).
* No penalty (``smoothing=None``, ``--ridge 0``): the statistic is twice the difference of
  the two models' log-likelihoods, referred to chi-square with 248 df under "coupling is the
  same in fast and slow epochs". A penalty shrinks both models and makes this test very
  conservative (with ``--ridge 3e-4``, as ``head_direction.py`` uses for its matrix, most
  statistics fall below their df). Unpenalised, pairs of cells that rarely fire within 100 ms
  of each other leave some coupling weights barely determined (very large integrals): the
  matrices are drawn with colours clipped at the 90th percentile of their magnitudes.
* About 12 minutes on a 2-core machine for the whole session (the fit 4 min; the refit and
  the standard errors the summary and the curves use, 8 min), 17 with ``--controls``.
* The state is the bin being predicted: the filtered past spikes of the other cells are
  multiplied by the indicator of ``fast`` at the bin whose count the model predicts.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pynapple as nap
from scipy import stats

import glmformula as gf
from glmformula.results.plotting import draw_matrix, new_figure

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hd_mouse28_140313"
FORMULA = ("spikes ~ cyclic(head_direction, 12) + history(8, log, window=100ms) "
           "+ coupling(all) + coupling(all):fast")
SMOOTHING_SD = 0.2  # s, Gaussian smoothing of the angular speed before the median split


def load(minutes: float | None, simulated: bool):
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
        epochs = valid
        if minutes is not None:
            start = float(wake.start[0])
            epochs = valid.intersect(nap.IntervalSet(start, start + 60.0 * minutes))
        text = (f"REAL recording {file.name} ({len(spikes)} ADn/PoS head-direction cells), "
                f"{epochs.tot_length() / 60:.1f} min of the valid epochs")
        return {"spikes": spikes, "head_direction": angle}, epochs, text
    recording = gf.datasets.head_direction(seed=0, n_units=8, duration=300.0)
    epochs = recording["wake"]
    text = (f"SIMULATED recording gf.datasets.head_direction(n_units=8) (coupling does not "
            f"depend on speed; {epochs.tot_length():.0f} s of wake)"
            + ("" if simulated else f"; the real one was not found at {REAL}"))
    return {"spikes": recording["spikes"], "head_direction": recording["head_direction"]}, \
        epochs, text


def fast_epochs(angle: nap.Tsd, epochs: nap.IntervalSet, sd: float = SMOOTHING_SD):
    """The IntervalSet where the smoothed angular speed is above its median, within ``epochs``.

    The angular speed is ``|d unwrap(angle) / dt|`` (rad/s), smoothed by a Gaussian of ``sd``
    seconds, each epoch on its own (normalised at the epoch's edges, never across a gap).

    Returns
    -------
    (IntervalSet, Tsd, float)
        The fast epochs, the smoothed angular speed (rad/s) and its median (rad/s).
    """
    times, speeds = [], []
    for start, end in epochs.values:
        inside = (angle.t >= start) & (angle.t < end)  # adjacent epochs share no sample
        if inside.sum() < 3:
            continue
        t = angle.t[inside]
        turn = np.abs(np.gradient(np.unwrap(angle.values[inside]), t))  # rad/s
        width = sd / float(np.median(np.diff(t)))  # the sd in samples
        half = int(np.ceil(4 * width))
        kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / width) ** 2)
        centred = slice(half, half + len(t))  # "full" then cut: epochs shorter than the kernel
        weight = np.convolve(np.ones_like(turn), kernel)[centred]
        times.append(t)
        speeds.append(np.convolve(turn, kernel)[centred] / weight)
    speed = nap.Tsd(t=np.concatenate(times), d=np.concatenate(speeds))
    median = float(np.median(speed.values))
    fast = speed.threshold(median, method="above").time_support.intersect(epochs)
    return fast, speed, median


def lr_table(frame: pd.DataFrame, res, names) -> pd.DataFrame:
    """Per cell: likelihood-ratio statistic, df and p of the fast-epoch coupling term."""
    term = res.resolve_term("coupling:fast")
    rows = frame.xs(term, level="term")
    return pd.DataFrame({"cell": [names.get(u, str(u)) for u in rows.index],
                         "lr_stat": rows["lr_stat"].to_numpy(float),
                         "df": rows["columns"].to_numpy(int),
                         "p_value": rows["lr_pvalue"].to_numpy(float)},
                        index=pd.Index(rows.index, name="unit"))


def markdown(table: pd.DataFrame, header: str) -> str:
    lines = [header, "", "| unit | cell | LR statistic | df | p |", "|---:|---|---:|---:|---:|"]
    for unit, row in table.iterrows():
        p = "<1e-16" if row.p_value < 1e-16 else f"{row.p_value:.3g}"
        lines.append(f"| {unit} | {row.cell} | {row.lr_stat:.1f} | {row.df} | {p} |")
    return "\n".join(lines) + "\n"


def plot_states(res, out: Path) -> Path:
    """Coupling integrals in slow epochs, in fast ones and their difference, cells sorted by
    preferred head direction."""
    curve = res.curve("head_direction", n_points=360, scale="log")
    grid = curve.index.to_numpy(float)
    order = np.argsort([grid[np.argmax(curve[(u, "estimate")].to_numpy())]
                        for u in res.unit_ids])
    slow = res.coupling_matrix().iloc[order, order]
    fast = res.coupling_matrix(state="fast").iloc[order, order]
    figure, axes = new_figure(3, panel_size=(4.6, 4.2), max_columns=3)
    # barely determined pairs (very large integrals) would set the colour scale: clip it
    limit = float(np.nanpercentile(np.abs(np.concatenate([slow.to_numpy().ravel(),
                                                          fast.to_numpy().ravel()])), 90))
    for ax, matrix, title in ((axes[0], slow, "slow head turns (outside fast)"),
                              (axes[1], fast, "fast head turns (state=\"fast\")"),
                              (axes[2], fast - slow, "fast - slow (coupling(all):fast)")):
        draw_matrix(figure, ax, matrix, limit=limit,
                    label="sum over lags of the filter (log-rate; colours clipped)")
        ax.set_title(title, fontsize=10)
    figure.suptitle("coupling per state, cells sorted by preferred head direction",
                    fontsize=11)
    path = out / "coupling_states.png"
    figure.savefig(path, dpi=80)
    return path


def shifted(intervals: nap.IntervalSet, epochs: nap.IntervalSet, seconds: float):
    """``intervals`` moved ``seconds`` later, wrapped around the span of ``epochs`` and cut to
    them: the same durations and alternation, no longer aligned with the behaviour."""
    first, last = float(epochs.start[0]), float(epochs.end[-1])
    moved = (intervals.values - first + seconds) % (last - first) + first
    starts, ends = moved[:, 0], moved[:, 1]
    cut = ends < starts  # an interval split by the wrap
    starts = np.concatenate([starts[~cut], starts[cut], np.full(cut.sum(), first)])
    ends = np.concatenate([ends[~cut], np.full(cut.sum(), last), ends[cut]])
    order = np.argsort(starts)
    return nap.IntervalSet(starts[order], ends[order]).intersect(epochs)


def lr_test(full, reduced, df: int) -> np.ndarray:
    """p-values of the likelihood-ratio test of two fits on the same bins, per cell."""
    assert full.n_rows == reduced.n_rows, "the two models must use the same bins"
    lr = 2 * (full.log_likelihood_units - reduced.log_likelihood_units)
    return stats.chi2.sf(np.maximum(lr, 0.0), df), lr


def controls(data, epochs, fast, fit, df: int, names: dict) -> list[str]:
    """Two checks of the test, each one likelihood-ratio test per cell (lines of a report).

    1. A null: ``fast`` shifted 10 min later in time (a third of the span of shorter data; its
       durations and alternation kept, no longer aligned with the angular speed): the test
       should reject at its nominal rate.
    2. A confound: fast turns may change the tuning and the rate (head-direction cells
       anticipate the head angle), which ``coupling(all):fast`` could absorb. Adding
       ``cyclic(head_direction, 12):fast`` to both models (12 columns: it also holds the rate
       change in fast epochs) asks whether coupling still changes.
    """
    lines = []
    reduced_formula = FORMULA.replace(" + coupling(all):fast", "")
    reduced = fit(reduced_formula, data)
    shift = min(600.0, (float(epochs.end[-1]) - float(epochs.start[0])) / 3)
    null_state = shifted(fast, epochs, shift)
    p, lr = lr_test(fit(FORMULA, dict(data, fast=null_state)), reduced, df)
    overlap = null_state.intersect(fast).tot_length() / fast.tot_length()
    lines.append(f"null control, fast shifted by {shift:.0f} s ({overlap:.0%} overlap with "
                 f"fast): "
                 f"{int((p < 0.01).sum())} of {len(p)} cells reject at 0.01 "
                 f"({int((p < 0.01 / len(p)).sum())} after Bonferroni); median LR "
                 f"{np.median(lr):.0f} (df {df})")
    tuning = " + cyclic(head_direction, 12):fast"
    reduced_tuned = fit(reduced_formula + tuning, data)
    p_tuning, _ = lr_test(reduced_tuned, reduced, 12)
    lines.append(f"the tuning (and rate) changes with fast, cyclic(head_direction, 12):fast: "
                 f"{int((p_tuning < 0.01).sum())} of {len(p_tuning)} cells reject at 0.01")
    p, lr = lr_test(fit(FORMULA + tuning, data), reduced_tuned, df)
    worst = ", ".join(f"{names.get(u, u)} (p = {q:.2g})" for u, q in
                      sorted(zip(data["spikes"].index, p), key=lambda x: x[1])[:3])
    lines.append(f"coupling(all):fast with cyclic(head_direction, 12):fast in both models: "
                 f"{int((p < 0.01).sum())} of {len(p)} cells reject at 0.01 "
                 f"({int((p < 0.01 / len(p)).sum())} after Bonferroni); median LR "
                 f"{np.median(lr):.0f}; smallest p: {worst}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "output"),
                        help="folder for the PNG and the markdown table "
                             "(default: examples/output/)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="fit the first M minutes of the valid epochs (default: all)")
    parser.add_argument("--bin-size", default="10ms", help="bin size (default 10ms)")
    parser.add_argument("--ridge", type=float, default=0.0,
                        help="Ridge penalty strength (default 0: none)")
    parser.add_argument("--simulated", action="store_true",
                        help="use the built-in simulation even where the real data exist")
    parser.add_argument("--controls", action="store_true",
                        help="also run the null (time-shifted state) and tuning-confound "
                             "controls: four more fits")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    data, epochs, description = load(args.minutes, args.simulated)
    print("data:", description)
    fast, speed, median = fast_epochs(data["head_direction"], epochs)
    data["fast"] = fast
    print(f"fast epochs: angular speed (smoothed, sd {SMOOTHING_SD} s) above its median "
          f"{median:.2f} rad/s: {len(fast)} intervals, {fast.tot_length():.0f} s of "
          f"{epochs.tot_length():.0f} s")

    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rarely co-firing pairs: nearly separated weights
        res = gf.fit(FORMULA, data, bin_size=args.bin_size, epochs=epochs, smoothing=None,
                     regularizer=gf.Ridge(args.ridge) if args.ridge > 0 else None)
        fitted = time.perf_counter()
        print(f"fitted {len(res.unit_ids)} cells x {res.n_rows} bins of {args.bin_size}, "
              f"{len(res.unit_columns[0])} weights per cell, in {fitted - started:.0f} s "
              f"(solver {res.solver}, converged {res.converged})")
        frame = res.summary(data=data, refit=["coupling:fast"])
    print(f"likelihood-ratio test (one refit without coupling(all):fast): "
          f"{time.perf_counter() - fitted:.0f} s")

    names = {}
    metadata = getattr(data["spikes"], "metadata", None)
    if metadata is not None and "name" in metadata.columns:
        names = dict(zip(data["spikes"].index, metadata["name"]))
    table = lr_table(frame, res, names)
    n = len(table)
    reject = int((table.p_value < 0.01).sum())
    bonferroni = int((table.p_value < 0.01 / n).sum())
    print(table.to_string(float_format=lambda v: f"{v:.3g}"))
    print(f"{reject} of {n} cells reject 'same coupling in fast and slow epochs' at p < 0.01 "
          f"({bonferroni} at 0.01 / {n}, Bonferroni)")

    slow_matrix = res.coupling_matrix().to_numpy()
    fast_matrix = res.coupling_matrix(state="fast").to_numpy()
    off = ~np.eye(n, dtype=bool)
    rho = stats.spearmanr(slow_matrix[off], fast_matrix[off]).statistic
    print(f"coupling integrals over pairs (robust to barely determined pairs): slow vs fast "
          f"rank correlation {rho:.2f}; median |integral| slow "
          f"{np.median(np.abs(slow_matrix[off])):.3f}, fast "
          f"{np.median(np.abs(fast_matrix[off])):.3f}")

    penalty = f"Ridge({args.ridge:g})" if args.ridge > 0 else "no penalty"
    header = (f"{description}; {res.n_rows} bins of {args.bin_size}; {FORMULA}; {penalty}; "
              f"fast = "
              f"smoothed angular speed above {median:.2f} rad/s ({fast.tot_length():.0f} s of "
              f"{epochs.tot_length():.0f} s); {reject} of {n} cells reject at p < 0.01 "
              f"({bonferroni} after Bonferroni)")
    text = markdown(table, header)
    if args.controls:
        checked = time.perf_counter()

        def fit(formula, fit_data):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return gf.fit(formula, fit_data, bin_size=args.bin_size, epochs=epochs,
                              smoothing=None, regularizer=res.regularizer)
        lines = controls(data, epochs, fast, fit, int(table.df.iloc[0]), names)
        print("\n".join(lines))
        print(f"controls: {time.perf_counter() - checked:.0f} s")
        text += "\n" + "\n".join(f"* {line}" for line in lines) + "\n"
    report = out / "state_dependent_coupling.md"
    report.write_text(text)
    paths = [plot_states(res, out), report]
    print("wrote", ", ".join(str(p) for p in paths))
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
