"""Simulations that run away (issue 18): the warning, the Bernoulli draw, the stability report.

Fitted recurrent models can be unstable: simulated, a net excitatory history feeds a burst until
the rate sits at ``max_rate``. The simulation warns (naming unit ids and the share of capped
bins), ``draw="bernoulli"`` puts at most one spike in a bin, and ``res.stability(data)`` reports
the linearised gains of the spike filters (see glmformula/results/stability.py).
"""

from __future__ import annotations

import importlib
import re
import time
import warnings

import attrs
import numpy as np
import pynapple as nap
import pytest

import glmformula as gf
from glmformula.errors import ResultError
from glmformula.results.stability import StabilityReport, report, stability

HISTORY = "history(4, log, window=50ms)"
simulate_module = importlib.import_module("glmformula.results.simulate")


def _capped_share(message: str, unit) -> float:
    """The share of capped bins the warning gives for ``unit``."""
    found = re.search(rf"unit {unit}: ([0-9.]+)% \((\d+) bins\)", message)
    assert found, message
    return float(found.group(1)) / 100


def _column(counts, unit) -> np.ndarray:
    """A unit's counts from a simulated TsdFrame (columns: unit ids)."""
    return counts.values[:, list(counts.columns).index(unit)]


@pytest.fixture(scope="module")
def three_units():
    """Three Poisson units of ids 3, 10, 12 (not 0..2), 60 s at ~5 Hz, and a history fit."""
    rng = np.random.default_rng(7)
    support = nap.IntervalSet(0.0, 60.0)
    spikes = nap.TsGroup({u: nap.Ts(np.sort(rng.uniform(0, 60, 300))) for u in (3, 10, 12)},
                         time_support=support)
    data = {"spikes": spikes}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = gf.fit(f"spikes ~ {HISTORY}", data, bin_size="10ms", regularizer=gf.Ridge(1e-3))
    return data, res


def _with_history(res, values: dict):
    """The result with every history weight of unit id ``u`` set to ``values[u]``."""
    term = res.resolve_term("history")
    weights = res.weights.copy()
    for u, value in values.items():
        i = res.unit_ids.index(u)
        own = [c for c, (t, _) in zip(res.unit_columns[i], res.unit_labels[i]) if t == term]
        weights[own, i] = value
    return attrs.evolve(res, weights=weights)


def test_runaway_warning_names_unit_ids_and_capped_share(three_units, monkeypatch):
    data, res = three_units
    unstable = _with_history(res, {10: 3.0})  # unit 10 excites itself: +3 nats per filter
    monkeypatch.setattr(simulate_module, "_ROWS", 997)  # the check reads the data in blocks
    with pytest.warns(gf.SimulationWarning) as caught:
        sim = unstable.simulate(data, seed=0)
    messages = [str(w.message) for w in caught if issubclass(w.category, gf.SimulationWarning)]
    assert len(messages) == 2, messages
    before, after = messages
    # Before the draw: the diagnostic names unit 10 by its id, not its position (1).
    assert "unstable" in before and "unit 10 (gain" in before and "unit 1 " not in before
    rep = unstable.stability(data)
    assert rep.unstable_units == (10,)
    assert f"up to {rep.peak_spectral_radius:.3g} more" in before
    # After the draw: unit 10 alone, with the share of its bins at the cap.
    assert "max_rate cap (1000 Hz)" in after and "unit 3:" not in after and "unit 12" not in after
    share = _capped_share(after, 10)
    rate = _column(sim, 10).mean() / res.bin_size
    print(f"unit 10: {share:.1%} of bins capped, simulated {rate:.0f} Hz")
    assert share > 0.9
    assert rate == pytest.approx(1000 * share, rel=0.05)  # capped bins fire at 1000 Hz
    assert "Ridge" in after and "bernoulli" in after  # what to do
    for w in caught:  # pointing at this call, with the unit ids attached
        assert w.filename == __file__
        assert 10 in w.message.units and 3 not in w.message.units


