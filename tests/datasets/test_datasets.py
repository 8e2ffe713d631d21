"""Simulated recordings: contract (keys, mapping, determinism, speed) and that the data really
carry the documented ground truth (tuning, history, confounds, filters)."""

from __future__ import annotations

import time

import attrs
import jax
import numpy as np
import pynapple as nap
import pytest

import glmformula.datasets as ds
from glmformula.datasets import _simulate as sim

# Small sizes for tests that need several recordings; defaults are used where the claim is
# about the defaults (timing, tuning recovery).
SMALL = {
    "head_direction": {"n_units": 4, "duration": 60.0},
    "linear_maze": {"duration": 60.0},
    "current_injection": {"n_sweeps": 2, "sweep_duration": 5.0},
    "place_2d": {"n_units": 2, "duration": 60.0},
}

KEYS = {
    "head_direction": {"spikes", "head_direction", "wake", "sleep", "epochs"},
    "linear_maze": {"spikes", "position", "speed", "run"},
    "current_injection": {"current", "sweeps", "spikes"},
    "place_2d": {"x", "y", "position", "speed", "spikes"},
}

_TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def default():
    """Default-size recordings, generated once; generation time (s) recorded per name."""
    cache = {}

    def get(name):
        if name not in cache:
            t0 = time.perf_counter()
            cache[name] = ds.load(name)
            _TIMINGS[name] = time.perf_counter() - t0
        return cache[name]

    return get


def _spike_arrays(rec):
    return [rec["spikes"][i].t for i in rec["spikes"]]


def _rates_in(spikes, ep):
    return np.array([len(spikes[i].restrict(ep)) for i in spikes]) / ep.tot_length()


def _fit_poisson(X, y, n_iter=50, return_se=False):
    """Newton's method with step halving for a Poisson GLM (independent of the package's own
    backend, so these tests check the data, not the fitter)."""

    def loglik(w):
        eta = X @ w
        return np.sum(y * eta - np.exp(eta))

    w = np.zeros(X.shape[1])
    w[0] = np.log(max(y.mean(), 1e-3))
    for _ in range(n_iter):
        mu = np.exp(X @ w)
        step = np.linalg.solve(X.T @ (X * mu[:, None]), X.T @ (y - mu))
        # Full Newton steps can overshoot with the exponential link; halve until it improves.
        current, scale = loglik(w), 1.0
        while loglik(w + scale * step) < current and scale > 1e-4:
            scale /= 2
        w = w + scale * step
        if np.max(np.abs(scale * step)) < 1e-8:
            break
    if not return_se:
        return w
    mu = np.exp(X @ w)
    return w, np.sqrt(np.diag(np.linalg.inv(X.T @ (X * mu[:, None]))))


def _pairs_at_lag(t, lo, hi):
    """Number of spike pairs (all pairs, not just consecutive ones) with lag in [lo, hi) s.

    Unlike an ISI histogram this is not biased by the chance of an intervening spike, so the
    ratio of two equal-width windows estimates the ratio of conditional intensities.
    """
    return int(np.sum(np.searchsorted(t, t + hi) - np.searchsorted(t, t + lo)))


def _ring_distance(a, b):
    return np.abs(np.angle(np.exp(1j * (np.asarray(a) - np.asarray(b)))))


# --------------------------------------------------------------------------- registry / API


def test_available_lists_the_four_datasets():
    assert ds.available() == ("head_direction", "linear_maze", "current_injection", "place_2d")
    for name in ds.available():
        assert callable(getattr(ds, name))


@pytest.mark.parametrize("name", list(SMALL))
def test_load_is_the_dataset_function(name):
    a = ds.load(name, seed=3, **SMALL[name])
    b = getattr(ds, name)(seed=3, **SMALL[name])
    assert isinstance(a, ds.SimulatedRecording)
    assert a.name == name and a.seed == 3
    for x, y in zip(_spike_arrays(a), _spike_arrays(b)):
        np.testing.assert_array_equal(x, y)


def test_load_unknown_name_suggests_the_closest():
    with pytest.raises(ValueError, match="did you mean 'head_direction'"):
        ds.load("head_directon")


def test_load_unknown_option_is_a_value_error():
    with pytest.raises(ValueError, match="no option 'n_unit'"):
        ds.load("place_2d", n_unit=3)


