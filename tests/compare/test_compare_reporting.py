"""What a comparison reports about its fits: convergence over every fold, held-out scores
that diverged, and warnings named by model, fold, unit id and column, each kind once."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pynapple as nap
import pytest

import glmformula as gf
from glmformula.compare.comparison import ModelScores

compare_module = importlib.import_module("glmformula.compare.compare")  # the function shadows it
README = Path(__file__).resolve().parents[2] / "README.md"
MODELS = {"hd": "spikes ~ cyclic(head_direction, 12)",
          "hd+hist": "spikes ~ cyclic(head_direction, 12) + history(8)"}


@pytest.fixture(scope="module")
def readme_data():
    return gf.datasets.head_direction(n_units=4, duration=300.0)


@pytest.fixture(scope="module")
def unpenalised(readme_data):
    """The README's comparison without any penalty (no ridge, smoothing off): some folds
    separate and one stops short."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = gf.compare(MODELS, readme_data, bin_size="10ms", epochs="wake", cv=5,
                           smoothing=None)
    return table, caught


def test_converged_is_false_when_any_fold_fit_did_not_converge(unpenalised):
    table, _ = unpenalised
    records = table.attrs["warnings"]
    failed = records[records["kind"] == "ConvergenceWarning"]
    assert len(failed), "this comparison has a fold fit that does not converge"
    for model in set(failed["model"]):
        assert not table.loc[model, "converged"]
        # the fit on all rows converged: the flag comes from the fold
        assert "all" not in set(failed[failed["model"] == model]["fold"])


def test_each_kind_of_warning_is_issued_once_with_counts_and_context(unpenalised):
    table, caught = unpenalised
    ours = [w for w in caught if issubclass(w.category, gf.GlmformulaWarning)]
    kinds = [w.category for w in ours]
    assert len(kinds) == len(set(kinds)), "one warning per kind"
    records = table.attrs["warnings"]
    assert set(records["kind"]) == {k.__name__ for k in kinds}
    for w in ours:
        text = str(w.message)
        count = int(re.match(r"(\d+) fit", text).group(1))
        assert count == (records["kind"] == w.category.__name__).sum()
        assert "model 'hd" in text and "fold" in text
        assert w.filename == __file__  # points at the user's call, not into the package


