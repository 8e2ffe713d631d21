"""Simulated linear-track session: a place cell and a speed cell whose speed looks like place.

The classic lesson: on a linear track the animal runs fast in the middle and slowly near the
ends, so a cell that only cares about running speed has a position tuning curve that looks
like a (central) place field. A GLM with both covariates, ``spikes ~ onehot(position, 7) +
speed``, attributes the modulation to speed.
"""

from __future__ import annotations

import numpy as np
import pynapple as nap
from scipy.ndimage import gaussian_filter1d

from glmformula.datasets._simulate import (
    DT,
    MAX_RATE_HZ,
    SimulatedRecording,
    grid,
    poisson_counts,
    readonly,
    spike_times,
    streams,
    tsgroup,
)

#: Tracking interval (s): 50 Hz.
TRACK_DT = 0.02
#: Track length (cm).
TRACK_LENGTH = 100.0
#: Gaussian smoothing of |d position / dt| (s).
SPEED_SMOOTHING = 0.1

_BASELINE = (np.log(0.5), np.log(1.5))  # log-Hz
_PLACE_CENTER = 30.0  # cm
_PLACE_WIDTH = 8.0  # cm (standard deviation)
_PLACE_AMPLITUDE = 2.5  # log-rate at the field centre
_SPEED_COEF = 0.04  # log-rate per cm/s (unit 1)

_DESCRIPTION = (
    "SIMULATED linear-track session (not real data). The animal runs back-and-forth laps on a "
    "100 cm track (tracked at 50 Hz), slowly near the ends and fast in the middle (lap durations "
    "vary, so speed is correlated with position but not determined by it), and pauses at each "
    "end. Unit 0 is a place cell: log rate = log(0.5 Hz) + 2.5 exp(-(x - 30 cm)^2 / (2 (8 cm)^2)), "
    "no speed effect. Unit 1 is a speed cell: log rate = log(1.5 Hz) + 0.04 per cm/s x speed, with "
    "NO position effect; its position tuning curve nevertheless peaks mid-track because the "
    "animal is fastest there. Spikes are inhomogeneous Poisson at 1 ms resolution, driven by the "
    "recorded position and speed (linearly interpolated)."
)