@pytest.mark.parametrize("name", list(SMALL))
def test_mapping_interface_and_keys(name):
    rec = ds.load(name, **SMALL[name])
    assert set(rec) == KEYS[name]
    assert set(dict(rec)) == KEYS[name]
    assert len(rec) == len(KEYS[name])
    assert "spikes" in rec and "nonexistent" not in rec
    assert isinstance(rec["spikes"], nap.TsGroup)
    assert list(rec["spikes"].keys()) == list(range(len(rec["spikes"])))
    assert dict(rec.items())["spikes"] is rec["spikes"]
    with pytest.raises(KeyError):
        rec["nonexistent"]
    with pytest.raises(TypeError):
        rec["spikes"] = None  # read-only mapping
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        rec.seed = 1
    with pytest.raises(TypeError):
        rec.truth["dt"] = 1.0  # read-only truth
    for value in rec.truth.values():
        if isinstance(value, np.ndarray):
            assert not value.flags.writeable
    assert "SIMULATED" in rec.description
    assert name in repr(rec)
    assert rec.truth["dt"] == 0.001


@pytest.mark.parametrize("name", list(SMALL))
def test_same_seed_identical_different_seed_differs(name):
    a, b = ds.load(name, seed=7, **SMALL[name]), ds.load(name, seed=7, **SMALL[name])
    c = ds.load(name, seed=8, **SMALL[name])
    for x, y in zip(_spike_arrays(a), _spike_arrays(b)):
        np.testing.assert_array_equal(x, y)
    for key in a:
        obj = a[key]
        if isinstance(obj, (nap.Tsd, nap.TsdFrame)):
            np.testing.assert_array_equal(obj.values, b[key].values)
            np.testing.assert_array_equal(obj.t, b[key].t)
    assert any(len(x) != len(z) or not np.array_equal(x, z)
               for x, z in zip(_spike_arrays(a), _spike_arrays(c)))


def test_result_does_not_depend_on_jax_64_bit_mode():
    a = ds.head_direction(seed=2, n_units=4, duration=30.0)
    with jax.enable_x64(True):
        b = ds.head_direction(seed=2, n_units=4, duration=30.0)
    for x, y in zip(_spike_arrays(a), _spike_arrays(b)):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("name", list(SMALL))
def test_spikes_sorted_and_inside_their_support(name):
    rec = ds.load(name, **SMALL[name])
    spikes = rec["spikes"]
    for i in spikes:
        t = spikes[i].t
        assert len(t) > 0
        assert np.all(np.diff(t) >= 0)
        inside = np.zeros(len(t), dtype=bool)
        for s, e in zip(spikes.time_support.start, spikes.time_support.end):
            inside |= (t >= s) & (t < e)
        assert inside.all()


# --------------------------------------------------------------------------- simulation machinery


def _reference_recurrent(log_drive, taus, weights, first, uniforms, dt=0.001):
    """One bin at a time in float64: the definition that ``simulate_recurrent`` must follow."""
    decay = np.exp(-dt / np.asarray(taus))
    w = np.asarray(weights) * decay[:, None, None]
    traces = np.zeros((len(decay), log_drive.shape[1]))
    y = np.zeros(log_drive.shape, dtype=int)
    for t in range(len(log_drive)):
        if first[t]:
            traces[:] = 0.0
        eta = log_drive[t] + np.einsum("eij,ej->i", w, traces)
        lam = np.exp(np.minimum(eta, np.log(sim.MAX_RATE_HZ))) * dt
        p = np.exp(-lam)
        cdf = p.copy()
        for k in range(1, sim._MAX_COUNT + 1):
            y[t] += uniforms[t] > cdf
            p = p * lam / k
            cdf = cdf + p
        traces = traces * decay[:, None] + y[t]
    return y


def test_recurrent_simulation_matches_bin_by_bin_definition():
    # The compiled simulation skips ahead from spike to spike; it must give exactly the counts
    # of the plain definition (same uniforms), including history resets at epoch starts.
    rng = np.random.default_rng(0)
    n_bins, n_units = 8000, 3
    drive = np.log(rng.uniform(20.0, 80.0, (n_bins, n_units)))
    first = np.zeros(n_bins, dtype=bool)
    first[[0, 5000]] = True
    taus = (0.002, 0.01, 0.03)
    weights = rng.normal(0.0, 0.8, (3, n_units, n_units))
    weights[0] -= 3.0 * np.eye(n_units)
    counts = sim.simulate_recurrent(drive, taus, weights, first, np.random.default_rng(5))
    uniforms = np.random.default_rng(5).random((n_bins, n_units), dtype=np.float32)
    expected = _reference_recurrent(drive, taus, weights, first, uniforms)
    assert counts.sum() > 500
    np.testing.assert_array_equal(counts, expected)


