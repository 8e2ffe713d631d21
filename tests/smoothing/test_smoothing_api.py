"""The smoothing options end to end: per-term settings, fixed strengths, select=True, results,
saved files, comparisons, spec files and refusals (simulated data)."""

from __future__ import annotations

import numpy as np
import pynapple as nap
import pytest

import glmformula as gf
from glmformula.graph.penalties import difference_penalty

BIN = 0.05


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    n = 8000
    t = (np.arange(n) + 0.5) * BIN
    hd = np.mod(np.cumsum(rng.normal(0, 0.2, n)), 2 * np.pi)
    noise = rng.uniform(0, 1, n)  # a covariate the units ignore
    groups = {}
    for u, phase in enumerate([0.0, 2.0, 4.0]):
        counts = rng.poisson(np.exp(np.log(6 * BIN) + np.cos(hd - phase)))
        groups[u] = nap.Ts(np.sort(np.repeat(t, counts) + rng.uniform(-BIN / 2, BIN / 2,
                                                                       counts.sum())))
    epochs = nap.IntervalSet(0, n * BIN)
    return {"spikes": nap.TsGroup(groups, time_support=epochs),
            "hd": nap.Tsd(t, hd, time_support=epochs),
            "noise": nap.Tsd(t, noise, time_support=epochs)}


def test_difference_penalties():
    S = difference_penalty(5, 2)
    assert np.allclose(S @ np.ones(5), 0) and np.allclose(S @ np.arange(5.0), 0)
    assert np.linalg.matrix_rank(S) == 3
    C = difference_penalty(6, 2, cyclic=True)
    assert np.allclose(C @ np.ones(6), 0) and np.linalg.matrix_rank(C) == 5
    assert difference_penalty(2, 2) is None


def test_auto_is_the_default_and_none_turns_it_off(data):
    auto = gf.fit("spikes ~ cyclic(hd, 16)", data, bin_size=BIN)
    off = gf.fit("spikes ~ cyclic(hd, 16)", data, bin_size=BIN, smoothing=None)
    assert auto.smoothing.index.names == ["term", "unit"]
    assert list(auto.smoothing.columns) == ["strength", "edf"]
    assert len(auto.smoothing) == 3 and (auto.smoothing["strength"] > 0).all()
    # a cosine tuning needs few degrees of freedom: fewer than the 15 free weights
    assert (auto.smoothing["edf"] < 12).all() and (auto.smoothing["edf"] > 1).all()
    assert off.smoothing.empty and off.smoothing_fit is None
    assert auto.n_params < off.n_params == 3 * 16
    np.testing.assert_allclose(auto.n_params_units, auto.smoothing["edf"].to_numpy() + 1)
    assert np.isclose(auto.aic, 2 * auto.n_params - 2 * auto.log_likelihood)
    assert "edf" in auto.table("cyclic(hd, 16)").columns
    assert "edf" in auto.summary().columns


def test_fixed_strength_in_the_formula_reproduces_the_chosen_fit(data):
    auto = gf.fit("spikes ~ cyclic(hd, 16)", data, bin_size=BIN)
    s = float(auto.smoothing["strength"].iloc[0])  # unit 0's strength
    fixed = gf.fit(f"spikes[0] ~ cyclic(hd, 16, smooth={s!r})", data, bin_size=BIN)
    assert fixed.smoothing_fit is None  # nothing chosen: the strength was given
    np.testing.assert_allclose(fixed.weights[:, 0], auto.weights[:, 0], atol=1e-6)
    none = gf.fit("spikes[0] ~ cyclic(hd, 16, smooth=none)", data, bin_size=BIN)
    off = gf.fit("spikes[0] ~ cyclic(hd, 16)", data, bin_size=BIN, smoothing=None)
    np.testing.assert_allclose(none.weights, off.weights, atol=1e-8)


def test_select_shrinks_a_useless_term(data):
    formula = "spikes ~ cyclic(hd, 12) + bspline(noise, 8)"
    plain = gf.fit(formula, data, bin_size=BIN)
    shrunk = gf.fit(formula, data, bin_size=BIN, select=True)
    edf_plain = plain.smoothing.xs("bspline(noise, 8)", level="term")["edf"]
    keys = shrunk.smoothing.index.get_level_values("term")
    assert any("[null space]" in k for k in keys)
    edf_noise = shrunk.smoothing_fit.edf["bspline(noise, 8)"]
    # REML may keep a little of a useless term where that lowers V (unit by unit: a unit's
    # criterion can be lower at edf 1.2 than with the term removed), but the null-space
    # penalty shrinks the term below its unpenalised linear part in total
    assert edf_noise.sum() < edf_plain.to_numpy().sum() and np.all(edf_noise < 1.5)


