"""Bad spec files: wrong keys, wrong types, non-tables, binary files, missing data files, paths
outside the spec's folder, bad simulation options and penalties.

Every one gives a ``gf.SpecError`` naming the file, line and key (all problems at once), never
a Python exception; a fuzz test writes random TOML documents from a menu of right and wrong
keys and values and checks that ``gf.load_spec`` returns a spec or raises ``SpecError``.
"""

from __future__ import annotations

import os
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import glmformula as gf

GOOD = """
[data]
simulate = "linear_maze"
options = { duration = 60.0 }
bin_size = "20ms"
epochs = "run"

[fit]
regularizer = { ridge = 1e-4 }

[models]
null = "spikes ~ 1"
speed = "spikes ~ speed"

[compare]
cv = 3
"""


def _write(folder, text, name="models.toml"):
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def _problems(path) -> str:
    with pytest.raises(gf.SpecError) as info:
        gf.load_spec(path)
    return str(info.value)


def test_unknown_keys_and_sections_get_suggestions(tmp_path):
    text = GOOD.replace("bin_size", "binsize").replace("[compare]", "[compar]")
    message = _problems(_write(tmp_path, text))
    lines = text.splitlines()
    line = lines.index('binsize = "20ms"') + 1
    assert f":{line}: [data] binsize: unknown key" in message
    assert "did you mean 'bin_size'?" in message
    assert "compar: unknown section" in message and "did you mean 'compare'?" in message


@pytest.mark.parametrize("old, new, expected", [
    ("cv = 3", 'cv = "3"', "[compare] cv: must be a whole number"),
    ("cv = 3", "cv = 2.5", "[compare] cv"),
    ("cv = 3", "cv = true", "[compare] cv"),
    ('bin_size = "20ms"', "bin_size = [1, 2]", "[data] bin_size"),
    ('bin_size = "20ms"', 'bin_size = "20 ms"', "[data] bin_size"),
    ('epochs = "run"', "epochs = 3", "[data] epochs"),
    ('speed = "spikes ~ speed"', "speed = 3", "[models] speed: must be a formula string"),
    ('speed = "spikes ~ speed"', 'speed = "spikes ~ sped(x"', "[models] speed"),
    ("regularizer = { ridge = 1e-4 }", "regularizer = 1e-4", "[fit] regularizer"),
    ("regularizer = { ridge = 1e-4 }", 'regularizer = { ridge = "a lot" }', "[fit] regularizer"),
    ("regularizer = { ridge = 1e-4 }", "regularizer = { ridge = inf }", "finite"),
    ("regularizer = { ridge = 1e-4 }", "regularizer = { ridge = nan }", "finite"),
    ("regularizer = { ridge = 1e-4 }", "regularizer = { ridge = -1.0 }", "[fit] regularizer"),
    ("regularizer = { ridge = 1e-4 }", 'regularizer = { elastic_net = 1e-3, l1_ratio = "x" }',
     "l1_ratio"),
    ("regularizer = { ridge = 1e-4 }", "regularizer = { elastic_net = 1e-3, l1_ratio = 2 }",
     "l1_ratio"),
    ("regularizer = { ridge = 1e-4 }", "regularizer = { ridge = 1e-3, l1_ratio = 0.5 }",
     "l1_ratio"),
    ("regularizer = { ridge = 1e-4 }", 'solver = ["newton"]', "[fit] solver"),
    ("regularizer = { ridge = 1e-4 }", "dtype = 64", "[fit] dtype"),
    ('simulate = "linear_maze"', 'simulate = "linear_maz"', "[data] simulate"),
    ('simulate = "linear_maze"', "simulate = 3", "[data] simulate"),
    ("options = { duration = 60.0 }", 'options = { duration = "long" }', "[data] options"),
    ("options = { duration = 60.0 }", "options = { duration = inf }", "[data] options"),
    ("options = { duration = 60.0 }", "options = { seed = 1.5 }", "[data] options"),
    ("options = { duration = 60.0 }", "options = { seed = { a = 1 } }", "[data] options"),
    ("options = { duration = 60.0 }", "options = { durration = 60.0 }", "did you mean"),
    ("options = { duration = 60.0 }", "options = 60", "[data] options"),
])
def test_wrong_types_name_the_key_and_line(tmp_path, old, new, expected):
    assert old in GOOD
    message = _problems(_write(tmp_path, GOOD.replace(old, new)))
    assert expected in message
    assert str(tmp_path / "models.toml") in message


def test_sections_that_are_not_tables(tmp_path):
    text = "fit = 3\ncompare = \"x\"\nmodels = [1]\n" + GOOD.split("[fit]")[0]
    message = _problems(_write(tmp_path, text))
    for section in ("fit", "compare", "models"):
        assert f"{section}: must be a table" in message
    assert "3 problems" in message