def test_no_warning_for_a_stable_fit(hd_sim):
    """The simulated head-direction cells fitted with their tuning, history and a light Ridge:
    peak spectral radius 0.83, simulated spike counts within 5% of the recorded ones.

    (Not the population fixture ``hd_fit`` with coupling: simulated on wake, 4 of its 12 units
    run away, to 10-20 times their rate, and the check says so: radius 1.4.)"""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = gf.fit("spikes ~ cyclic(head_direction, 8) + history(4, log, window=100ms)",
                     hd_sim, bin_size="10ms", epochs="wake", regularizer=gf.Ridge(1e-4))
    rep = res.stability(hd_sim, epochs="wake")
    print(rep)
    assert rep.stable and rep.peak_spectral_radius < 1 and not rep.unstable_units
    with warnings.catch_warnings():
        warnings.simplefilter("error", gf.SimulationWarning)
        sim = res.simulate(hd_sim, seed=2, epochs="wake")
    observed = gf.design_matrix("spikes ~ 1", hd_sim, bin_size="10ms", epochs="wake").response
    ratio = sim.values.sum(axis=0) / observed.values.sum(axis=0)
    assert np.all((ratio > 0.85) & (ratio < 1.15)), ratio


def test_bernoulli_draws_at_most_one_spike_per_bin(three_units):
    data, res = three_units
    unstable = _with_history(res, {10: 3.0})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gf.SimulationWarning)
        poisson = unstable.simulate(data, seed=1)
        bernoulli = unstable.simulate(data, seed=1, draw="bernoulli")
    assert poisson.values.max() > 1
    assert set(np.unique(bernoulli.values)) <= {0, 1}
    assert bernoulli.values.dtype.kind == "i"
    # Unit 10 at the cap (1000 Hz, 10 ms bins): P(spike) = 1 - exp(-10), nearly every bin.
    assert _column(bernoulli, 10).mean() > 0.9
    # Without spike terms: 0/1 draws with P = 1 - exp(-mu) of predict's mu.
    flat = gf.fit("spikes ~ 1", data, bin_size="10ms")
    flat = attrs.evolve(flat, intercepts=np.log([0.5, 1.0, 2.0]))  # 50, 100, 200 Hz
    draws = flat.simulate(data, seed=3, draw="bernoulli").values
    assert set(np.unique(draws)) <= {0, 1}
    expected = 1 - np.exp(-np.array([0.5, 1.0, 2.0]))
    np.testing.assert_allclose(draws.mean(axis=0), expected, atol=4 * 0.5 / np.sqrt(len(draws)))
    with pytest.raises(ResultError, match="unknown draw"):
        flat.simulate(data, draw="binomial")
    with pytest.raises(ResultError, match="max_rate must be a positive"):
        flat.simulate(data, max_rate=0.0)


