"""Simulated current-clamp recording: a neuron driven by injected coloured-noise current.

Mirrors the real recording in ``shared/data/gif_cell3_noise`` (Pozzorini et al. 2015): 20 s
sweeps of Ornstein-Uhlenbeck current (tau = 3 ms) whose amplitude is modulated as
150 + 75 sin(2 pi t / 5 s) pA around a +150 pA offset, sweeps starting every 41 s, a
regular-spiking cell at about 10 Hz. The spikes come from a known stimulus filter and a
refractory spike-history filter, so ``spikes ~ filter(current, ...) + history(...)`` has a
ground truth.
"""

from __future__ import annotations

import numpy as np
import pynapple as nap
from scipy.signal import lfilter

from glmformula.datasets._simulate import (
    DT,
    MAX_RATE_HZ,
    SimulatedRecording,
    exp_filter,
    grid,
    ou_process,
    readonly,
    simulate_recurrent,
    spike_times,
    streams,
    tsgroup,
)

#: Current sampling interval (s): 1 kHz (the real recording is 10 kHz).
CURRENT_DT = 0.001
#: Support of the stimulus filter (s).
STIMULUS_WINDOW = 0.2

_DC = 150.0  # pA
_SIGMA_MEAN = 150.0  # pA
_SIGMA_MOD = 75.0  # pA
_SIGMA_PERIOD = 5.0  # s
_NOISE_TAU = 0.003  # s

# Stimulus filter: a fast alpha function (tau 4 ms) minus a slow shallow one (tau 16 ms): positive
# up to 18.5 ms (peak 0.94 at 3.8 ms), negative after (deepest, -0.087, at 29 ms). The cell
# responds to upswings of the current, and the slow lobe cancels half of the fast lobe's response
# to a constant current.
_STIM_TAU_FAST = 0.004
_STIM_TAU_SLOW = 0.016
_STIM_SLOW_RATIO = 0.125  # slow-lobe peak relative to the fast one

# Spike history: absolute-like refractoriness over a few ms plus adaptation over ~20 ms,
# negligible (< 0.005) by 100 ms.
_HISTORY_AMPLITUDES = (-6.0, -1.0)
_HISTORY_TAUS = (0.003, 0.015)

_DESCRIPTION = (
    "SIMULATED current-clamp recording (not real data), modelled on the Pozzorini et al. (2015) "
    "frozen-noise protocol. {n} sweeps of {d:.0f} s (starting every {period:.0f} s) inject an "
    "Ornstein-Uhlenbeck current (tau 3 ms, sampled at 1 kHz) whose standard deviation is "
    "modulated as 150 + 75 sin(2 pi t / 5 s) pA, riding on a +150 pA offset; {frozen}. One unit "
    "spikes as a Poisson GLM at 1 ms resolution: log rate = baseline + (k * current)(t) + spike "
    "history, with a known biphasic causal stimulus filter k over 200 ms (fast positive lobe, "
    "shallow slow negative lobe) and a refractory/adapting history filter over 100 ms."
)


def _stimulus_shape(lag):
    """Unscaled biphasic stimulus filter, zero for ``lag <= 0`` and beyond the window."""
    lag = np.asarray(lag, dtype=float)
    pos = np.clip(lag, 0.0, None)
    fast = pos / _STIM_TAU_FAST * np.exp(1.0 - pos / _STIM_TAU_FAST)
    slow = pos / _STIM_TAU_SLOW * np.exp(1.0 - pos / _STIM_TAU_SLOW)
    return np.where((lag > 0) & (lag <= STIMULUS_WINDOW), fast - _STIM_SLOW_RATIO * slow, 0.0)


# log-Hz per pA per s: a sample of current held for dt seconds at lag `lag` weighs
# stimulus_filter(lag) * dt. Calibrated (not fitted to data) so that the filtered noise has a
# standard deviation of about 0.8 log-units at the mean noise amplitude (150 pA) and the cell
# fires at about 10 Hz with a 1.5:1 ratio between the strong and weak noise phases, as cell 3.
_STIM_AMPLITUDE = 1.0
_BASELINE = 1.3  # log-Hz


def stimulus_filter(lag):
    """True stimulus filter (log-Hz per pA per s); see :func:`current_injection`."""
    return _STIM_AMPLITUDE * _stimulus_shape(lag)


