"""Population results: coupling curves and matrix, predictions on other epochs, simulation."""

from __future__ import annotations

import attrs
import numpy as np
import pynapple as nap
import pytest

import glmformula as gf
from glmformula.graph import nodes


def _kernels(window: int, k: int):
    """The design's own log-spaced filters (what history/coupling convolve with)."""
    return nodes.CausalFilter(nodes.SpikeCounts("spikes", (0,)), k, window, True).kernels()


def test_coupling_matrix_is_organised_as_the_truth(hd_sim, hd_fit):
    """Units with similar preferred directions excite each other, opposite ones inhibit."""
    matrix = hd_fit.coupling_matrix()
    ids = list(hd_fit.unit_ids)
    assert list(matrix.index) == ids and list(matrix.columns) == ids
    assert matrix.index.name == "post" and matrix.columns.name == "pre"
    values = matrix.to_numpy()
    assert np.isnan(np.diag(values)).all()
    off = ~np.eye(len(ids), dtype=bool)
    assert np.isfinite(values[off]).all()
    truth = np.asarray(hd_sim.truth["coupling"])  # [post, pre]
    r = np.corrcoef(values[off], truth[off])[0, 1]
    print(f"correlation of fitted and true coupling: {r:.2f}")
    assert r > 0.5


def test_coupling_matrix_integrates_the_coupling_curves(hd_fit):
    curves = hd_fit.curve("coupling", scale="log")
    assert curves.index.name == "lag (s)"
    assert curves.columns.names == ["unit", "source", "stat"]
    assert np.allclose(curves.index, 0.01 * np.arange(1, 11))
    matrix = hd_fit.coupling_matrix()
    for post, pre in [(0, 1), (3, 7), (11, 2)]:
        assert curves[(post, pre, "estimate")].sum() == pytest.approx(matrix.loc[post, pre])
    assert (0, 0, "estimate") not in curves.columns  # no self-coupling
    # The filter is the design's kernels times the unit's weights for that source.
    K = _kernels(10, 4)
    w = hd_fit.coef[3].xs(hd_fit.resolve_term("coupling")).loc[[f"[unit 7][{j}]" for j in range(4)]]
    assert np.allclose(curves[(3, 7, "estimate")], K @ w.values)
    peak = hd_fit.coupling_matrix(statistic="peak")
    est = curves[(3, 7, "estimate")].to_numpy()
    assert peak.loc[3, 7] == est[np.argmax(np.abs(est))]
    with pytest.raises(gf.FormulaError, match="statistic"):
        hd_fit.coupling_matrix(statistic="mean")


def test_history_curve_per_unit(hd_fit):
    curve = hd_fit.curve("history")
    assert curve.columns.names == ["unit", "stat"]
    assert set(curve.columns.get_level_values("unit")) == set(hd_fit.unit_ids)
    log = hd_fit.curve("history", scale="log")
    assert np.allclose(curve, np.exp(log))
    lower = log.xs("lower", axis=1, level="stat")
    assert (lower <= log.xs("estimate", axis=1, level="stat")).all().all()


def test_predict_on_other_epochs_keeps_their_time_support(hd_sim, hd_fit):
    """Fitted on wake, predicted on sleep, where the tuning follows the internal heading."""
    sleep_data = {"spikes": hd_sim["spikes"], "head_direction": hd_sim.truth["virtual_heading"]}
    rate = hd_fit.predict(sleep_data)
    sleep = hd_sim["sleep"]
    assert isinstance(rate, nap.TsdFrame) and list(rate.columns) == list(hd_fit.unit_ids)
    np.testing.assert_allclose(rate.time_support.start, sleep.start)
    np.testing.assert_allclose(rate.time_support.end, sleep.end)
    assert rate.t.min() >= sleep.start[0] and rate.t.max() <= sleep.end[0]
    # The first window (100 ms = 10 bins) of the epoch is dropped, never zero-filled.
    assert rate.t[0] == pytest.approx(sleep.start[0] + 0.105)
    # The model carries over: its sleep predictions beat a flat rate.
    assert hd_fit.score(sleep_data) > 0


