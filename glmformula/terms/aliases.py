"""Short names for a formula's terms: ``"hd"`` for ``cyclic(hd, 12)``, ``"history"`` for
``history(8, log, window=100ms)``. Results (tables, curves), regularizer strengths per term and
plots all resolve names here, so the same alias works everywhere."""

from __future__ import annotations

from ..errors import FormulaError
from .formula import Formula, parse
from .values import Variable


def resolve_term(formula: Formula, name: str) -> str:
    """Canonical text of the term of ``formula`` given by its text, an equivalent text
    (``"cyclic(hd,12)"``), the name of the one covariate it reads (or event train it reads,
    ``"events[3]"``) or its function's name
    (the main effect where an interaction shares it), or, for an interaction, the names of its
    factors joined by ``:`` (``"coupling:rest"`` for ``coupling(all, 8, ...):rest``).

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
    if ":" in name:
        return _resolve_interaction(formula, name)
    matches = [t for t in terms if name in _reads(formula.term(t))
               or t.split("(")[0] == name]
    if len(matches) > 1:
        # "coupling" in coupling(all) + coupling(all):rest is the main effect, not its
        # interaction with a state (which is named by its text, or by "rest")
        main = [t for t in matches if formula.term(t).degree == 1]
        matches = main if len(main) == 1 else matches
    if len(matches) == 1:
        return matches[0]
    raise FormulaError(f"no term {name!r} in the model" + (" (ambiguous)" if matches else ""),
                       hint="terms: " + ", ".join(terms))


def _reads(term) -> set[str]:
    """What a term reads, by name: its covariates, and event trains written with a unit."""
    found = set(term.variables())
    for factor in term.factors:
        found.update(str(value) for _, value in getattr(factor, "arguments", ())
                     if isinstance(value, Variable) and value.unit is not None)
    return found


def _resolve_interaction(formula: Formula, name: str) -> str:
    """``"coupling:rest"``: the one interaction whose factors are named, each by its text, its
    function's name or a covariate it reads, in any order."""
    parts = [part.strip() for part in name.split(":")]

    def names(factor) -> set:
        return {str(factor), getattr(factor, "function", None), *factor.variables()}

    matches = [t for t in formula.terms
               if len(factors := formula.term(t).factors) == len(parts)
               and all(any(part in names(f) for f in factors) for part in parts)]
    if len(matches) == 1:
        return matches[0]
    raise FormulaError(f"no term {name!r} in the model" + (" (ambiguous)" if matches else ""),
                       hint="terms: " + ", ".join(formula.terms))


__all__ = ["resolve_term"]