def test_spike_times_are_jittered_inside_their_bins():
    rng = np.random.default_rng(0)
    counts = rng.poisson(0.3, (1000, 2))
    starts = 10.0 + 0.001 * np.arange(1000)
    times = sim.spike_times(counts, starts, rng)
    for u in range(2):
        assert len(times[u]) == counts[:, u].sum()
        assert np.all(np.diff(times[u]) >= 0)
        bins = np.floor((times[u] - 10.0) / 0.001 + 1e-9).astype(int)
        np.testing.assert_array_equal(np.bincount(bins, minlength=1000), counts[:, u])


def test_poisson_counts_follow_the_rate():
    rng = np.random.default_rng(0)
    counts = sim.poisson_counts(np.full((200_000, 2), np.log([5.0, 50.0])), rng)
    np.testing.assert_allclose(counts.mean(axis=0) / 0.001, [5.0, 50.0], rtol=0.05)


# --------------------------------------------------------------------------- head direction


def test_head_direction_epochs_and_angle(default):
    rec = default("head_direction")
    wake, sleep, angle = rec["wake"], rec["sleep"], rec["head_direction"]
    assert len(wake) == 1 and len(sleep) == 1
    assert wake.end[0] < sleep.start[0]  # a gap between them
    np.testing.assert_allclose([wake.tot_length(), sleep.tot_length()], [400.0, 180.0])
    np.testing.assert_array_equal(angle.time_support.values, wake.values)
    assert len(angle.restrict(sleep)) == 0
    assert angle.t.min() >= wake.start[0] and angle.t.max() <= wake.end[0]
    np.testing.assert_allclose(np.diff(angle.t), 0.025, atol=1e-9)  # 40 Hz
    assert angle.values.min() >= 0.0 and angle.values.max() < 2 * np.pi
    speed = np.abs(np.diff(np.unwrap(angle.values))) / 0.025
    assert 0.5 < np.median(speed) < 2.0
    assert list(rec["epochs"]["tags"]) == ["wake", "sleep"]
    np.testing.assert_array_equal(rec["spikes"].time_support.values,
                                  wake.union(sleep).values)
    virtual = rec.truth["virtual_heading"]
    np.testing.assert_array_equal(virtual.time_support.values, sleep.values)


def test_head_direction_rates_and_tuning_peaks(default):
    rec = default("head_direction")
    spikes, truth = rec["spikes"], rec.truth
    rates = _rates_in(spikes, rec["wake"])
    assert np.all((rates > 0.5) & (rates < 25.0)), rates
    assert np.all(_rates_in(spikes, rec["sleep"]) > 0.5)
    np.testing.assert_array_equal(spikes.metadata["pref_angle"].values, truth["pref_angle"])
    tc = nap.compute_tuning_curves(spikes, rec["head_direction"], bins=36,
                                   range=(0, 2 * np.pi), epochs=rec["wake"])
    centres = tc.coords[tc.dims[1]].values
    # Peak of the curve lightly smoothed on the ring (3 bins), so one noisy bin cannot move it.
    smooth = (np.roll(tc.values, 1, axis=1) + tc.values + np.roll(tc.values, -1, axis=1)) / 3
    peaks = centres[np.argmax(smooth, axis=1)]
    error = np.degrees(_ring_distance(peaks, truth["pref_angle"]))
    assert np.all(error < 20.0), error
    mean_direction = np.angle((tc.values * np.exp(1j * centres)).sum(axis=1))
    assert np.all(np.degrees(_ring_distance(mean_direction, truth["pref_angle"])) < 10.0)
    # Tuning is strong: peak/mean like the real ADn cells (about 2-7).
    assert np.all(tc.values.max(axis=1) / tc.values.mean(axis=1) > 2.0)