def current_injection(seed: int = 0, n_sweeps: int = 9, sweep_duration: float = 20.0, *,
                      sweep_period: float = 41.0, frozen: bool = False) -> SimulatedRecording:
    """Simulated neuron driven by injected coloured-noise current.

    The cell's log rate in 1 ms bin ``t`` (bin ``[t, t + 1 ms)``) is::

        log rate(t) = baseline + sum_{l >= 1} stimulus_filter(l dt) * current[t - l] * dt
                      + sum_{own spikes s before t} history_filter(t - s)

    with ``dt = 1 ms`` and ``current[n]`` the sample at time ``sweep_start + n dt`` (held over
    its millisecond). The filter is a density (per second), so for a GLM with bins of width
    ``b`` (bin-averaged current) the expected per-bin weight at lag ``tau`` is about
    ``stimulus_filter(tau) * b``. The stimulus filter sees 0 pA before each sweep onset (nothing
    is injected between sweeps); spike history restarts at each onset. Counts are Poisson given
    the rate, so a 1 ms bin can rarely hold two spikes.

    Parameters
    ----------
    seed : int
        Seed; the same seed and arguments give identical data.
    n_sweeps : int
        Number of sweeps.
    sweep_duration : float
        Length of each sweep (s).
    sweep_period : float
        Time between sweep onsets (s); must exceed ``sweep_duration`` (the real recording: 41 s).
    frozen : bool
        If True, every sweep gets the same noise (as in the real frozen-noise recording); by
        default each sweep gets fresh noise, so the stimulus filter can be cross-validated across
        sweeps.

    Returns
    -------
    SimulatedRecording
        Keys:

        ``current`` : Tsd, pA, 1 kHz, time support ``sweeps``.
        ``sweeps`` : IntervalSet, ``n_sweeps`` disjoint epochs ``[k period, k period + duration]``.
        ``spikes`` : TsGroup with one unit (id 0); time support ``sweeps``.

        ``truth`` fields:

        ``baseline`` : float, log-Hz.
        ``stimulus_filter(lag)`` : log-Hz per pA per s (density); 0 for ``lag <= 0`` and
            ``lag > 0.2 s``. Positive up to 18.5 ms (peak 0.94 at 3.8 ms), then a shallow negative
            lobe (deepest, -0.087, at 29 ms); its integral is 0.0054 log-Hz per pA.
        ``stimulus_window`` : 0.2 s.
        ``history_filter(lag)`` : log-rate change per own spike ``lag`` s ago; 0 for
            ``lag <= 0``; negligible beyond 0.1 s.
        ``dc_offset`` : 150 pA. ``noise_tau`` : 0.003 s.
        ``noise_sd(t)`` : noise standard deviation (pA) at time ``t`` (s) since sweep onset.
        ``noise`` : (n_sweeps, n_samples) the unit-variance OU noise of each sweep.
        ``frozen`` : bool. ``max_rate`` : rate ceiling of the simulation (Hz; the feed-forward
            rate exceeds it in about 0.03 % of bins). ``dt`` : simulation bin (s).
    """
    if sweep_period <= sweep_duration:
        raise ValueError(f"sweep_period ({sweep_period} s) must exceed sweep_duration "
                         f"({sweep_duration} s) so that sweeps are disjoint.")
    stim_rng, spk_rng = streams(seed, 2)
    n_samples = int(round(sweep_duration / CURRENT_DT))
    onsets = sweep_period * np.arange(n_sweeps)
    sweeps = nap.IntervalSet(start=onsets, end=onsets + n_samples * CURRENT_DT)

    if frozen:
        noise = np.tile(ou_process(stim_rng, n_samples, _NOISE_TAU, CURRENT_DT), (n_sweeps, 1))
    else:
        noise = ou_process(stim_rng, n_samples, _NOISE_TAU, CURRENT_DT, size=n_sweeps).T
    t_rel = CURRENT_DT * np.arange(n_samples)

    def noise_sd(t):
        return _SIGMA_MEAN + _SIGMA_MOD * np.sin(2.0 * np.pi * np.asarray(t, float) / _SIGMA_PERIOD)

    current = _DC + noise_sd(t_rel) * noise  # (n_sweeps, n_samples), pA

    # Causal FIR over the filter window, run per sweep (lfilter along time) so that the filter
    # never sees the previous sweep; lag 0 has weight 0, so bin t only sees samples before t.
    # No current is injected between sweeps, so the filter sees 0 pA before each onset.
    lags = DT * np.arange(int(round(STIMULUS_WINDOW / DT)) + 1)
    taps = stimulus_filter(lags) * DT
    stim_drive = lfilter(taps, [1.0], current, axis=1)

    starts, first = grid(sweeps, DT)
    drive = (_BASELINE + stim_drive.reshape(-1))[:, None]
    taus = _HISTORY_TAUS
    weights = np.asarray(_HISTORY_AMPLITUDES, dtype=float)[:, None, None]
    counts = simulate_recurrent(drive, taus, weights, first, spk_rng, DT)
    spikes = tsgroup(spike_times(counts, starts, spk_rng, DT), sweeps)

    t = (onsets[:, None] + t_rel[None, :]).reshape(-1)
    truth = {
        "baseline": float(_BASELINE),
        "stimulus_filter": stimulus_filter,
        "stimulus_window": STIMULUS_WINDOW,
        "history_filter": exp_filter(_HISTORY_AMPLITUDES, _HISTORY_TAUS),
        "dc_offset": _DC,
        "noise_tau": _NOISE_TAU,
        "noise_sd": noise_sd,
        "noise": readonly(noise),
        "frozen": bool(frozen),
        "max_rate": MAX_RATE_HZ,
        "dt": DT,
    }
    data = {
        "current": nap.Tsd(t=t, d=current.reshape(-1), time_support=sweeps),
        "sweeps": sweeps,
        "spikes": spikes,
    }
    description = _DESCRIPTION.format(
        n=n_sweeps, d=n_samples * CURRENT_DT, period=sweep_period,
        frozen="the same noise in every sweep (frozen)" if frozen else "fresh noise in every sweep")
    return SimulatedRecording(name="current_injection", data=data, truth=truth,
                              description=description, seed=int(seed))
