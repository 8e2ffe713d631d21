"""Every ```python block in docs/*.md and README.md runs, so the documentation cannot rot.

Blocks of one page run in order in one namespace (later blocks use earlier names). The working
directory is a temporary folder, so pages may write files.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _pages_with_code():
    return [p for p in PAGES if p.exists() and BLOCK.search(p.read_text())]


@pytest.mark.parametrize("page", _pages_with_code(), ids=lambda p: p.name)
def test_page_code_runs(page, tmp_path, monkeypatch):
    import matplotlib
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    for number, block in enumerate(BLOCK.findall(page.read_text()), start=1):
        code = compile(block, f"{page.name} block {number}", "exec")
        exec(code, namespace)  # noqa: S102 - running our own documentation is the point
