"""What the docs quote is what the code prints: command lines, defaults and table headers.

Conventions (a ```` ```text ```` block with a title, which renderers show as a caption):

* ```` ```text title="$ glmformula ARGS" ````: the output of that command, run here (stdout and
  stderr, ``COLUMNS=80``) and compared line by line, ``...`` standing for any text;
* ```` ```text title="table: glmformula compare" ````: a comparison table as the command line
  prints it; its header must be the terminal's headers, in order;
* ```` ```text title="table: gf.compare" ````: a printed ``gf.compare`` DataFrame; every column
  it shows must be one ``gf.compare`` returns.

Quoted output of python blocks (``title="output"``) is checked by ``test_docs_examples.py``.
Defaults the prose states (the demo's duration, ``memory_limit``'s share of the memory) are
checked against the code below.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _sibling(name: str):
    """A module of this folder (tests import in importlib mode: no sibling imports)."""
    spec = importlib.util.spec_from_file_location(f"docs_{name}", Path(__file__).with_name(
        f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_examples = _sibling("test_docs_examples")
PAGES, fenced_blocks, matches_quote = (_examples.PAGES, _examples.fenced_blocks,
                                       _examples.matches_quote)
COMMAND = re.compile(r'^title="\$ glmformula(.*)"$')


def _quotes(kind: str):
    """(page, title, body) of every text block whose title starts with ``kind``."""
    found = []
    for page in PAGES:
        if not page.exists():
            continue
        for lang, info, body in fenced_blocks(page.read_text()):
            if lang == "text" and info.startswith(f'title="{kind}'):
                found.append((page, info, body))
    return found


def _run(args: list[str], cwd) -> str:
    env = dict(os.environ, COLUMNS="80", PYTHONWARNINGS="ignore",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-m", "glmformula", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=300)
    return done.stdout + done.stderr


COMMANDS = _quotes("$ glmformula")


def test_the_docs_quote_the_help_and_the_version():
    titles = {info for _, info, _ in COMMANDS}
    assert {'title="$ glmformula --help"', 'title="$ glmformula --version"',
            'title="$ glmformula demo --help"'} <= titles


@pytest.mark.parametrize("page, info, body", COMMANDS,
                         ids=[f"{p.name}:{i[7:-1]}" for p, i, _ in COMMANDS])
def test_quoted_command_output(page, info, body, tmp_path):
    args = shlex.split(COMMAND.match(info).group(1))
    printed = _run(args, tmp_path)
    assert matches_quote(body, printed), (
        f"{page.name}: `glmformula {' '.join(args)}` prints something else.\n"
        f"--- quoted\n{body}--- printed\n{printed}")


def _header_words(body: str, first: str | None = None) -> list[str]:
    """The words of a quoted table's header: from the line starting with ``first`` (default:
    the first line) to the line before its rule (or that one line if it has no rule)."""
    lines = [line for line in body.splitlines() if line.strip()]
    start = 0 if first is None else next(
        i for i, line in enumerate(lines) if line.split()[0] == first)
    rule = next((i for i, line in enumerate(lines)
                 if i > start and set(line.strip()) <= set("─-")), None)
    return " ".join(lines[start:rule] if rule is not None else lines[start:start + 1]).split()


def test_quoted_terminal_tables_have_the_terminal_headers():
    from glmformula import cli
    quotes = _quotes("table: glmformula compare")
    assert quotes, "no quoted comparison table of the command line in the docs"
    for page, _, body in quotes:
        words = _header_words(body, first="model")
        shown = [c for c in cli.COMPARISON_COLUMNS if c != "edf" or "edf" in words]
        expected = " ".join(["model", *(cli.HEADERS[c] for c in shown)]).split()
        assert words == expected, f"{page.name}: quoted headers {words}, the table has {expected}"


@pytest.fixture(scope="module")
def compare_columns():
    import warnings

    import glmformula as gf
    data = gf.datasets.head_direction(n_units=2, duration=60.0, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = gf.compare({"null": "spikes ~ 1", "hd": "spikes ~ cyclic(head_direction, 6)"},
                           data, bin_size="20ms", epochs="wake", cv=2)
    return set(table.columns) | set(table.index.names)


def test_quoted_compare_tables_show_columns_compare_returns(compare_columns):
    quotes = _quotes("table: gf.compare")
    assert quotes, "no quoted gf.compare table in the docs"
    for page, _, body in quotes:
        shown = [w for w in _header_words(body) if "_" in w or w in compare_columns]
        assert shown and set(shown) <= compare_columns, (
            f"{page.name}: quoted columns {sorted(set(shown) - compare_columns)} are not "
            f"columns of gf.compare ({sorted(compare_columns)})")


def test_demo_default_duration_in_the_docs():
    from glmformula import cli
    default = cli._parser().parse_args(["demo"]).duration
    row = next(line for line in (ROOT / "docs" / "cli.md").read_text().splitlines()
               if line.startswith("| `demo` |"))
    assert re.findall(r"default (\d+(?:\.\d+)?) s", row) == [f"{default:g}"], row


def test_memory_limit_share_in_the_docs():
    from glmformula.config import MEMORY_FRACTION
    words = {0.25: "a quarter", 0.5: "half", 1 / 3: "a third"}
    share = words[MEMORY_FRACTION]
    api = " ".join((ROOT / "docs" / "api.md").read_text().split())
    assert f"default {share} of the memory available" in api
    for other in set(words.values()) - {share}:
        assert f"default {other} of the memory available" not in api


def test_images_the_docs_show_are_in_the_repository():
    """A figure the examples write is not kept in the repository: the docs name its file
    instead of embedding a picture that would be missing."""
    missing = []
    for page in PAGES:
        if not page.exists():
            continue
        for target in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", page.read_text()):
            if not re.match(r"https?://", target) and not (page.parent / target).exists():
                missing.append(f"{page.name}: {target}")
    assert not missing, missing
