"""Every import runs down the pipeline: the import-linter layers contract in pyproject.toml
holds for the package, and an upward import breaks it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(workdir: Path) -> subprocess.CompletedProcess:
    if not LINT.exists():
        pytest.skip("import-linter is not installed (pip install 'glmformula[test]')")
    return subprocess.run([str(LINT), "--config", str(workdir / "pyproject.toml"),
                           "--no-cache"], cwd=workdir, capture_output=True, text=True,
                          env={"PYTHONPATH": str(workdir), "PATH": "/usr/bin:/bin"},
                          timeout=120)


def _copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "glmformula", tmp_path / "glmformula",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_package_keeps_its_layers(tmp_path):
    result = _lint(_copy(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


@pytest.mark.parametrize("module, upward", [
    ("graph/grid.py", "from ..results import fit_result"),       # graph -> results
    ("backend/newton.py", "from ..graph import rows"),           # backend -> its sibling
    ("fitting/groups.py", "from ..compare import comparison"),   # fitting -> compare
])
def test_an_upward_import_breaks_the_contract(tmp_path, module, upward):
    workdir = _copy(tmp_path)
    path = workdir / "glmformula" / module
    path.write_text(path.read_text() + f"\n{upward}  # deliberate, to be caught\n")
    result = _lint(workdir)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout.upper() or "broken" in result.stdout