def test_head_direction_truth_functions():
    rec = ds.head_direction(seed=1, n_units=6, duration=30.0)
    truth = rec.truth
    # Vectorised: (units, angles) broadcast.
    angles = np.linspace(0, 2 * np.pi, 50)
    curves = truth["tuning"](np.arange(6)[:, None], angles[None, :])
    assert curves.shape == (6, 50)
    np.testing.assert_allclose(truth["tuning"](2, truth["pref_angle"][2]), truth["kappa"][2])
    h = truth["history_filter"](np.array([-0.001, 0.0, 0.001, 0.013, 0.1]))
    assert h[0] == 0 and h[1] == 0  # strictly causal
    assert h[2] < -2.0 and h[3] > 0.1 and abs(h[4]) < 0.01  # refractory, rebound, gone
    c = truth["coupling"]
    np.testing.assert_array_equal(np.diag(c), 0.0)
    np.testing.assert_allclose(c, c.T)
    dpref = _ring_distance(truth["pref_angle"][:, None], truth["pref_angle"][None, :])
    off = ~np.eye(6, dtype=bool)
    assert np.all(c[off & (dpref < np.pi / 3)] > 0) and np.all(c[off & (dpref > 2 * np.pi / 3)] < 0)
    np.testing.assert_allclose(truth["coupling_shape"](truth["coupling_lag_peak"]), 1.0)
    assert abs(truth["coupling_shape"](0.1)) < 0.01
    np.testing.assert_allclose(truth["coupling_filter"](0, 1, 0.006),
                               c[0, 1] * truth["coupling_shape"](0.006))
    uncoupled = ds.head_direction(seed=1, n_units=6, duration=30.0, coupling_strength=0.0)
    np.testing.assert_array_equal(uncoupled.truth["coupling"], 0.0)


def test_head_direction_refractoriness_is_visible(default):
    rec = default("head_direction")
    pairs = np.array([[_pairs_at_lag(rec["spikes"][i].t, 0.001, 0.003),
                       _pairs_at_lag(rec["spikes"][i].t, 0.020, 0.022)]  # filter decayed
                      for i in rec["spikes"]])
    # Without refractoriness the two equal-width windows would hold similar numbers of pairs.
    assert pairs[:, 0].sum() < 0.3 * pairs[:, 1].sum()
    assert np.all(pairs[:, 0] < 0.6 * pairs[:, 1]), pairs


def test_head_direction_sleep_activity_organised_by_preference(default):
    rec = default("head_direction")
    counts = rec["spikes"].count(0.02, rec["sleep"]).values
    r = np.corrcoef(counts.T)
    pref = rec.truth["pref_angle"]
    dpref = _ring_distance(pref[:, None], pref[None, :])
    off = ~np.eye(len(pref), dtype=bool)
    similar = r[off & (dpref < np.pi / 4)].mean()
    opposite = r[off & (dpref > 3 * np.pi / 4)].mean()
    assert similar > opposite + 0.02


# --------------------------------------------------------------------------- linear maze


def test_linear_maze_behaviour(default):
    rec = default("linear_maze")
    pos, speed, run = rec["position"], rec["speed"], rec["run"]
    assert pos.values.min() >= 0.0 and pos.values.max() <= 100.0
    assert pos.values.min() < 1.0 and pos.values.max() > 99.0  # back and forth, end to end
    assert np.all(speed.values >= 0)
    # Speed is |d position / dt| (smoothed): compare over a whole lap's worth of samples.
    raw = np.abs(np.gradient(pos.values, pos.t))
    assert abs(np.mean(raw) - np.mean(speed.values)) < 0.05 * np.mean(raw)
    # Faster mid-track than near the ends: that is the confound.
    mid = (pos.values > 40) & (pos.values < 60)
    ends = (pos.values < 10) | (pos.values > 90)
    assert speed.values[mid].mean() > 3 * speed.values[ends].mean()
    assert len(run) > 20
    assert np.all(run.start >= 0) and np.all(run.end <= pos.time_support.end[0])
    assert np.all(run.start[1:] >= run.end[:-1])
    assert 0.4 < run.tot_length() / pos.time_support.tot_length() < 0.95


