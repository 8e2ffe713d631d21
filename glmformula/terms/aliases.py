"""Short names for a formula's terms: ``"hd"`` for ``cyclic(hd, 12)``, ``"history"`` for
``history(8, log, window=100ms)``. Results (tables, curves), regularizer strengths per term and
plots all resolve names here, so the same alias works everywhere."""

from __future__ import annotations

from ..errors import FormulaError
from .formula import Formula, parse


def resolve_term(formula: Formula, name: str) -> str:
    """Canonical text of the term of ``formula`` given by its text, an equivalent text
    (``"cyclic(hd,12)"``), the name of the one covariate it reads or its function's name.

    Raises
    ------
    FormulaError
        No term, or several, match (the message lists the terms).
    """
    terms = formula.terms
    if name in terms:
        return name
    try:
        canonical = str(parse(f"y ~ {name}").term_objects[0])
        if canonical in terms:
            return canonical
    except (FormulaError, IndexError):
        pass
    matches = [t for t in terms if name in formula.term(t).variables()
               or t.split("(")[0] == name]
    if len(matches) == 1:
        return matches[0]
    raise FormulaError(f"no term {name!r} in the model" + (" (ambiguous)" if matches else ""),
                       hint="terms: " + ", ".join(terms))


__all__ = ["resolve_term"]
