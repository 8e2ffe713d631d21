"""Every ```python block in docs/*.md and README.md runs, so the documentation cannot rot.

Blocks of one page run in order in one namespace (later blocks use earlier names). The working
directory is a temporary folder, so pages may write files.

Quoted output is checked too. A ```` ```text title="output" ```` block right after a python
block is what that block prints: the test compares it with the block's standard output, line by
line (trailing spaces ignored), where ``...`` in the quote stands for any text (as doctest's
ELLIPSIS). Quoted command lines (```` ```text title="$ glmformula ..." ````) are checked by
``test_docs_quoted.py``.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
#: Every fenced block: (language, info string after the language, body).
FENCE = re.compile(r"^```(\w*)([^\n]*)\n(.*?)^```", re.S | re.M)
OUTPUT_TITLE = 'title="output"'


def _pages_with_code():
    return [p for p in PAGES if p.exists() and BLOCK.search(p.read_text())]


def fenced_blocks(text: str) -> list[tuple[str, str, str]]:
    """(language, info, body) of every fenced block of a page, in order."""
    return [(lang, info.strip(), body) for lang, info, body in FENCE.findall(text)]


def matches_quote(quoted: str, actual: str) -> bool:
    """Whether ``actual`` reads as ``quoted``: the same lines (trailing spaces and leading and
    trailing blank lines ignored), ``...`` in the quote standing for any text."""
    def norm(text):
        return "\n".join(line.rstrip() for line in text.strip("\n").splitlines()).strip("\n")
    pattern = ".*?".join(re.escape(part) for part in norm(quoted).split("..."))
    return re.fullmatch(pattern, norm(actual), re.S) is not None


def test_matches_quote():
    assert matches_quote("a ...\nb\n", "a xyz  \nb")
    assert matches_quote("x (f: ...)", "x (f: a, b, c)")
    assert not matches_quote("a\nb", "a\nc")
    assert not matches_quote("a", "a\nmore")


@pytest.mark.parametrize("page", _pages_with_code(), ids=lambda p: p.name)
def test_page_code_runs(page, tmp_path, monkeypatch):
    import matplotlib
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "100")  # rich tables print at a known width
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    blocks = fenced_blocks(page.read_text())
    number = 0
    for i, (lang, _, body) in enumerate(blocks):
        if lang != "python":
            continue
        number += 1
        code = compile(body, f"{page.name} block {number}", "exec")
        quoted = blocks[i + 1] if i + 1 < len(blocks) else None
        if quoted is None or quoted[0] != "text" or quoted[1] != OUTPUT_TITLE:
            exec(code, namespace)  # noqa: S102 - running our own documentation is the point
            continue
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            exec(code, namespace)  # noqa: S102
        assert matches_quote(quoted[2], buffer.getvalue()), (
            f"{page.name} block {number}: the quoted output is not what the code prints.\n"
            f"--- quoted\n{quoted[2]}--- printed\n{buffer.getvalue()}")
