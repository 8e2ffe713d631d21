"""State-dependent temporal terms: ``coupling(all):rest``, ``history(k):speed``,
``filter(x, k):state``.

Simulated populations (numpy, recurrent Poisson, 10 ms bins) whose coupling exists only in a
"rest" IntervalSet of alternating 20 s epochs: the likelihood-ratio test of
``coupling(...):rest`` rejects and the per-state coupling matrices match the truth; with the
same coupling in both states it does not reject (in most seeds). Plus the design (the gated
bank is the bank times the state, selected per unit as the bank), curves and matrices per
state, the recurrent simulation of gated filters, files, and the refusals.
"""

from __future__ import annotations

import warnings

import numpy as np
import pynapple as nap
import pytest

import glmformula as gf
from glmformula.graph import gating
from glmformula.graph.design import build, build_block, prepare

BIN = 0.01
LAGS = 6  # the simulated filters' length (bins): 60 ms
COUPLING = "coupling(all, 4, log, window=60ms)"
FORMULA = f"spikes ~ {COUPLING} + {COUPLING}:rest"


def simulate_population(seed: int, *, state_dependent: bool = True, n_units: int = 5,
                        duration: float = 200.0, rate: float = 20.0, strength: float = 0.4,
                        epoch: float = 20.0):
    """A recurrent Poisson population whose coupling acts only inside ``rest`` (or always).

    ``A[post, pre]`` ~ N(0, strength) (zero diagonal) scales the filter ``exp(-(l - 1) / 2)``
    at lags l = 1 .. 6 bins. Returns (data, true coupling integrals post x pre).
    """
    rng = np.random.default_rng(seed)
    n_bins = int(round(duration / BIN))
    A = rng.normal(0.0, strength, (n_units, n_units))
    np.fill_diagonal(A, 0.0)
    shape = np.exp(-np.arange(LAGS) / 2.0)
    starts = np.arange(0.0, duration, 2 * epoch)
    rest = nap.IntervalSet(starts, np.minimum(starts + epoch, duration))
    t = np.arange(n_bins) * BIN
    on = (((t + BIN / 2) % (2 * epoch)) < epoch) if state_dependent else np.ones(n_bins, bool)
    H = (shape[:, None, None] * A.T[None]).reshape(LAGS * n_units, n_units)  # [lag, pre], post
    counts = np.zeros((n_bins, n_units))
    base = np.log(rate * BIN)
    for i in range(n_bins):
        seen = min(LAGS, i)
        drive = np.full(n_units, base)
        if seen and on[i]:
            drive = drive + counts[i - seen:i][::-1].reshape(-1) @ H[:seen * n_units]
        counts[i] = rng.poisson(np.exp(np.minimum(drive, 0.0)))
    support = nap.IntervalSet(0.0, duration)
    spikes = {}
    for u in range(n_units):
        bins = np.repeat(np.arange(n_bins), counts[:, u].astype(int))
        spikes[u] = nap.Ts(np.sort(t[bins] + rng.uniform(0.0, BIN, len(bins))))
    data = {"spikes": nap.TsGroup(spikes, time_support=support), "rest": rest}
    return data, A * shape.sum()


def simulate_history_gain(seed: int = 0, duration: float = 300.0):
    """One unit whose history filter grows with speed: log rate = b + sum_l c[t-l]
    (h_l + speed_t g_l). Returns (data, g at lags 1..6 bins)."""
    rng = np.random.default_rng(seed)
    n_bins = int(round(duration / BIN))
    t = np.arange(n_bins) * BIN
    lags = np.arange(1, LAGS + 1)
    h, g = -1.5 * np.exp(-lags / 1.5), 1.0 * np.exp(-lags / 2.0)
    phase = rng.uniform(0, 2 * np.pi)
    speed = 1.0 + 0.9 * np.sin(2 * np.pi * t / 7.0 + phase) * np.cos(2 * np.pi * t / 31.0)
    counts = np.zeros(n_bins)
    base = np.log(20.0 * BIN)
    for i in range(n_bins):
        seen = min(LAGS, i)
        past = counts[i - seen:i][::-1]
        drive = base + past @ (h[:seen] + speed[i] * g[:seen])
        counts[i] = rng.poisson(np.exp(min(drive, 0.0)))
    bins = np.repeat(np.arange(n_bins), counts.astype(int))
    support = nap.IntervalSet(0.0, duration)
    spikes = nap.TsGroup({0: nap.Ts(np.sort(t[bins] + rng.uniform(0, BIN, len(bins))))},
                         time_support=support)
    return {"spikes": spikes, "speed": nap.Tsd(t=t + BIN / 2, d=speed, time_support=support)}, g


