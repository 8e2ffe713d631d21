"""Messages a scientist can trust on first read (issue 18).

Each test pins one way a mistake used to surface late, or under the wrong name: more filters
than a window can resolve (refused at design time, not seen as rank-deficiency warnings at fit
time), a bin size without a unit, misspelt names answered with names of the wrong kind, data
that are not a mapping of pynapple objects, and a spec file whose names do not match its data
(all problems at once, with file, line and key).
"""

from __future__ import annotations

import warnings

import numpy as np
import pynapple as nap
import pytest

import glmformula as gf
from glmformula.bases.raised_cosine import filters_are_distinct, most_distinct_filters
from glmformula.cli import main

T_END = 20.0


def recording(seed: int = 0) -> dict:
    """Three units over 20 s, a speed at 100 Hz, two IntervalSets."""
    rng = np.random.default_rng(seed)
    support = nap.IntervalSet(0.0, T_END)
    spikes = nap.TsGroup({u: nap.Ts(np.sort(rng.uniform(0, T_END, 200))) for u in range(3)},
                         time_support=support)
    t = np.arange(0.0, T_END, 0.01)
    speed = nap.Tsd(t=t, d=rng.normal(0.0, 1.0, len(t)), time_support=support)
    return {"spikes": spikes, "speed": speed, "wake": nap.IntervalSet(0.0, 10.0),
            "sleep": nap.IntervalSet(10.0, T_END)}


# ---- 1. more filters than the window resolves ------------------------------------------------

@pytest.mark.parametrize("term, suggestion, longer", [
    ("history(8, log, window=100ms)", "history(3, log, window=100ms)",
     "history(8, log, window=225ms)"),
    ("filter(speed, 8, window=100ms, log=True)", "filter(speed, 3, window=100ms, log=True)",
     "filter(speed, 8, window=225ms, log=True)"),
    ("coupling(all, 8, log, window=100ms)", "coupling(all, 3, log, window=100ms)",
     "coupling(all, 8, log, window=225ms)"),
    ("history(6, linear, window=100ms)", "history(4, linear, window=100ms)",
     "history(6, linear, window=150ms)"),
])
def test_too_many_filters_for_the_window_are_refused_at_design_time(term, suggestion, longer):
    formula = f"spikes ~ {term}"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # refused before any fit could warn
        with pytest.raises(gf.TermArgumentError) as info:
            gf.design_matrix(formula, recording(), bin_size="25ms")
    err = info.value
    assert "spans 4 bins" in err.what and "25 ms bins" in err.what
    assert err.formula == formula and err.column == formula.index(term) + 1
    assert suggestion in err.hint and longer in err.hint
    assert "bins of at most" in err.hint


def test_too_many_filters_are_refused_by_fit_and_compare_too():
    data = recording()
    with pytest.raises(gf.TermArgumentError, match="can resolve at most 3 log-spaced"):
        gf.fit("spikes ~ history(8, log, window=100ms)", data, bin_size="25ms")
    with pytest.raises(gf.TermArgumentError, match="can resolve at most 3 log-spaced"):
        gf.compare({"null": "spikes ~ 1", "hist": "spikes ~ history(8, log, window=100ms)"},
                   data, bin_size="25ms", cv=0)


def test_a_window_of_too_few_bins_for_two_filters_says_so():
    with pytest.raises(gf.TermArgumentError, match="not even 2") as info:
        gf.design_matrix("spikes ~ history(2, log, window=40ms)", recording(), bin_size="20ms")
    assert "history(2, log, window=60ms)" in info.value.hint


def test_the_resolvable_rule_log_needs_k_plus_one_bins_linear_k():
    for window in range(1, 30):
        for k in range(2, 14):
            assert filters_are_distinct(window, k, log=True) == (window >= k + 1), (window, k)
            assert filters_are_distinct(window, k, log=False) == (window >= k), (window, k)
    assert most_distinct_filters(4, 8, log=True) == 3
    assert most_distinct_filters(2, 8, log=True) == 0


def test_the_largest_resolvable_bank_has_full_column_rank():
    X = gf.design_matrix("spikes[0] ~ history(8, log, window=90ms)", recording(),
                         bin_size="10ms")
    assert np.linalg.matrix_rank(X.to_numpy(intercept=False)) == 8


