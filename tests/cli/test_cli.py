"""The glmformula command, run for real in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SPEC = """
[data]
simulate = "linear_maze"
options = { duration = 300.0 }
bin_size = "20ms"
epochs = "run"

[models]
null = "spikes ~ 1"
speed = "spikes ~ speed"
both = "spikes ~ onehot(position, 5) + speed"

[compare]
cv = 3
"""


def run(*args, cwd=None):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "glmformula", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=600)


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "models.toml"
    path.write_text(textwrap.dedent(SPEC))
    return path


def test_check_ok(spec):
    done = run("check", str(spec))
    assert done.returncode == 0, done.stderr
    assert "OK (3 models" in done.stdout


def test_compare_writes_csv_and_png(spec, tmp_path):
    out = tmp_path / "results"
    done = run("compare", str(spec), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "speed" in done.stdout
    csv = (out / "comparison.csv").read_text()
    assert csv.startswith("model,n_params")
    assert (out / "comparison.png").stat().st_size > 1000
    assert not list(out.glob("*.partial"))


def test_fit_writes_tables(spec, tmp_path):
    out = tmp_path / "fit"
    done = run("fit", str(spec), "--model", "both", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "onehot(position, 5)" in (out / "coefficients.csv").read_text()


def test_broken_spec_exits_nonzero_with_line_numbers(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text(SPEC.replace('speed = "spikes ~ speed"', 'speed = "spikes ~ sped +"'))
    done = run("check", str(path))
    assert done.returncode == 2
    line = SPEC.splitlines().index('speed = "spikes ~ speed"') + 1
    assert f"broken.toml:{line}: [models] speed" in done.stderr
    assert "Traceback" not in done.stderr


def test_unknown_model_and_missing_file(spec, tmp_path):
    done = run("fit", str(spec), "--model", "nope")
    assert done.returncode == 2 and "no model named 'nope'" in done.stderr
    done = run("compare", str(tmp_path / "missing.toml"))
    assert done.returncode == 2 and "not found" in done.stderr
    assert "Traceback" not in done.stderr


def test_help_has_examples():
    done = run("--help")
    assert done.returncode == 0 and "glmformula demo" in done.stdout