def _fit(formula, data, **kwargs):
    """Unpenalised fits: the likelihood-ratio test is then exact (asymptotically)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gf.fit(formula, data, bin_size=BIN, smoothing=None, **kwargs)


def _lr_pvalues(res, data) -> np.ndarray:
    frame = res.summary(data=data, refit=["coupling:rest"])
    return frame.xs(res.resolve_term("coupling:rest"), level="term")["lr_pvalue"].to_numpy()


def _off_diagonal(matrix) -> np.ndarray:
    values = np.asarray(matrix, float)
    return values[~np.eye(len(values), dtype=bool)]


@pytest.fixture(scope="module")
def state_data():
    return simulate_population(0)


@pytest.fixture(scope="module")
def state_fit(state_data):
    return _fit(FORMULA, state_data[0])


# -- evidence: the test of coupling(all):rest ------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1])
def test_lr_rejects_when_coupling_exists_only_in_rest(seed):
    data, truth = simulate_population(seed)
    res = _fit(FORMULA, data)
    p = _lr_pvalues(res, data)
    assert np.all(p < 0.01), p
    inside = res.coupling_matrix(state="rest")
    outside = res.coupling_matrix()
    assert inside.attrs["state"] == "rest" and outside.attrs["state"] == "outside rest"
    assert np.corrcoef(_off_diagonal(inside), _off_diagonal(truth))[0, 1] > 0.8
    # outside rest there is no coupling: the estimates are small next to the true ones
    assert np.abs(_off_diagonal(outside)).mean() < 0.3 * np.abs(_off_diagonal(truth)).mean()


def test_lr_does_not_reject_without_state_dependence():
    rejected = 0
    for seed in range(4):
        data, truth = simulate_population(seed, state_dependent=False)
        res = _fit(FORMULA, data)
        rejected += bool(np.any(_lr_pvalues(res, data) < 0.01))
        for state in (None, "rest"):  # the same coupling in both states
            matrix = res.coupling_matrix(state=state)
            assert np.corrcoef(_off_diagonal(matrix), _off_diagonal(truth))[0, 1] > 0.8
    assert rejected <= 1


def test_gated_only_model_is_legal(state_data):
    data, truth = state_data
    res = _fit(f"spikes ~ {COUPLING}:rest", data)
    inside = res.coupling_matrix(state="rest")
    assert np.corrcoef(_off_diagonal(inside), _off_diagonal(truth))[0, 1] > 0.8
    with pytest.raises(gf.ResultError, match="only in a state"):
        res.coupling_matrix()
    assert np.all(_lr_pvalues(res, data) < 0.01)  # against the model without coupling


def test_history_gain_with_speed_is_recovered():
    data, g = simulate_history_gain()
    res = _fit("spikes ~ history(4, log, window=60ms) + history(4, log, window=60ms):speed",
               data)
    curve = res.curve("history:speed", scale="log")
    assert curve.attrs["state"] == "speed"
    assert "per unit of 'speed'" in curve.attrs["effect"]
    estimate = curve[(0, "estimate")].to_numpy()
    assert len(estimate) == LAGS
    assert np.corrcoef(estimate, g)[0, 1] > 0.9
    assert abs(estimate.sum() - g.sum()) < 0.3 * g.sum()
    assert res.summary().loc[(res.resolve_term("history:speed"), 0), "p_value"] < 1e-6


# -- design: the gated bank ----------------------------------------------------------------------
def test_gated_bank_is_the_bank_times_the_state(state_data):
    data, _ = state_data
    prepared = prepare(FORMULA, data, bin_size=BIN)
    design = build(prepared)
    plan = design.plan
    base, gated = plan.terms
    assert gating.spike_bank(gated.node) == base.node and gating.gate(gated.node) is not None
    indicator = design.graph.evaluate(gating.gate(gated.node))[:, 0]
    assert set(np.unique(indicator)) == {0.0, 1.0}
    stored_base = design.storage[:, plan.term_storage[base.text]]
    stored_gated = design.storage[:, plan.term_storage[gated.text]]
    np.testing.assert_array_equal(stored_gated, stored_base * indicator[:, None])
    # each unit selects the same sources from both banks (never itself), labelled alike
    for u, unit in enumerate(plan.unit_ids):
        labels = plan.unit_labels[u]
        own_base = [label for t, label in labels if t == base.text]
        own_gated = [label for t, label in labels if t == gated.text]
        assert own_base == own_gated and not any(f"[unit {unit}]" in x for x in own_base)
        columns = np.asarray(plan.unit_columns[u])
        shift = plan.term_storage[gated.text].start - plan.term_storage[base.text].start
        in_base = [c for c, (t, _) in zip(columns, labels) if t == base.text]
        in_gated = [c for c, (t, _) in zip(columns, labels) if t == gated.text]
        np.testing.assert_array_equal(np.asarray(in_gated) - shift, in_base)
    assert all(name.startswith(gated.text) for name in
               plan.storage_columns[plan.term_storage[gated.text]])
    # blocks of rows give the same columns as the whole design
    block = build_block(prepared, 4000, 9000)
    np.testing.assert_allclose(block.X, design.storage[4000:9000], rtol=1e-12, atol=1e-12)


def test_blocked_fit_equals_in_memory(state_data):
    data, _ = state_data
    whole = _fit(FORMULA, data, chunk_size=0, tol=1e-10)
    blocks = _fit(FORMULA, data, chunk_size=3333, tol=1e-10)
    np.testing.assert_allclose(blocks.weights, whole.weights, rtol=1e-6, atol=1e-6)


def test_history_and_coupling_gated_by_a_scalar_and_a_transform(state_data):
    data, _ = state_data
    data = dict(data)
    t = np.arange(0.0, 200.0, BIN) + BIN / 2
    data["speed"] = nap.Tsd(t=t, d=1.5 + np.sin(t / 3.0))
    res = _fit(f"spikes ~ history(4, log, window=60ms):log(speed) + {COUPLING}:speed", data)
    assert res.resolve_term("coupling:speed") == f"{COUPLING}:speed"
    with pytest.raises(gf.ResultError, match="scalar state"):
        res.coupling_matrix(state="speed")
    at_two = res.coupling_matrix(state={"speed": 2.0})
    at_one = res.coupling_matrix(state={"speed": 1.0})
    np.testing.assert_allclose(_off_diagonal(at_two), 2 * _off_diagonal(at_one), rtol=1e-10)
    assert at_two.attrs["state"] == "speed = 2"


def test_filter_gated_by_a_state_has_a_curve_over_lag(state_data):
    data, _ = state_data
    data = dict(data)
    t = np.arange(0.0, 200.0, BIN) + BIN / 2
    data["current"] = nap.Tsd(t=t, d=np.random.default_rng(0).normal(size=len(t)))
    res = _fit("spikes ~ filter(current, 4, window=60ms) + filter(current, 4, window=60ms):rest",
               data)
    curve = res.curve("filter:rest")
    assert curve.index.name == "lag (s)" and len(curve) == LAGS
    assert curve.attrs["state"] == "rest" and "inside 'rest'" in curve.attrs["effect"]
    inside = res.curve("filter(current, 4, window=60ms)", state="rest", scale="log")
    alone = res.curve("filter(current, 4, window=60ms)", scale="log")
    change = res.curve("filter:rest", scale="log")
    np.testing.assert_allclose(inside.xs("estimate", level="stat", axis=1),
                               alone.xs("estimate", level="stat", axis=1)
                               + change.xs("estimate", level="stat", axis=1), atol=1e-12)


# -- results: curves, tables, summary, files, simulation -----------------------------------------
def test_curve_in_a_state_is_the_sum_with_its_band(state_fit):
    res = state_fit
    inside = res.curve("coupling", state="rest", scale="log")
    alone = res.curve("coupling", scale="log")
    change = res.curve("coupling:rest", scale="log")
    assert inside.attrs["state"] == "rest" and alone.attrs["state"] == "outside rest"
    assert change.attrs["term"] == f"{COUPLING}:rest"
    est = lambda f: f.xs("estimate", level="stat", axis=1)  # noqa: E731
    np.testing.assert_allclose(est(inside), est(alone) + est(change), atol=1e-12)
    # the band of the sum is that of the joint covariance, not of either part (log-spaced
    # filters are 0 at the window's last lag, and so are the bands)
    width = lambda f: (f.xs("upper", level="stat", axis=1)  # noqa: E731
                       - f.xs("lower", level="stat", axis=1)).to_numpy()[:-1]
    assert np.all(width(inside) > 0) and not np.allclose(width(inside), width(alone))
    # the integral of the state's filter is the matrix entry
    matrix = res.coupling_matrix(state="rest")
    np.testing.assert_allclose(est(inside)[(0, 1)].sum(), matrix.loc[0, 1], rtol=1e-10)
    with pytest.raises(gf.ResultError, match="no state="):
        res.curve("coupling:rest", state="rest")
    with pytest.raises(gf.ResultError, match="no coupling term is gated by 'running'"):
        res.coupling_matrix(state="running")


def test_table_and_summary_name_the_state(state_fit, state_data):
    res = state_fit
    term = f"{COUPLING}:rest"
    assert res.resolve_term("coupling") == COUPLING
    assert res.resolve_term("coupling:rest") == term == res.resolve_term("rest")
    table = res.table("coupling:rest")
    assert len(table) == 5 * 4 * 4  # 5 units x 4 sources x 4 filters
    frame = res.summary(data=state_data[0], refit=["coupling:rest"])
    rows = frame.xs(term, level="term")
    assert (rows["df"] == 16).all() and (rows["lr_pvalue"] < 0.01).all()
    assert frame.xs(COUPLING, level="term")["lr_stat"].isna().all()  # not refitted


def test_saved_result_reads_the_states(state_fit, tmp_path):
    loaded = gf.load_result(state_fit.save(tmp_path / "state"))
    for state in (None, "rest"):
        np.testing.assert_allclose(loaded.coupling_matrix(state=state),
                                   state_fit.coupling_matrix(state=state), rtol=1e-12)
    assert loaded.covariate_ranges["rest"].interval


def test_simulation_of_gated_coupling_recovers_it(state_data):
    data, _ = state_data
    res = _fit(f"spikes ~ {COUPLING}:rest", data)
    simulated = res.simulate(data, seed=3)
    spikes = nap.TsGroup({u: nap.Ts(np.repeat(simulated.t, simulated[:, i].values.astype(int)))
                          for i, u in enumerate(res.unit_ids)},
                         time_support=data["spikes"].time_support)
    again = _fit(f"spikes ~ {COUPLING}:rest", {"spikes": spikes, "rest": data["rest"]})
    first, second = (_off_diagonal(r.coupling_matrix(state="rest")) for r in (res, again))
    assert np.corrcoef(first, second)[0, 1] > 0.8


# -- refusals ------------------------------------------------------------------------------------
@pytest.mark.parametrize("formula, match", [
    ("spikes ~ history(4, log, window=60ms):coupling(all)", "cannot be interacted with each"),
    (f"spikes ~ {COUPLING}:cyclic(angle, 4)", "not by cyclic"),
    (f"spikes ~ {COUPLING}:filter(angle, 4, window=60ms)", "not by filter"),
    (f"spikes ~ {COUPLING}:offset(angle)", "offset"),
    (f"spikes ~ {COUPLING}:xy", "2 columns"),
])
def test_refusals_name_the_fix(state_data, formula, match):
    data = dict(state_data[0])
    t = np.arange(0.0, 200.0, BIN) + BIN / 2
    data["angle"] = nap.Tsd(t=t, d=np.mod(t, 2 * np.pi))
    data["xy"] = nap.TsdFrame(t=t, d=np.stack([np.sin(t), np.cos(t)], axis=1),
                              columns=["x", "y"])
    with pytest.raises(gf.FormulaError, match=match) as info:
        _fit(formula, data)
    assert isinstance(info.value, gf.TermArgumentError)
    assert info.value.hint


def test_state_argument_refusals(state_fit):
    with pytest.raises(gf.ResultError, match="finite number"):
        state_fit.coupling_matrix(state={"rest": "inside"})
    with pytest.raises(gf.ResultError, match="mapping"):
        state_fit.coupling_matrix(state=1)


def test_state_on_a_model_without_gated_terms(state_data):
    res = _fit(f"spikes ~ {COUPLING}", state_data[0])
    with pytest.raises(gf.ResultError, match="does not depend on a state"):
        res.coupling_matrix(state="rest")
    assert "state" not in res.coupling_matrix().attrs


def test_each_coupling_term_reads_its_own_sources(state_data):
    data, _ = state_data
    gated = "coupling([0, 1], 4, log, window=60ms):rest"
    res = _fit(f"spikes ~ {COUPLING} + {gated}", data)
    for u, unit in enumerate(res.unit_ids):
        sources = {label.split("]")[0] for t, label in res.unit_labels[u] if t == gated}
        assert sources == {f"[unit {s}" for s in (0, 1) if s != unit}
    matrix = res.coupling_matrix(state="rest")
    assert np.isfinite(matrix.loc[4, 0]) and matrix.loc[0, 1] != res.coupling_matrix().loc[0, 1]
    assert matrix.loc[4, 3] == res.coupling_matrix().loc[4, 3]  # not gated: the same


def test_plot_coupling_in_a_state(state_fit):
    figure = state_fit.plot_coupling(state="rest")
    assert "(rest)" in figure.axes[0].get_title()