def test_linear_maze_speed_cell_looks_place_tuned(default):
    rec = default("linear_maze")
    spikes, truth = rec["spikes"], rec.truth
    tc = nap.compute_tuning_curves(spikes, rec["position"], bins=10, range=(0, 100))
    speed_cell = tc.values[1]
    assert speed_cell.max() > 2.0 * speed_cell.min()  # not flat: the confound is real
    centres = tc.coords[tc.dims[1]].values
    assert 25 < centres[np.argmax(speed_cell)] < 75  # peaks mid-track, where running is fast
    assert abs(centres[np.argmax(tc.values[0])] - truth["place_center"][0]) <= 10
    counts = spikes.count(0.1)
    spd = np.interp(counts.t, rec["speed"].t, rec["speed"].values)
    assert np.corrcoef(counts.values[:, 1], spd)[0, 1] > 0.2
    x = np.linspace(0, 100, 11)
    np.testing.assert_array_equal(truth["position_tuning"](1, x), 0.0)
    assert truth["speed_coef"][0] == 0.0 and truth["speed_coef"][1] > 0


def test_linear_maze_glm_with_speed_removes_the_position_effect(default):
    rec = default("linear_maze")
    counts = rec["spikes"].count(0.01)
    y = counts.values[:, 1].astype(float)
    pos = np.interp(counts.t, rec["position"].t, rec["position"].values)
    spd = np.interp(counts.t, rec["speed"].t, rec["speed"].values)
    onehot = np.eye(7)[np.minimum((pos / 100 * 7).astype(int), 6)]
    intercept = np.ones((len(y), 1))
    # Position only (reference bin 0 absorbed by the intercept): spurious place tuning.
    w_pos = _fit_poisson(np.hstack([intercept, onehot[:, 1:]]), y)
    assert np.ptp(np.r_[0.0, w_pos[1:]]) > 0.8
    # Position + speed: speed takes the effect, position effects vanish.
    w, se = _fit_poisson(np.hstack([intercept, onehot[:, 1:], spd[:, None]]), y, return_se=True)
    assert abs(w[-1] - rec.truth["speed_coef"][1]) < 4 * se[-1]
    assert np.all(np.abs(w[1:-1]) < 4 * se[1:-1])  # no position effect beyond sampling error


# --------------------------------------------------------------------------- current injection


def test_current_injection_sweeps_and_current(default):
    rec = default("current_injection")
    sweeps, current = rec["sweeps"], rec["current"]
    assert len(sweeps) == 9
    np.testing.assert_allclose(sweeps.end - sweeps.start, 20.0)
    np.testing.assert_allclose(np.diff(sweeps.start), 41.0)
    np.testing.assert_array_equal(current.time_support.values, sweeps.values)
    np.testing.assert_array_equal(rec["spikes"].time_support.values, sweeps.values)
    assert len(current) == 9 * 20000  # 1 kHz
    np.testing.assert_allclose(np.diff(current.t[:1000]), 0.001, atol=1e-9)
    assert 130 < current.values.mean() < 170 and 120 < current.values.std() < 200
    # Amplitude modulation: sigma = 150 + 75 sin(2 pi t / 5 s) within each sweep.
    t_rel = np.mod(current.t - np.floor(current.t / 41.0) * 41.0, 5.0)
    strong = current.values[(t_rel > 0.75) & (t_rel < 1.75)].std()
    weak = current.values[(t_rel > 3.25) & (t_rel < 4.25)].std()
    assert strong > 2.0 * weak
    per_sweep = current.values.reshape(9, -1)
    assert np.corrcoef(per_sweep[0], per_sweep[1])[0, 1] < 0.1  # fresh noise per sweep


def test_current_injection_frozen_noise_repeats():
    rec = ds.current_injection(n_sweeps=3, sweep_duration=2.0, frozen=True)
    per_sweep = rec["current"].values.reshape(3, -1)
    np.testing.assert_array_equal(per_sweep[0], per_sweep[2])
    assert rec.truth["frozen"] is True


def test_current_injection_rejects_overlapping_sweeps():
    with pytest.raises(ValueError, match="sweep_period"):
        ds.current_injection(sweep_duration=20.0, sweep_period=10.0)


def test_current_injection_rate_and_refractoriness(default):
    rec = default("current_injection")
    t = rec["spikes"][0].t
    assert 5.0 < len(t) / rec["sweeps"].tot_length() < 20.0
    early = _pairs_at_lag(t, 0.001, 0.003)
    later = _pairs_at_lag(t, 0.050, 0.052)
    assert early < 0.2 * later


