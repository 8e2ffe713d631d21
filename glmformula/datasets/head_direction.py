"""Simulated head-direction cells: von Mises tuning, spike history and coupling, wake and sleep.

Mirrors the real recording in ``shared/data/hd_mouse28_140313`` (ADn/PoS head-direction cells,
head angle at 40 Hz, median angular head speed about 1 rad/s) and adds a sleep epoch in which
the same recurrent network is driven by an internal heading instead of the real one.
"""

from __future__ import annotations

import numpy as np
import pynapple as nap

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

#: Head-angle sampling interval (s): 40 Hz, as in the real recording.
ANGLE_DT = 0.025

# Spike-history filter (same for every unit): strong refractoriness that decays within ~5 ms,
# then a mild rebound peaking at ~13 ms (+0.2) and negligible (< 0.01) by 100 ms.
_HISTORY_AMPLITUDES = (-5.0, -0.5, 0.5)
_HISTORY_TAUS = (0.002, 0.008, 0.025)

# Coupling shape: a difference of exponentials (rise 3 ms, decay 15 ms) scaled to peak at 1
# (at 6.0 ms lag), below 0.003 of its peak by 100 ms.
_COUPLING_TAUS = (0.003, 0.015)
_COUPLING_LAG_PEAK = np.log(_COUPLING_TAUS[1] / _COUPLING_TAUS[0]) * (
    _COUPLING_TAUS[0] * _COUPLING_TAUS[1] / (_COUPLING_TAUS[1] - _COUPLING_TAUS[0]))
_COUPLING_NORM = 1.0 / (np.exp(-_COUPLING_LAG_PEAK / _COUPLING_TAUS[1])
                        - np.exp(-_COUPLING_LAG_PEAK / _COUPLING_TAUS[0]))

_DESCRIPTION = (
    "SIMULATED head-direction recording (not real data). {n} units with von Mises tuning "
    "(log rate = baseline + kappa * cos(angle - preferred angle), preferred angles spread over the "
    "circle) to a head angle that follows an angular random walk sampled at 40 Hz (median angular "
    "speed about 1 rad/s) during wake ({wake:.0f} s). Spikes are drawn at 1 ms resolution from a "
    "recurrent Poisson GLM: every unit has the same spike-history filter (refractoriness for a "
    "few ms, then a mild rebound, negligible after 100 ms), and units are coupled through a "
    "100 ms filter whose weight is {g} * cos(difference of preferred angles), so units with "
    "similar preferences excite each other and opposite ones inhibit each other. During sleep "
    "({sleep:.0f} s, after a gap; no head angle is recorded) the tuning follows an internal "
    "'virtual heading' that drifts like the real one, so coupling keeps organising the activity."
)


def _angular_walk(rng: np.random.Generator, n: int, dt: float) -> np.ndarray:
    """Unwrapped angle (rad) of a random walk with realistic angular speed.

    Angular velocity is a 0.3 s-correlated Gaussian process whose scale is modulated by a slow
    (10 s) log-normal gain, giving the heavy tail of real head turns (median |omega| about
    1 rad/s, 95th percentile about 4 rad/s).
    """
    omega = 1.7 * ou_process(rng, n, 0.3, dt) * np.exp(0.5 * ou_process(rng, n, 10.0, dt))
    return rng.uniform(0.0, 2.0 * np.pi) + np.cumsum(omega) * dt