def test_spectral_radius_of_a_known_two_unit_network():
    rng = np.random.default_rng(0)
    support = nap.IntervalSet(0.0, 100.0)
    spikes = nap.TsGroup({4: nap.Ts(np.sort(rng.uniform(0, 100, 800))),
                          9: nap.Ts(np.sort(rng.uniform(0, 100, 300)))}, time_support=support)
    data = {"spikes": spikes}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = gf.fit(f"spikes ~ {HISTORY} + coupling(all)", data, bin_size="10ms")
    # Integral of one filter block with all weights 1 (the same k and window for both terms).
    ones = attrs.evolve(res, weights=np.ones_like(res.weights))
    total = ones.coupling_matrix().loc[4, 9]
    # Wanted integrals Phi[post, pre] (nats per spike): self 0.5 and -0.3, 4 <- 9: 2.0, 9 <- 4: 1.0
    phi = {(4, 4): 0.5, (9, 9): -0.3, (4, 9): 2.0, (9, 4): 1.0}
    weights = res.weights.copy()
    for i, post in enumerate(res.unit_ids):
        for c, (term, label) in zip(res.unit_columns[i], res.unit_labels[i]):
            pre = post if term.startswith("history") else int(label.split("]")[0][len("[unit "):])
            weights[c, i] = phi[post, pre] / total
    network = attrs.evolve(res, weights=weights)
    rep = network.stability()
    assert isinstance(rep, StabilityReport)
    np.testing.assert_allclose(network.coupling_matrix().loc[4, 9], 2.0)
    np.testing.assert_allclose(rep.per_unit["history_integral"], [0.5, -0.3])
    m = np.asarray(res.n_spikes) / res.n_rows  # mean spikes per bin: 0.08 and 0.03
    # A+ = diag(m) max(Phi, 0) = [[a, b], [c, d]]; Perron root of a 2 x 2 nonnegative matrix:
    a, b, c, d = m[0] * 0.5, m[0] * 2.0, m[1] * 1.0, 0.0
    rho = (a + d) / 2 + np.sqrt(((a - d) / 2) ** 2 + b * c)
    print(f"m = {m}, rho = {rho:.5f}, report: {rep.spectral_radius:.5f}")
    assert rep.spectral_radius == pytest.approx(rho, rel=1e-9)
    np.testing.assert_allclose(rep.gain_matrix.values, m[:, None] * np.array([[0.5, 2.0],
                                                                              [1.0, -0.3]]))
    np.testing.assert_allclose(rep.per_unit["gain"], m * [0.5, -0.3])
    np.testing.assert_allclose(rep.per_unit["critical_rate"], [1 / (0.5 * 0.01), np.inf])
    assert rep.stable and np.isnan(rep.peak_spectral_radius)
    assert "spectral radius" in str(rep) and "critical_rate" in str(rep)
    # At given rates: the largest radius over the bins (pruned search == every bin).
    counts = rng.gamma(0.5, 0.4, size=(5000, 2))
    peak = report(network, counts)
    every = [(x * 0.5 / 2 + np.sqrt((x * 0.5 / 2) ** 2 + x * 2.0 * y * 1.0)) for x, y in counts]
    assert peak.peak_spectral_radius == pytest.approx(max(every), rel=1e-9)
    assert peak.stable == (max(every) < 1)


def test_filter_of_a_covariate_leaves_out_the_first_window_of_each_epoch(injection_fit):
    """Decided: the bins where filter(current, window=200ms) would reach before the sweep's
    start are not simulated (as in predict), and the docstring says so."""
    data, res = injection_fit
    sim = res.simulate(data, seed=0)
    rate = res.predict(data)
    np.testing.assert_array_equal(sim.t, rate.t)  # filter window (200 ms) >= history (100 ms)
    for start, end in zip(sim.time_support.start, sim.time_support.end):
        first = sim.t[(sim.t >= start) & (sim.t < end)][0]
        assert first == pytest.approx(start + 0.2 + res.bin_size / 2)
    doc = gf.FitResult.simulate.__doc__
    assert "filter(x, ...)" in doc and "including the first ``window`` bins" not in doc


# -- real recordings --------------------------------------------------------------------------
def _hd_subset(hd_recording, seconds=600.0, units=range(8)):
    valid = hd_recording["valid"]
    ep = valid.intersect(nap.IntervalSet(valid.start[0], valid.start[0] + seconds))
    spikes = nap.TsGroup({u: hd_recording["spikes"][u] for u in units},
                         time_support=hd_recording["wake"])
    return {"spikes": spikes, "head_direction": hd_recording["head_direction"], "ep": ep}


def _run(formula, data, regularizer):
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = gf.fit(formula, data, bin_size="10ms", epochs="ep", regularizer=regularizer)
    rep = res.stability(data, epochs="ep")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sim = res.simulate(data, epochs="ep", seed=0)
    simulated = sim.values.sum(axis=0) / (len(sim) * res.bin_size)
    print(f"  {regularizer}: {time.perf_counter() - start:.1f} s; spectral radius "
          f"{rep.spectral_radius:.3g} at the mean rate, {rep.peak_spectral_radius:.3g} at the "
          f"peak; unstable units {list(rep.unstable_units)}; simulated Hz {np.round(simulated, 1)}")
    return rep, simulated, [w for w in caught if issubclass(w.category, gf.SimulationWarning)]