def test_a_binary_file_is_not_a_spec(tmp_path):
    path = tmp_path / "models.toml"
    path.write_bytes(b"\xff\xfe\x00\x01 not text")
    assert "not a text file" in _problems(path)


def test_missing_spec_and_missing_data_file(tmp_path):
    assert "not found" in _problems(tmp_path / "nope.toml")
    assert "not found" in _problems(tmp_path)          # a folder is not a spec file
    text = GOOD.replace('simulate = "linear_maze"\noptions = { duration = 60.0 }',
                        'path = "session.nwb"')
    message = _problems(_write(tmp_path, text))
    assert "[data] path: file 'session.nwb' not found" in message


def test_unreadable_data_file_is_a_spec_error(tmp_path):
    (tmp_path / "session.nwb").write_bytes(b"this is not an NWB file")
    text = GOOD.replace('simulate = "linear_maze"\noptions = { duration = 60.0 }',
                        'path = "session.nwb"')
    spec = gf.load_spec(_write(tmp_path, text))
    with pytest.raises(gf.SpecError, match="could not read"):
        spec.load_data()


@pytest.mark.parametrize("target", ["../outside.nwb", "/etc/passwd", "sub/../../outside.nwb",
                                    "link/outside.nwb"])
def test_paths_outside_the_folder_are_refused(tmp_path, target, monkeypatch):
    monkeypatch.delenv("GLMFORMULA_DATA", raising=False)
    folder = tmp_path / "specs"
    folder.mkdir()
    (tmp_path / "outside.nwb").write_bytes(b"x")
    os.symlink(tmp_path, folder / "link")  # a link inside the folder pointing out of it
    text = GOOD.replace('simulate = "linear_maze"\noptions = { duration = 60.0 }',
                        f'path = "{target}"')
    assert "outside the spec file's folder" in _problems(_write(folder, text))


def test_simulation_options_that_fail_at_run_time(tmp_path):
    spec = gf.load_spec(_write(tmp_path, GOOD.replace("duration = 60.0", "duration = -5.0")))
    with pytest.raises(gf.SpecError, match="options"):
        spec.load_data()


# ---- fuzz: random spec documents ----------------------------------------------------------

VALUES = ['"10ms"', '"20 ms"', "0.01", "-1", "0", "3", "2.5", "true", "inf", "nan", '""',
          '"spikes ~ speed"', '"spikes ~ cyclic(hd, 0)"', '"spikes ~ 1"', '"x ~ 1"', "[1, 2]",
          '["a"]', "{ ridge = 1e-3 }", "{ lasso = -1 }", "{ elastic_net = 1, l1_ratio = 3 }",
          "{ ridge = 1, lasso = 1 }", "{}", '{ duration = 30.0 }', '{ seed = "x" }',
          '{ bogus = 1 }', '"linear_maze"', '"head_direction"', '"nope"', '"../x.nwb"',
          '"/etc/passwd"', '"data.npz"', '"auto"', '"newton"', '"float32"', '"run"',
          "1979-05-27", "{ a = { b = 1 } }"]
KEYS = {
    "data": ["path", "simulate", "options", "bin_size", "epochs", "binsize", "extra"],
    "fit": ["regularizer", "solver", "dtype", "ridge"],
    "models": ["null", "hd", "a b", "speed"],
    "compare": ["cv", "per_unit", "folds"],
    "other": ["x"],
}


@st.composite
def spec_documents(draw) -> str:
    lines = []
    if draw(st.booleans()):  # top-level keys, possibly shadowing a section
        lines.append(f"{draw(st.sampled_from(list(KEYS)))} = {draw(st.sampled_from(VALUES))}")
    for section in draw(st.lists(st.sampled_from(list(KEYS)), max_size=5, unique=True)):
        lines.append(f"[{section}]")
        for key in draw(st.lists(st.sampled_from(KEYS[section]), max_size=4, unique=True)):
            key_text = f'"{key}"' if " " in key else key
            lines.append(f"{key_text} = {draw(st.sampled_from(VALUES))}")
    if draw(st.integers(0, 9)) == 0:  # broken TOML
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(
            ["[data", "x = ", "= 3", "[[models]]", 'a = "unterminated'])))
    return "\n".join(lines) + "\n"


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(text=spec_documents())
def test_random_spec_documents_only_raise_spec_errors(tmp_path_factory, text):
    folder = tmp_path_factory.mktemp("spec")
    (folder / "data.npz").write_bytes(b"not really npz")
    path = folder / "models.toml"
    path.write_text(text)
    try:
        spec = gf.load_spec(path)
    except gf.SpecError as err:
        message = str(err)
        assert str(path) in message
        return
    assert spec.models and spec.cv >= 0