def test_current_injection_sta_matches_filter_sign(default):
    rec = default("current_injection")
    truth = rec.truth
    current = rec["current"]
    spikes = rec["spikes"][0].t
    idx = np.searchsorted(current.t, spikes)  # first sample at or after the spike
    lags = np.arange(1, 201)  # ms before the spike
    ok = idx - lags[-1] >= 0
    sta = np.array([current.values[idx[ok] - k].mean() for k in lags]) - current.values.mean()
    k = truth["stimulus_filter"](lags * 0.001)
    # Positive lobe (a few ms before the spike): the current was well above its mean.
    assert k[3] > 0 and sta[2:8].mean() > 50.0
    assert np.argmax(sta) < 15  # peak within 15 ms of the spike
    assert abs(sta[150:].mean()) < 15.0  # far lags: back to the mean
    assert np.corrcoef(sta[:60], k[:60])[0, 1] > 0.5
    lag = np.array([-0.01, 0.0, 0.0038, 0.029, 0.25])
    f = truth["stimulus_filter"](lag)
    assert f[0] == 0 and f[1] == 0 and f[2] > 0 and f[3] < 0 and f[4] == 0


# --------------------------------------------------------------------------- place 2d


def test_place_2d_behaviour(default):
    rec = default("place_2d")
    x, y, pos, speed = rec["x"], rec["y"], rec["position"], rec["speed"]
    for v in (x.values, y.values):
        assert v.min() >= 0.0 and v.max() <= 100.0
        assert v.min() < 5 and v.max() > 95  # the walk reaches the walls
    assert list(pos.columns) == ["x", "y"]
    np.testing.assert_array_equal(pos["x"].values, x.values)
    np.testing.assert_array_equal(pos["y"].values, y.values)
    assert np.all(speed.values >= 0) and 5.0 < np.median(speed.values) < 30.0
    # Speed is the path's speed: displacement per sample agrees away from wall bounces.
    step = np.hypot(np.diff(x.values), np.diff(y.values)) / 0.02
    assert abs(np.median(step) - np.median(speed.values)) < 0.1 * np.median(speed.values)


def test_place_2d_fields_peak_at_true_centres(default):
    rec = default("place_2d")
    truth = rec.truth
    tc = nap.compute_tuning_curves(rec["spikes"], rec["position"], bins=10,
                                   range=[(0, 100), (0, 100)])
    for u in range(len(rec["spikes"])):
        m = np.nan_to_num(tc.values[u])
        i, j = np.unravel_index(np.argmax(m), m.shape)
        peak = np.array([10 * i + 5, 10 * j + 5])
        assert np.linalg.norm(peak - truth["centers"][u]) < 15.0
    np.testing.assert_array_equal(rec["spikes"].metadata["center_x"].values, truth["centers"][:, 0])


def test_place_2d_rate_in_field_grows_with_speed(default):
    rec = default("place_2d")
    truth = rec.truth
    counts = rec["spikes"].count(0.02)
    x = np.interp(counts.t, rec["x"].t, rec["x"].values)
    y = np.interp(counts.t, rec["y"].t, rec["y"].values)
    spd = np.interp(counts.t, rec["speed"].t, rec["speed"].values) / truth["speed_scale"]
    z = []
    for u in range(len(rec["spikes"])):
        # With the field's shape known, log rate = a + b bump + c bump speed is linear in
        # (a, b, c); the data must agree with the truth (c = amplitude * gain) within sampling
        # error, and the gain must be clearly detectable over the population.
        bump = truth["field"](u, x, y) / truth["amplitude"][u]
        X = np.column_stack([np.ones_like(x), bump, bump * spd])
        w, se = _fit_poisson(X, counts.values[:, u].astype(float), return_se=True)
        expected = np.array([truth["baseline"][u] + np.log(0.02), truth["amplitude"][u],
                             truth["amplitude"][u] * truth["gain"][u]])
        assert np.all(np.abs(w - expected) < 4 * se), (u, w, expected, se)
        z.append(w[2] / se[2])
    assert np.sum(z) / np.sqrt(len(z)) > 5.0  # pooled z-score of the speed gain
    # Truth: the gain multiplies the field, and vanishes far from it.
    cx, cy = truth["centers"][0]
    lr = truth["log_rate"](0, cx, cy, np.array([0.0, truth["speed_scale"]]))
    np.testing.assert_allclose(np.diff(lr), truth["amplitude"][0] * truth["gain"][0])
    far = truth["log_rate"](0, -500.0, -500.0, np.array([0.0, 40.0]))
    np.testing.assert_allclose(far, truth["baseline"][0])