def test_ridge_adds_to_the_smoothness_penalty(data):
    res = gf.fit("spikes ~ cyclic(hd, 12)", data, bin_size=BIN, regularizer=gf.Ridge(1e-2))
    alone = gf.fit("spikes ~ cyclic(hd, 12)", data, bin_size=BIN)
    assert res.smoothing_fit is not None
    assert np.all(np.abs(res.weights).sum(axis=0) < np.abs(alone.weights).sum(axis=0))


def test_saved_results_keep_the_smoothing(data, tmp_path):
    res = gf.fit("spikes ~ cyclic(hd, 12) + history(4, log, window=250ms)", data, bin_size=BIN)
    loaded = gf.load_result(res.save(tmp_path / "fit"))
    assert loaded.smoothing.equals(res.smoothing)
    assert loaded.n_params == pytest.approx(res.n_params)


def test_history_penalty_is_per_unit(data):
    res = gf.fit("spikes ~ cyclic(hd, 12) + history(4, log, window=250ms)", data, bin_size=BIN)
    table = res.smoothing
    assert set(table.index.get_level_values("term")) == {
        "cyclic(hd, 12)", "history(4, log, window=250ms)"}
    assert table.xs("history(4, log, window=250ms)", level="term").shape[0] == 3


def test_compare_reports_edf_and_chooses_per_fold(data):
    table = gf.compare({"hd": "spikes ~ cyclic(hd, 12)",
                        "hd+noise": "spikes ~ cyclic(hd, 12) + bspline(noise, 8)"},
                       data, bin_size=BIN, cv=3)
    assert "edf" in table.columns
    assert (table["edf"] < table["n_params"]).all()
    off = gf.compare({"hd": "spikes ~ cyclic(hd, 12)"}, data, bin_size=BIN, cv=3,
                     smoothing=None)
    assert off.loc["hd", "edf"] == off.loc["hd", "n_params"]


def test_spec_file_smoothing_keys(tmp_path):
    path = tmp_path / "models.toml"
    path.write_text('[data]\nsimulate = "head_direction"\noptions = { n_units = 2, duration = '
                    '60.0 }\nbin_size = "25ms"\nepochs = "wake"\n[models]\nhd = "spikes ~ '
                    'cyclic(head_direction, 8)"\n[fit]\nsmoothing = "none"\nselect = true\n')
    spec = gf.load_spec(path)
    assert spec.smoothing is None and spec.select is True
    path.write_text(path.read_text().replace('"none"', '"sometimes"'))
    with pytest.raises(gf.SpecError, match="smoothing"):
        gf.load_spec(path)


def test_refusals(data):
    with pytest.raises(gf.FormulaError, match="smooth must be auto, none or a strength"):
        gf.parse("spikes ~ cyclic(hd, 12, smooth=-1)")
    with pytest.raises(gf.FitError, match="smoothing="):
        gf.fit("spikes ~ cyclic(hd, 12)", data, bin_size=BIN, smoothing="yes")
    blocked = gf.fit("spikes ~ cyclic(hd, 12, smooth=1e-3)", data, bin_size=BIN,
                     chunk_size=2000)
    in_memory = gf.fit("spikes ~ cyclic(hd, 12, smooth=1e-3)", data, bin_size=BIN)
    np.testing.assert_allclose(blocked.weights, in_memory.weights, atol=1e-6)


def test_blocked_fit_chooses_strengths_on_a_sample_of_blocks(data, monkeypatch):
    in_memory = gf.fit("spikes ~ cyclic(hd, 12)", data, bin_size=BIN)
    # every block fits in memory here: the sample is all rows, so the same strengths
    blocked = gf.fit("spikes ~ cyclic(hd, 12)", data, bin_size=BIN, chunk_size=2000)
    np.testing.assert_allclose(blocked.smoothing["strength"], in_memory.smoothing["strength"],
                               rtol=1e-4)
    np.testing.assert_allclose(blocked.weights, in_memory.weights, atol=1e-5)
    monkeypatch.setattr(gf.config, "memory_limit", 2000 * 20 * 8 * 2)  # one block of 2000 rows
    sampled = gf.fit("spikes ~ cyclic(hd, 12)", data, bin_size=BIN, chunk_size=2000)
    ratio = sampled.smoothing["strength"] / in_memory.smoothing["strength"]
    assert np.all((ratio > 0.1) & (ratio < 10))  # a quarter of the rows: the same order