def head_direction(seed: int = 0, n_units: int = 12, duration: float = 600.0, *,
                   coupling_strength: float = 0.15) -> SimulatedRecording:
    """Simulated head-direction cells with spike history and coupling, in wake and sleep.

    The session ``[0, duration)`` holds wake ``[0, 2/3 duration)``, a gap, and sleep
    ``[0.7 duration, duration)`` (600 s: 400 s wake, 20 s gap, 180 s sleep). Spikes are simulated
    in 1 ms bins by a recurrent Poisson GLM::

        log rate_u(t) = baseline_u + tuning(u, heading(t))
                        + sum_{spikes s of u before t} history_filter(t - s)
                        + sum_{v != u} sum_{spikes s of v before t} coupling_filter(u, v, t - s)

    where ``heading`` is the head angle in wake (linearly interpolated, on the circle, from the
    40 Hz samples in ``head_direction``) and the internal virtual heading in sleep. Spike times are
    uniform within their 1 ms bin, so a filter evaluated at lag ``k`` ms is exact for 1 ms bins.
    History and coupling restart (empty past) at the start of each epoch.

    Parameters
    ----------
    seed : int
        Seed; the same seed and arguments give identical data.
    n_units : int
        Number of units.
    duration : float
        Session length (s).
    coupling_strength : float
        Peak coupling weight (log-rate change per presynaptic spike) between units with identical
        preferred angles; ``0`` gives an uncoupled population.

    Returns
    -------
    SimulatedRecording
        Keys:

        ``spikes`` : TsGroup, index ``0 .. n_units-1``, metadata ``pref_angle`` (rad); time
            support ``wake`` union ``sleep``.
        ``head_direction`` : Tsd, head angle in [0, 2 pi) rad at 40 Hz; time support ``wake``.
        ``wake``, ``sleep`` : IntervalSet, one epoch each.
        ``epochs`` : IntervalSet, both epochs with a ``tags`` metadata column ("wake", "sleep"),
            as ``pynapple.load_file`` gives for NWB epochs.

        ``truth`` fields:

        ``baseline`` : (n_units,) log-Hz, ``b_u``.
        ``kappa`` : (n_units,) von Mises concentration (log-rate units).
        ``pref_angle`` : (n_units,) rad.
        ``tuning(unit, angle)`` : log-rate contribution ``kappa_u cos(angle - pref_u)``
            (numpy-broadcast over ``unit`` and ``angle``); its mean over the circle is 0.
        ``history_filter(lag)`` : log-rate change per own spike ``lag`` seconds ago (same for all
            units); 0 for ``lag <= 0``.
        ``coupling`` : (n_units, n_units) peak weight, ``[post, pre]``; zero diagonal.
        ``coupling_shape(lag)`` : filter shape, peak 1 at ``coupling_lag_peak``.
        ``coupling_filter(post, pre, lag)`` : ``coupling[post, pre] * coupling_shape(lag)``.
        ``coupling_lag_peak`` : float, s.
        ``virtual_heading`` : Tsd, internal heading (rad, [0, 2 pi)) at 40 Hz during sleep.
        ``window`` : 0.1 s, beyond which history and coupling filters are negligible.
        ``max_rate`` : rate ceiling of the simulation (Hz). ``dt`` : simulation bin (s).
    """
    beh_rng, par_rng, spk_rng = streams(seed, 3)
    duration = round(float(duration) / ANGLE_DT) * ANGLE_DT
    wake = nap.IntervalSet(0.0, round(duration * 2 / 3 / ANGLE_DT) * ANGLE_DT)
    sleep = nap.IntervalSet(round(duration * 0.7 / ANGLE_DT) * ANGLE_DT, duration)

    # Behaviour: one angular walk per epoch, sampled at bin centres of a 25 ms grid.
    def sampled_walk(ep):
        n = int(round((ep.end[0] - ep.start[0]) / ANGLE_DT))
        t = ep.start[0] + ANGLE_DT * (np.arange(n) + 0.5)
        return t, _angular_walk(beh_rng, n, ANGLE_DT)

    t_wake, unwrapped_wake = sampled_walk(wake)
    t_sleep, unwrapped_sleep = sampled_walk(sleep)

    # Parameters: preferred angles evenly spread (random rotation, small jitter), unit order
    # shuffled so that index carries no information about preference.
    offset = par_rng.uniform(0.0, 2.0 * np.pi)
    pref = offset + 2.0 * np.pi * np.arange(n_units) / n_units
    pref = np.mod(pref + par_rng.normal(0.0, 0.1, n_units), 2.0 * np.pi)
    pref = pref[par_rng.permutation(n_units)]
    kappa = par_rng.uniform(2.5, 4.0, n_units)
    mean_rate = par_rng.uniform(2.0, 10.0, n_units)  # Hz, before recurrence
    # Mean of exp(kappa cos) over the circle is I0(kappa); this sets the average feed-forward rate.
    baseline = np.log(mean_rate) - np.log(np.i0(kappa))

    coupling = coupling_strength * np.cos(pref[:, None] - pref[None, :])
    np.fill_diagonal(coupling, 0.0)

    # Exponential components: history on the diagonal, coupling off it.
    taus = _HISTORY_TAUS + _COUPLING_TAUS
    weights = np.zeros((len(taus), n_units, n_units))
    for e, a in enumerate(_HISTORY_AMPLITUDES):
        weights[e] = a * np.eye(n_units)
    weights[3] = -_COUPLING_NORM * coupling
    weights[4] = _COUPLING_NORM * coupling

    support = wake.union(sleep)
    starts, first = grid(support, DT)
    centres = starts + DT / 2
    heading = np.concatenate([
        np.interp(centres[centres < wake.end[0]], t_wake, unwrapped_wake),
        np.interp(centres[centres >= sleep.start[0]], t_sleep, unwrapped_sleep),
    ])
    drive = baseline + kappa * np.cos(heading[:, None] - pref)
    counts = simulate_recurrent(drive, taus, weights, first, spk_rng, DT)
    times = spike_times(counts, starts, spk_rng, DT)

    spikes = tsgroup(times, support, metadata={"pref_angle": pref})
    angle = nap.Tsd(t=t_wake, d=np.mod(unwrapped_wake, 2.0 * np.pi), time_support=wake)
    virtual = nap.Tsd(t=t_sleep, d=np.mod(unwrapped_sleep, 2.0 * np.pi), time_support=sleep)
    epochs = nap.IntervalSet(start=[wake.start[0], sleep.start[0]], end=[wake.end[0], sleep.end[0]],
                             metadata={"tags": ["wake", "sleep"]})

    kappa_r, pref_r, coupling_r = readonly(kappa), readonly(pref), readonly(coupling)
    shape = exp_filter((-_COUPLING_NORM, _COUPLING_NORM), _COUPLING_TAUS)

    def tuning(unit, angle):
        unit = np.asarray(unit, dtype=int)
        return kappa_r[unit] * np.cos(np.asarray(angle, dtype=float) - pref_r[unit])

    def coupling_filter(post, pre, lag):
        return coupling_r[np.asarray(post, dtype=int), np.asarray(pre, dtype=int)] * shape(lag)

    truth = {
        "baseline": readonly(baseline),
        "kappa": kappa_r,
        "pref_angle": pref_r,
        "tuning": tuning,
        "history_filter": exp_filter(_HISTORY_AMPLITUDES, _HISTORY_TAUS),
        "coupling": coupling_r,
        "coupling_shape": shape,
        "coupling_filter": coupling_filter,
        "coupling_lag_peak": float(_COUPLING_LAG_PEAK),
        "virtual_heading": virtual,
        "window": 0.1,
        "max_rate": MAX_RATE_HZ,
        "dt": DT,
    }
    data = {"spikes": spikes, "head_direction": angle, "wake": wake, "sleep": sleep,
            "epochs": epochs}
    description = _DESCRIPTION.format(n=n_units, wake=wake.tot_length(),
                                      sleep=sleep.tot_length(), g=coupling_strength)
    return SimulatedRecording(name="head_direction", data=data, truth=truth,
                              description=description, seed=int(seed))
