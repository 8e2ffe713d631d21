"""Which formulas of a set are nested in which (from their term sets)."""

from __future__ import annotations

from ..terms.formula import Formula


def is_nested(small: Formula, large: Formula) -> bool:
    """``small`` is ``large`` with some terms (or the intercept) removed."""
    if small.response != large.response or small.units != large.units:
        return False
    if small.intercept and not large.intercept:
        return False
    smaller = set(small.term_objects) < set(large.term_objects) or (
        set(small.term_objects) == set(large.term_objects) and large.intercept
        and not small.intercept)
    return smaller


def largest_nested(name: str, formulas: dict, n_params: dict) -> str | None:
    """Name of the largest model (most parameters) nested in ``formulas[name]``."""
    candidates = [other for other, f in formulas.items()
                  if other != name and is_nested(f, formulas[name])]
    if not candidates:
        return None
    return max(candidates, key=lambda other: n_params[other])