def test_backend_warnings_name_unit_ids_and_column_labels():
    rng = np.random.default_rng(3)
    t = np.arange(0, 200, 0.01)
    gate = (np.floor(t) % 2 == 1) * 1.0                 # on in odd seconds
    inside = t[(gate == 1) & (t % 1 > 0.1) & (t % 1 < 0.9)]
    spikes = nap.TsGroup({3: nap.Ts(np.sort(rng.uniform(0, 200, 300))),
                          10: nap.Ts(np.array([], float)),
                          12: nap.Ts(np.sort(rng.choice(inside, 300, replace=False)))},
                         time_support=nap.IntervalSet(0, 200))
    data = {"spikes": spikes, "gate": nap.Tsd(t=t, d=gate)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gf.fit("spikes ~ gate", data, bin_size="10ms")
    text = {w.category: str(w.message) for w in caught}
    assert "units 10 " in text[gf.NoSpikesWarning]           # the silent unit, by id
    assert "units 12 " in text[gf.SeparationWarning]         # fires only where gate = 1
    assert "'gate'" in text[gf.SeparationWarning]            # the column, by name
    assert all(w.filename == __file__ for w in caught if issubclass(w.category,
                                                                   gf.GlmformulaWarning))


def _scores(fold_bps):
    fold_bps = np.asarray(fold_bps, float)
    spikes = np.full(fold_bps.shape, 100.0)
    return ModelScores("place", np.array([5, 5]), np.array([-10.0, -10.0]),
                       np.array([0.5, 0.5]), np.array([500.0, 500.0]),
                       fold_bps * np.log(2) * spikes, fold_bps, spikes, 1000,
                       np.array([True, True]))


def test_diverged_held_out_scores_show_as_minus_inf_with_a_flag_and_one_message():
    results = {"place": _scores([[0.5, 0.4], [-4.96e132, 0.5], [0.6, 0.5]])}
    formulas = {"place": gf.parse("spikes ~ bspline(x, 12)")}
    with np.errstate(all="raise"):  # no numpy overflow warning either
        pooled = compare_module.comparison_table(formulas, results, (3, 7), per_unit=False)
        per_unit = compare_module.comparison_table(formulas, results, (3, 7), per_unit=True)
    assert pooled.loc["place", "cv_bits_per_spike"] == -np.inf
    assert pooled.loc["place", "cv_flag"] == "diverged (fold 2)"
    assert per_unit.loc[("place", 3), "cv_bits_per_spike"] == -np.inf
    assert per_unit.loc[("place", 7), "cv_flag"] == ""                 # unit 7 is fine
    assert np.isfinite(per_unit.loc[("place", 7), "cv_bits_per_spike"])
    with pytest.warns(gf.ScoreWarning) as caught:
        compare_module._report_warnings(per_unit, results)
    assert len(caught) == 1
    text = str(caught[0].message)
    assert "model 'place' fold(s) 2" in text and "units [3]" in text
    assert "smoothing='auto' (the default)" in text and "gf.Ridge(1e-3)" in text


def test_per_term_ridge_strengths_accept_the_aliases_of_tables_and_curves(readme_data):
    f = "spikes ~ cyclic(head_direction, 12) + history(8, log, window=100ms)"
    by_alias = gf.fit(f, readme_data, bin_size="10ms", epochs="wake",
                      regularizer=gf.Ridge({"history": 1e-2, "head_direction": 1e-4}))
    by_text = gf.fit(f, readme_data, bin_size="10ms", epochs="wake",
                     regularizer=gf.Ridge({"history(8, log, window=100ms)": 1e-2,
                                           "cyclic(head_direction, 12)": 1e-4}))
    np.testing.assert_array_equal(by_alias.weights, by_text.weights)
    with pytest.raises(gf.FormulaError, match="no term 'historee'"):
        gf.fit(f, readme_data, bin_size="10ms", epochs="wake",
               regularizer=gf.Ridge({"historee": 1e-2}))


def test_the_readme_ten_lines_run_without_any_warning(tmp_path):
    text = README.read_text()
    block = re.search(r"## Ten lines\s+```python\n(.*?)```", text, re.S).group(1)
    script = tmp_path / "ten_lines.py"
    script.write_text(block)
    run = subprocess.run([sys.executable, "-W", "error::UserWarning", str(script)],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Warning" not in run.stderr
    assert "cv_bits_per_spike" in run.stdout


def test_the_table_says_how_long_each_model_took():
    import time

    data = gf.datasets.head_direction(n_units=3, duration=120.0, seed=4)
    models = {"hd": "spikes ~ cyclic(head_direction, 8)",
              "hd+hist": "spikes ~ cyclic(head_direction, 8) + history(4)"}
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = gf.compare(models, data, bin_size="10ms", epochs="wake", cv=3, smoothing=None)
    wall = time.perf_counter() - started
    seconds = table.attrs["seconds"]
    assert list(seconds.index) == list(models)
    assert (seconds > 0).all() and seconds.sum() <= wall
    # the fits and scores are nearly all of a comparison (binning and designs are the rest)
    assert seconds.sum() >= 0.5 * wall


def test_folds_search_strengths_to_mgcvs_tolerance_and_fits_on_all_rows_tighter(monkeypatch):
    """Only the cross-validation folds' fits (scored, never reported) are fits of a fold
    (REML to mgcv's tolerance, ``engine.fit_design(fold=True)``); each model's fit on all
    rows, whose strengths and edf the table reports, keeps the tighter default."""
    from glmformula.compare import comparison

    calls = []
    original = comparison.engine.fit_design

    def recording(design, options, **kwargs):
        calls.append((kwargs["row_weight"].sum(), kwargs.get("fold", False)))
        return original(design, options, **kwargs)

    monkeypatch.setattr(comparison.engine, "fit_design", recording)
    data = gf.datasets.head_direction(n_units=2, duration=120.0, seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gf.compare({"hd": "spikes ~ cyclic(head_direction, 8)"}, data, bin_size="10ms",
                   epochs="wake", cv=3)
    rows = [n for n, _ in calls]
    assert [fold for _, fold in calls] == [n < max(rows) for n in rows]
    assert sum(fold for _, fold in calls) == 3