def test_simulate_without_spike_terms_draws_from_predict(hd_sim):
    res = gf.fit("spikes ~ cyclic(head_direction, 8)", hd_sim, bin_size="10ms", epochs="wake")
    counts = res.simulate(hd_sim, seed=3, epochs="wake")
    rate = res.predict(hd_sim, epochs="wake")
    assert np.array_equal(counts.t, rate.t)
    assert counts.values.dtype.kind == "i"
    expected = rate.values.sum(axis=0) * res.bin_size
    total = counts.values.sum(axis=0)
    assert np.all(np.abs(total - expected) < 4 * np.sqrt(expected))  # Poisson totals
    again = res.simulate(hd_sim, seed=3, epochs="wake")
    assert np.array_equal(again.values, counts.values)


def test_simulation_is_recurrent_and_restarts_at_each_epoch(hd_sim, hd_fit):
    """With a strongly refractory history filter a unit never fires again within the lags
    where the filter is below -20 -- unless an epoch border lies between (empty past)."""
    term = hd_fit.resolve_term("history")
    K = _kernels(10, 4)
    weights = hd_fit.weights.copy()
    blocked = np.flatnonzero(K @ np.full(4, -40.0) < -20) + 1  # lags (bins) blocked
    for u in range(len(hd_fit.unit_ids)):
        own = [c for c, (t, _) in zip(hd_fit.unit_columns[u], hd_fit.unit_labels[u]) if t == term]
        weights[own, u] = -40.0
    refractory = attrs.evolve(hd_fit, weights=weights)
    # Two epochs of wake 20 ms apart (less than the 100 ms window).
    start = float(hd_sim["wake"].start[0]) + 1.0
    epochs = nap.IntervalSet(start=[start, start + 0.52], end=[start + 0.5, start + 1.02])
    within = across = 0
    for seed in range(20):
        sim = refractory.simulate(hd_sim, seed=seed, epochs=epochs, max_rate=1e5)
        counts = sim.values
        border = np.searchsorted(sim.t, start + 0.51)
        assert sim.t[0] == pytest.approx(start + 0.005)  # every bin, from the epoch start
        for lag in blocked:
            pairs = (counts[lag:] > 0) & (counts[:-lag] > 0)
            crosses = (np.arange(lag, len(counts)) >= border) & \
                      (np.arange(len(counts) - lag) < border)
            within += pairs[~crosses].sum()
            across += pairs[crosses].sum()
    print(f"spike pairs at refractory lags: {within} within epochs, {across} across the border")
    assert within == 0
    assert across > 0  # the past is forgotten at the epoch border


def test_simulated_rate_of_a_refractory_cell_matches_the_data(injection_fit):
    data, res = injection_fit
    sim = res.simulate(data, seed=0)
    assert len(sim.time_support) == 5
    observed = gf.design_matrix("spikes ~ 1", data, bin_size="2ms").response
    ratio = sim.values.sum() / observed.values.sum()
    assert 0.85 < ratio < 1.15
    # Refractoriness: the model's own past keeps consecutive-bin spikes rarer than in a draw
    # from the same model with its history weights set to 0.
    history = res.term_storage[res.resolve_term("history")]
    weights = res.weights.copy()
    weights[history] = 0.0
    feedforward = attrs.evolve(res, weights=weights).simulate(data, seed=0)
    pairs = lambda c: np.sum((c[1:] > 0) & (c[:-1] > 0))  # noqa: E731
    assert pairs(sim.values) < 0.5 * pairs(feedforward.values)


def test_coupling_matrix_is_post_by_pre():
    """Unit 1 fires 20 ms after unit 0's spikes (and not the reverse): the coupling 0 -> 1 is
    in row 1 (post), column 0 (pre)."""
    rng = np.random.default_rng(0)
    leader = np.sort(rng.uniform(0, 150, 1500))
    follows = leader[rng.random(len(leader)) < 0.5] + 0.02
    follower = np.sort(np.concatenate([follows, rng.uniform(0, 150, 750)]))
    support = nap.IntervalSet(0, 150.5)
    data = {"spikes": nap.TsGroup({0: nap.Ts(leader), 1: nap.Ts(follower)}, time_support=support)}
    res = gf.fit("spikes ~ coupling(all, 4, log, window=50ms)", data, bin_size="5ms",
                 epochs=nap.IntervalSet(0, 150))
    matrix = res.coupling_matrix()
    assert matrix.loc[1, 0] > 1.0
    assert abs(matrix.loc[0, 1]) < 0.5 * matrix.loc[1, 0]
    curve = res.curve("coupling", scale="log")
    assert abs(curve[(1, 0, "estimate")].idxmax() - 0.02) <= 0.0051  # within a bin