# ---- 2. a bin size without a unit ------------------------------------------------------------

def test_a_bare_bin_size_above_one_second_warns_at_the_callers_line():
    with pytest.warns(gf.BinSizeWarning) as record:
        gf.design_matrix("spikes ~ speed", recording(), bin_size=2)
    warning = next(w for w in record if w.category is gf.BinSizeWarning)
    assert warning.filename == __file__
    message = str(warning.message)
    assert "read as 2 seconds" in message and '"2ms"' in message and "0.002" in message
    assert issubclass(gf.BinSizeWarning, gf.GlmformulaWarning)


@pytest.mark.parametrize("bin_size", ["2s", "10ms", 0.01, 1, 1.0])
def test_bin_sizes_with_a_unit_or_up_to_one_second_do_not_warn(bin_size):
    with warnings.catch_warnings():
        warnings.simplefilter("error", gf.BinSizeWarning)
        gf.design_matrix("spikes ~ speed", recording(), bin_size=bin_size)


def test_a_result_rebinding_its_own_bin_size_does_not_warn():
    data = recording()
    res = gf.fit("spikes[0] ~ 1", data, bin_size="2s")
    with warnings.catch_warnings():
        warnings.simplefilter("error", gf.BinSizeWarning)
        res.predict(data)


def test_a_bare_bin_size_in_a_spec_warns_with_file_and_line(tmp_path):
    path = tmp_path / "models.toml"
    path.write_text('[data]\nsimulate = "head_direction"\nbin_size = 10\n\n'
                    '[models]\nnull = "spikes ~ 1"\n')
    with pytest.warns(gf.BinSizeWarning) as record:
        gf.load_spec(path)
    warning = next(w for w in record if w.category is gf.BinSizeWarning)
    assert f"{path}:3: [data] bin_size" in str(warning.message)
    assert '"10ms"' in str(warning.message)
    assert warning.filename == __file__


# ---- 3. misspelt names are answered with names of their own kind -----------------------------

def test_a_misspelt_epoch_name_says_epochs_and_suggests_interval_sets():
    with pytest.raises(gf.UnknownNameError) as info:
        gf.design_matrix("spikes ~ speed", recording(), bin_size="10ms", epochs="wak")
    message = str(info.value)
    assert "epochs 'wak'" in message and "covariate" not in message
    assert "did you mean 'wake'?" in message
    assert "IntervalSets in the data: wake, sleep" in message


def test_an_epoch_name_is_not_answered_with_a_covariate():
    with pytest.raises(gf.UnknownNameError) as info:
        gf.design_matrix("spikes ~ speed", recording(), bin_size="10ms", epochs="speedd")
    assert "did you mean 'speed'" not in str(info.value)


def test_an_epoch_name_of_a_covariate_lists_the_interval_sets():
    with pytest.raises(gf.DataError, match="not an IntervalSet") as info:
        gf.design_matrix("spikes ~ speed", recording(), bin_size="10ms", epochs="speed")
    assert "wake, sleep" in info.value.hint


def test_a_misspelt_covariate_is_not_answered_with_the_response():
    with pytest.raises(gf.UnknownNameError) as info:
        gf.design_matrix("spikes ~ spikess", recording(), bin_size="10ms")
    message = str(info.value)
    assert "no covariate called 'spikess'" in message
    assert "did you mean 'spikes'" not in message
    assert "covariates in the data: speed, wake, sleep" in message


def test_a_covariate_is_answered_with_an_interval_set_only_when_it_is_very_close():
    data = recording()
    del data["speed"]
    with pytest.raises(gf.UnknownNameError) as info:
        gf.design_matrix("spikes ~ speed", data, bin_size="10ms")
    assert "did you mean" not in str(info.value)      # not the IntervalSet 'sleep'
    with pytest.raises(gf.UnknownNameError, match="did you mean 'sleep'?"):
        gf.design_matrix("spikes ~ slep", data, bin_size="10ms")