def _laps(rng: np.random.Generator, duration: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Back-and-forth trajectory sampled at ``TRACK_DT``.

    Each lap follows ``x = L/2 (1 - cos(pi phase))`` so speed is zero at the ends and largest
    mid-track; lap durations (2.5-6 s) and end pauses (0.5-2.5 s) are random.

    Returns
    -------
    t : numpy.ndarray
        Sample times (s).
    x : numpy.ndarray
        Position (cm).
    laps : numpy.ndarray, shape (n_laps, 2)
        Start and end (s) of each lap (pauses excluded).
    """
    n = int(round(duration / TRACK_DT))
    t = TRACK_DT * np.arange(n)
    x = np.empty(n)
    laps = []
    clock, at_far_end = 0.0, False
    while clock < duration:
        pause = rng.uniform(0.5, 2.5)
        lap = rng.uniform(2.5, 6.0)
        in_pause = (t >= clock) & (t < clock + pause)
        x[in_pause] = TRACK_LENGTH if at_far_end else 0.0
        start = clock + pause
        in_lap = (t >= start) & (t < start + lap)
        phase = (t[in_lap] - start) / lap
        forward = TRACK_LENGTH / 2 * (1.0 - np.cos(np.pi * phase))
        x[in_lap] = TRACK_LENGTH - forward if at_far_end else forward
        if start < duration:
            laps.append((start, min(start + lap, duration)))
        clock = start + lap
        at_far_end = not at_far_end
    return t, x, np.array(laps)


def linear_maze(seed: int = 0, duration: float = 600.0) -> SimulatedRecording:
    """Simulated linear-track session with a place cell and a speed-only cell.

    Parameters
    ----------
    seed : int
        Seed; the same seed and arguments give identical data.
    duration : float
        Session length (s); the session is ``[0, duration)``.

    Returns
    -------
    SimulatedRecording
        Keys:

        ``spikes`` : TsGroup of 2 units (0: place cell, 1: speed cell), metadata ``kind``
            ("place", "speed").
        ``position`` : Tsd, cm in [0, 100], 50 Hz.
        ``speed`` : Tsd, cm/s, ``|d position / dt|`` smoothed with a 0.1 s Gaussian, 50 Hz.
        ``run`` : IntervalSet, the laps (end pauses excluded).

        ``truth`` fields:

        ``baseline`` : (2,) log-Hz.
        ``place_center`` : (2,) cm (NaN for unit 1). ``place_width`` : (2,) cm (s.d.).
        ``place_amplitude`` : (2,) log-rate at the centre (0 for unit 1).
        ``speed_coef`` : (2,) log-rate per cm/s: ``[0, 0.04]``.
        ``position_tuning(unit, x)`` : log-rate contribution of position (identically 0 for
            unit 1).
        ``speed_tuning(unit, speed)`` : ``speed_coef[unit] * speed``.
        ``log_rate(unit, x, speed)`` : ``baseline + position_tuning + speed_tuning`` (log-Hz).
        ``max_rate`` : rate ceiling of the simulation (Hz). ``dt`` : simulation bin (s).

        Spikes are inhomogeneous Poisson in 1 ms bins driven by ``position`` and ``speed``
        linearly interpolated at the bin centres.
    """
    beh_rng, spk_rng = streams(seed, 2)
    duration = round(float(duration) / TRACK_DT) * TRACK_DT
    session = nap.IntervalSet(0.0, duration)
    t, x, laps = _laps(beh_rng, duration)
    speed = gaussian_filter1d(np.abs(np.gradient(x, TRACK_DT)), SPEED_SMOOTHING / TRACK_DT)

    baseline = readonly(_BASELINE)
    center = readonly([_PLACE_CENTER, np.nan])
    width = readonly([_PLACE_WIDTH, np.nan])
    amplitude = readonly([_PLACE_AMPLITUDE, 0.0])
    speed_coef = readonly([0.0, _SPEED_COEF])

    def position_tuning(unit, pos):
        unit = np.asarray(unit, dtype=int)
        pos = np.asarray(pos, dtype=float)
        # Unit 1 has amplitude 0: its NaN centre must not leak into the result.
        bump = np.exp(-(pos - np.nan_to_num(center[unit])) ** 2
                      / (2.0 * np.nan_to_num(width[unit], nan=1.0) ** 2))
        return amplitude[unit] * bump

    def speed_tuning(unit, spd):
        return speed_coef[np.asarray(unit, dtype=int)] * np.asarray(spd, dtype=float)

    def log_rate(unit, pos, spd):
        unit = np.asarray(unit, dtype=int)
        return baseline[unit] + position_tuning(unit, pos) + speed_tuning(unit, spd)

    starts, _ = grid(session, DT)
    centres = starts + DT / 2
    x_fine = np.interp(centres, t, x)
    s_fine = np.interp(centres, t, speed)
    units = np.arange(2)
    eta = log_rate(units, x_fine[:, None], s_fine[:, None])
    counts = poisson_counts(eta, spk_rng, DT)
    spikes = tsgroup(spike_times(counts, starts, spk_rng, DT), session,
                     metadata={"kind": ["place", "speed"]})

    truth = {
        "baseline": baseline,
        "place_center": center,
        "place_width": width,
        "place_amplitude": amplitude,
        "speed_coef": speed_coef,
        "position_tuning": position_tuning,
        "speed_tuning": speed_tuning,
        "log_rate": log_rate,
        "max_rate": MAX_RATE_HZ,
        "dt": DT,
    }
    data = {
        "spikes": spikes,
        "position": nap.Tsd(t=t, d=x, time_support=session),
        "speed": nap.Tsd(t=t, d=speed, time_support=session),
        "run": nap.IntervalSet(start=laps[:, 0], end=laps[:, 1]),
    }
    return SimulatedRecording(name="linear_maze", data=data, truth=truth,
                              description=_DESCRIPTION, seed=int(seed))