def test_real_head_direction_runaway_is_flagged_and_a_ridge_tames_it(hd_recording):
    """8 ADn cells, 10 min, 10 ms bins: measured with the unpenalised fit, 6 of 8 units run
    away (to 130-950 Hz; observed 0.8-17 Hz), spectral radius 6.1 at the peak rate (0.22 at
    the mean rate); with a Ridge of 1.0 on the history term, 1 unit (61 Hz for 17 Hz
    observed), radius 1.3."""
    data = _hd_subset(hd_recording)
    ep = data["ep"]
    observed = np.array([len(data["spikes"][u].restrict(ep)) for u in data["spikes"].index])
    observed = observed / ep.tot_length()
    history = "history(8, log, window=100ms)"
    formula = f"spikes ~ cyclic(head_direction, 12) + {history}"
    print(f"\nobserved Hz {np.round(observed, 1)}")
    plain, plain_hz, plain_warnings = _run(formula, data, None)
    ridge, ridge_hz, ridge_warnings = _run(formula, data, gf.Ridge({history: 1.0}))

    ran_away = {u for u, s, o in zip(data["spikes"].index, plain_hz, observed) if s > 3 * o}
    flagged = set(plain.unstable_units)
    assert len(ran_away) >= 4
    assert not plain.stable and plain.spectral_radius < 1  # the mean rate alone misses it
    assert ran_away <= flagged and len(flagged - ran_away) <= 1
    assert len(plain_warnings) == 2  # before (diagnostic) and after (capped bins)
    capped = str(plain_warnings[1].message)
    assert all(f"unit {u}:" in capped for u in ran_away)

    ridge_away = {u for u, s, o in zip(data["spikes"].index, ridge_hz, observed) if s > 3 * o}
    assert ridge.peak_spectral_radius < 0.5 * plain.peak_spectral_radius
    assert len(ridge.unstable_units) < len(flagged) and len(ridge_away) < len(ran_away)
    assert ridge_away <= set(ridge.unstable_units)


def test_real_current_clamp_bernoulli_draw_matches_the_spike_count(current_injection_recording):
    """1 ms bins, 3 sweeps: a Poisson draw puts up to 4 spikes in a bin where the current alone
    drives the rate past the cap, and fires ~16% too much; the Bernoulli draw never puts two."""
    rec = current_injection_recording
    sweeps = rec["sweeps"][:3]
    data = {"spikes": rec["spikes"], "current": rec["current"], "sweeps": sweeps}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = gf.fit("spikes ~ filter(current, 10, window=200ms) + history(8, log, window=100ms)",
                     data, bin_size="1ms", epochs="sweeps")
        poisson = res.simulate(data, seed=0, epochs="sweeps")
    with pytest.warns(gf.SimulationWarning, match="covariates alone drive the rate"):
        bernoulli = res.simulate(data, seed=0, epochs="sweeps", draw="bernoulli")
    recorded = gf.design_matrix("spikes ~ 1", data, bin_size="1ms", epochs="sweeps").response
    observed = recorded.values[np.isin(recorded.t, bernoulli.t)].sum()
    ratios = poisson.values.sum() / observed, bernoulli.values.sum() / observed
    print(f"simulated / observed spikes: Poisson {ratios[0]:.3f} (max {poisson.values.max()} "
          f"per bin), Bernoulli {ratios[1]:.3f}")
    assert poisson.values.max() > 1
    assert bernoulli.values.max() == 1
    assert abs(ratios[1] - 1) < 0.06 < abs(ratios[0] - 1)
    assert stability(res, data, epochs="sweeps").stable  # refractory: not a runaway


def test_the_summary_reports_stability_for_models_with_spike_filters():
    import io

    from rich.console import Console

    data = gf.datasets.head_direction(n_units=3, duration=120.0, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spiking = gf.fit("spikes ~ cyclic(head_direction, 8) + history(4, log, window=100ms)",
                         data, bin_size="10ms", epochs="wake", regularizer=gf.Ridge(1e-4))
        tuning = gf.fit("spikes ~ cyclic(head_direction, 8)", data, bin_size="10ms",
                        epochs="wake", regularizer=gf.Ridge(1e-4))
    report = spiking.summary().attrs["stability"]
    assert report.spectral_radius == pytest.approx(spiking.stability().spectral_radius)
    assert "stability" not in tuning.summary().attrs
    buffer = io.StringIO()
    spiking.print_summary(console=Console(file=buffer, width=120))
    printed = " ".join(buffer.getvalue().split())   # the console wraps long lines
    assert " ".join(str(report).splitlines()[0].split()) in printed