def test_a_misspelt_response_suggests_spike_trains_only():
    data = recording()
    data["speeds_smooth"] = data["speed"]
    with pytest.raises(gf.UnknownNameError) as info:
        gf.design_matrix("speeds ~ 1", data, bin_size="10ms")
    message = str(info.value)
    assert "no response called 'speeds'" in message
    assert "did you mean 'spikes'?" in message
    assert "spike trains in the data: spikes" in message


# ---- 4. data that are not a mapping of pynapple objects --------------------------------------

def test_a_bare_tsgroup_as_data_says_to_name_it():
    with pytest.raises(gf.DataError) as info:
        gf.fit("spikes ~ 1", recording()["spikes"], bin_size="10ms")
    err = info.value
    assert "data must map names to pynapple objects" in err.what and "TsGroup" in err.what
    assert '{"spikes": your_tsgroup' in err.hint
    assert "names in the data: 0, 1, 2" not in str(err)


def test_numpy_covariates_say_how_to_wrap_them():
    data = recording()
    data["speed"] = data["speed"].values
    with pytest.raises(gf.DataError) as info:
        gf.design_matrix("spikes ~ speed", data, bin_size="10ms")
    assert "'speed' is a numpy array" in info.value.what
    assert "nap.Tsd(t=" in info.value.hint
    assert "no epochs" not in str(info.value)


def test_all_numpy_data_say_how_to_wrap_the_spike_trains():
    data = {"spikes": [np.sort(np.random.default_rng(0).uniform(0, 10, 50))],
            "speed": np.arange(100.0)}
    with pytest.raises(gf.DataError) as info:
        gf.design_matrix("spikes ~ speed", data, bin_size="10ms")
    assert "'spikes' is a list, not a pynapple object" in info.value.what
    assert "nap.TsGroup(" in info.value.hint
    assert "no epochs" not in str(info.value)


# ---- 5. a spec whose names do not match its data ---------------------------------------------

SPEC = '''[data]
simulate = "head_direction"
options = { n_units = 2, duration = 30.0 }
bin_size = "10ms"
epochs = "wak"

[models]
null = "spikes ~ 1"
hd = "spikes ~ cyclic(head_drection, 8)"
both = "spikes ~ cyclic(head_direction, 8) + speed"
'''


def _lines(path) -> dict:
    return {line.split(" =")[0]: number
            for number, line in enumerate(path.read_text().splitlines(), start=1)}


def test_a_spec_reports_every_name_missing_from_its_data_with_file_and_line(tmp_path):
    path = tmp_path / "models.toml"
    path.write_text(SPEC)
    lines = _lines(path)
    spec = gf.load_spec(path)
    with pytest.raises(gf.SpecError) as info:
        spec.load_data()
    message = str(info.value)
    assert "3 problems" in message
    assert f"{path}:{lines['epochs']}: [data] epochs: unknown epochs 'wak'" in message
    assert "did you mean 'wake'?" in message
    assert f"{path}:{lines['hd']}: [models] hd: unknown name 'head_drection'" in message
    assert "did you mean 'head_direction'?" in message
    assert f"{path}:{lines['both']}: [models] both: unknown name 'speed'" in message
    assert "did you mean 'sleep'" not in message
    with pytest.raises(gf.SpecError, match="3 problems"):
        gf.run_spec(path)


def test_a_spec_with_a_missing_response_names_its_line(tmp_path):
    path = tmp_path / "models.toml"
    path.write_text(SPEC.replace('epochs = "wak"', 'epochs = "wake"')
                    .replace("spikes ~", "spike ~")
                    .replace("head_drection", "head_direction").replace(" + speed", ""))
    with pytest.raises(gf.SpecError) as info:
        gf.run_spec(path)
    message = str(info.value)
    assert "1 problem in" in message
    assert f"{path}:{_lines(path)['null']}: [models] null: unknown name 'spike'" in message
    assert "did you mean 'spikes'?" in message


def test_check_reports_every_name_at_once(tmp_path, capsys):
    path = tmp_path / "models.toml"
    path.write_text(SPEC)
    assert main(["check", str(path)]) != 0
    err = capsys.readouterr().err
    assert "3 problems" in err and "[data] epochs" in err and "[models] hd" in err \
        and "[models] both" in err
