"""Simulated open-field session: 2-D Gaussian place fields whose gain grows with running speed.

The interaction is the point: the field's height on the log scale is multiplied by
``1 + gain * speed / speed_scale``, so ``rcos(x, 5):rcos(y, 5)`` alone fits an average field, and
``rcos(x, 5):rcos(y, 5):speed`` (or a field-by-speed interaction) is needed to recover the gain.
"""

from __future__ import annotations

import numpy as np
import pynapple as nap

from glmformula.datasets._simulate import (
    DT,
    MAX_RATE_HZ,
    SimulatedRecording,
    grid,
    ou_process,
    poisson_counts,
    readonly,
    spike_times,
    streams,
    tsgroup,
)

#: Tracking interval (s): 50 Hz.
TRACK_DT = 0.02
#: Side of the square box (cm).
BOX_SIZE = 100.0
#: Speed that doubles the field's log-rate amplitude when ``gain == 1`` (cm/s).
SPEED_SCALE = 20.0

_DESCRIPTION = (
    "SIMULATED open-field session (not real data). The animal does a smooth 2-D random walk in "
    "a 100 x 100 cm box with reflecting walls (tracked at 50 Hz; velocity correlated over about "
    "1 s, typical speed 5-30 cm/s with slow alternations between dawdling and running). Each of "
    "{n} units has a Gaussian place field whose height grows with speed: log rate = baseline + "
    "amplitude * exp(-|p - centre|^2 / (2 width^2)) * (1 + gain * speed / 20 cm/s). Spikes are "
    "inhomogeneous Poisson at 1 ms resolution, driven by the recorded x, y and speed (linearly "
    "interpolated)."
)


def _reflect(z: np.ndarray, size: float) -> np.ndarray:
    """Fold an unbounded coordinate into ``[0, size]`` as if it bounced off the walls."""
    z = np.mod(z, 2.0 * size)
    return np.where(z > size, 2.0 * size - z, z)


def place_2d(seed: int = 0, n_units: int = 6, duration: float = 900.0) -> SimulatedRecording:
    """Simulated 2-D place cells with a speed gain on the field.

    Parameters
    ----------
    seed : int
        Seed; the same seed and arguments give identical data.
    n_units : int
        Number of units.
    duration : float
        Session length (s); the session is ``[0, duration)``.

    Returns
    -------
    SimulatedRecording
        Keys:

        ``x``, ``y`` : Tsd, cm in [0, 100], 50 Hz.
        ``position`` : TsdFrame with columns ``x``, ``y`` (the same samples).
        ``speed`` : Tsd, cm/s, the walk's instantaneous speed (norm of its velocity).
        ``spikes`` : TsGroup, index ``0 .. n_units-1``, metadata ``center_x``, ``center_y`` (cm).

        ``truth`` fields:

        ``baseline`` : (n_units,) log-Hz (rate far from the field).
        ``amplitude`` : (n_units,) log-rate height of the field at ``speed = 0``.
        ``centers`` : (n_units, 2) cm. ``widths`` : (n_units,) cm (s.d. of the Gaussian).
        ``gain`` : (n_units,) dimensionless speed gain; ``speed_scale`` : 20 cm/s.
        ``field(unit, x, y)`` : ``amplitude * exp(-|p - c|^2 / (2 w^2))`` (log-rate, at rest).
        ``log_rate(unit, x, y, speed)`` :
            ``baseline + field(unit, x, y) * (1 + gain * speed / speed_scale)`` (log-Hz).
        ``max_rate`` : rate ceiling of the simulation (Hz). ``dt`` : simulation bin (s).
    """
    beh_rng, par_rng, spk_rng = streams(seed, 3)
    duration = round(float(duration) / TRACK_DT) * TRACK_DT
    session = nap.IntervalSet(0.0, duration)
    n = int(round(duration / TRACK_DT))
    t = TRACK_DT * np.arange(n)

    # Velocity: a 1 s-correlated Gaussian process per axis, scaled by a slow (20 s) log-normal
    # "motivation" so that periods of dawdling and of running alternate and the speed gain is
    # identifiable from a wide range of speeds at every place.
    velocity = 10.0 * ou_process(beh_rng, n, 1.0, TRACK_DT, size=2)
    velocity *= np.exp(0.35 * ou_process(beh_rng, n, 20.0, TRACK_DT))[:, None]
    start = beh_rng.uniform(0.0, BOX_SIZE, 2)
    xy = _reflect(start + np.cumsum(velocity, axis=0) * TRACK_DT, BOX_SIZE)
    speed = np.linalg.norm(velocity, axis=1)

    # Fields on a jittered grid away from the walls, so every field is fully inside the box.
    side = int(np.ceil(np.sqrt(n_units)))
    cells = par_rng.permutation(side * side)[:n_units]
    spacing = 70.0 / side
    centers = 15.0 + spacing * (np.stack([cells % side, cells // side], axis=1) + 0.5)
    centers += par_rng.uniform(-0.2, 0.2, (n_units, 2)) * spacing
    widths = par_rng.uniform(8.0, 14.0, n_units)
    amplitude = par_rng.uniform(1.8, 2.5, n_units)
    gain = par_rng.uniform(0.3, 0.6, n_units)
    baseline = np.log(par_rng.uniform(0.2, 0.8, n_units))

    centers, widths, amplitude = readonly(centers), readonly(widths), readonly(amplitude)
    gain, baseline = readonly(gain), readonly(baseline)

    def field(unit, x, y):
        unit = np.asarray(unit, dtype=int)
        dx = np.asarray(x, dtype=float) - centers[unit, 0]
        dy = np.asarray(y, dtype=float) - centers[unit, 1]
        d2 = dx**2 + dy**2
        return amplitude[unit] * np.exp(-d2 / (2.0 * widths[unit] ** 2))

    def log_rate(unit, x, y, spd):
        unit = np.asarray(unit, dtype=int)
        speed_norm = np.asarray(spd, dtype=float) / SPEED_SCALE
        return baseline[unit] + field(unit, x, y) * (1.0 + gain[unit] * speed_norm)

    starts, _ = grid(session, DT)
    centres = starts + DT / 2
    fine = [np.interp(centres, t, v)[:, None] for v in (xy[:, 0], xy[:, 1], speed)]
    counts = poisson_counts(log_rate(np.arange(n_units), *fine), spk_rng, DT)
    spikes = tsgroup(spike_times(counts, starts, spk_rng, DT), session,
                     metadata={"center_x": centers[:, 0], "center_y": centers[:, 1]})

    truth = {
        "baseline": baseline,
        "amplitude": amplitude,
        "centers": centers,
        "widths": widths,
        "gain": gain,
        "speed_scale": SPEED_SCALE,
        "field": field,
        "log_rate": log_rate,
        "max_rate": MAX_RATE_HZ,
        "dt": DT,
    }
    data = {
        "x": nap.Tsd(t=t, d=xy[:, 0], time_support=session),
        "y": nap.Tsd(t=t, d=xy[:, 1], time_support=session),
        "position": nap.TsdFrame(t=t, d=xy, columns=["x", "y"], time_support=session),
        "speed": nap.Tsd(t=t, d=speed, time_support=session),
        "spikes": spikes,
    }
    return SimulatedRecording(name="place_2d", data=data, truth=truth,
                              description=_DESCRIPTION.format(n=n_units), seed=int(seed))
