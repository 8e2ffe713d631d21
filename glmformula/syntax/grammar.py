"""Locate and compile the lark grammar (``grammar/formula.lark``), once per process."""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

import lark

GRAMMAR_FILE = "formula.lark"


def grammar_text() -> str:
    """The grammar's text: from the installed wheel, or from the source tree's ``grammar/``."""
    packaged = resources.files("glmformula").joinpath("_grammar", GRAMMAR_FILE)
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    source_tree = Path(__file__).resolve().parents[2] / "grammar" / GRAMMAR_FILE
    return source_tree.read_text(encoding="utf-8")


@functools.cache
def formula_parser() -> lark.Lark:
    """The LALR parser (built once; lark's LALR tables are cheap to reuse)."""
    return lark.Lark(grammar_text(), parser="lalr", propagate_positions=True,
                     maybe_placeholders=True)
