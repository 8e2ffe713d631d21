"""Model-spec files: validation with file, line and key; running a spec."""

from __future__ import annotations

import textwrap

import pytest

import glmformula as gf

GOOD = """
[data]
simulate = "linear_maze"
options = { duration = 300.0 }
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


def _write(tmp_path, text, name="models.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_good_spec_loads(tmp_path):
    spec = gf.load_spec(_write(tmp_path, GOOD))
    assert set(spec.models) == {"null", "speed"}
    assert spec.models["speed"] == gf.parse("spikes ~ speed")
    assert spec.cv == 3
    assert isinstance(spec.regularizer, gf.Ridge)
    assert "spikes" in spec.load_data()


def test_every_problem_is_reported_with_line_and_key(tmp_path):
    bad = GOOD.replace('bin_size = "20ms"', 'bin_size = "20 parsecs"') \
              .replace('speed = "spikes ~ speed"', 'speed = "spikes ~ cyclc(speed, 3)"') \
              .replace("cv = 3", "cv = 1") + "\n[extra]\nx = 1\n"
    path = _write(tmp_path, bad)
    with pytest.raises(gf.SpecError) as info:
        gf.load_spec(path)
    message = str(info.value)
    lines = bad.splitlines()
    assert "4 problems" in message
    line = lines.index('bin_size = "20 parsecs"') + 1
    assert f"{path}:{line}: [data] bin_size" in message
    assert "[models] speed" in message and "did you mean 'cyclic'" in message
    assert "[compare] cv" in message
    assert "extra: unknown section" in message


def test_paths_outside_the_spec_folder_are_refused(tmp_path):
    (tmp_path / "sub").mkdir()
    spec = GOOD.replace('simulate = "linear_maze"\noptions = { duration = 300.0 }',
                        'path = "../data.nwb"')
    with pytest.raises(gf.SpecError, match="outside the spec file's folder"):
        gf.load_spec(_write(tmp_path / "sub", spec))


def test_missing_file_and_not_toml(tmp_path):
    with pytest.raises(gf.SpecError, match="not found"):
        gf.load_spec(tmp_path / "nope.toml")
    with pytest.raises(gf.SpecError, match="not valid TOML"):
        gf.load_spec(_write(tmp_path, "[data\nx=1"))


def test_run_spec_gives_the_comparison(tmp_path):
    table = gf.run_spec(_write(tmp_path, GOOD))
    assert list(table.index) == ["null", "speed"]
    assert table.loc["speed", "cv_bits_per_spike"] > table.loc["null", "cv_bits_per_spike"]
