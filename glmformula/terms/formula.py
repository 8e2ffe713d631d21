"""The parsed formula: response, terms and intercept, with a canonical text."""

from __future__ import annotations

import functools

import attrs

from ..errors import FormulaError, FormulaSyntaxError
from ..syntax.limits import MAX_LENGTH
from ..syntax.parser import parse_syntax
from . import registry
from .algebra import expand
from .values import FunctionCall, Term, Variable


@attrs.frozen(eq=False)
class Formula:
    """A parsed formula (an immutable value).

    Attributes
    ----------
    response : str or None
        Name of the response (the spike trains), or None for a right-hand side alone.
    units : tuple of int or None
        Unit ids selected by ``spikes[...]``; None means every unit.
    term_objects : tuple of Term
        The terms, ordered by degree then first appearance (intercept excluded).
    intercept : bool
        Whether the model has an intercept.

    Two formulas are equal when they have the same response, unit selection, intercept and
    set of terms. ``str(f)`` is the canonical text and ``parse(str(f)) == f``.
    """

    response: str | None
    units: tuple[int, ...] | None
    term_objects: tuple[Term, ...]
    intercept: bool

    @property
    def terms(self) -> tuple[str, ...]:
        """Canonical text of each term, interactions joined by ``:``."""
        return tuple(str(t) for t in self.term_objects)

    @property
    def rhs(self) -> str:
        if not self.intercept:
            return " + ".join(["0", *self.terms])
        return " + ".join(self.terms) if self.terms else "1"

    @property
    def response_text(self) -> str | None:
        if self.response is None:
            return None
        if self.units is None:
            return self.response
        if len(self.units) == 1:
            return f"{self.response}[{self.units[0]}]"
        return f"{self.response}[[{', '.join(str(u) for u in self.units)}]]"

    def __str__(self) -> str:
        lhs = self.response_text
        return f"{lhs} ~ {self.rhs}" if lhs else f"~ {self.rhs}"

    def __repr__(self) -> str:
        return f"Formula({str(self)!r})"

    def _key(self):
        return (self.response, self.units, self.intercept, frozenset(self.term_objects))

    def __eq__(self, other) -> bool:
        return isinstance(other, Formula) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def variables(self) -> tuple[str, ...]:
        """Names of the covariates the formula reads (not the response), in order."""
        found: list[str] = []
        for term in self.term_objects:
            found.extend(v for v in term.variables() if v not in found)
        return tuple(found)

    def calls(self, function: str) -> tuple[FunctionCall, ...]:
        """Every factor that calls ``function`` (top level of the terms)."""
        return tuple(f for t in self.term_objects for f in t.factors
                     if isinstance(f, FunctionCall) and f.function == function)

    def term(self, text: str) -> Term:
        """The term with this canonical text (FormulaError listing the terms otherwise)."""
        for term in self.term_objects:
            if str(term) == text:
                return term
        raise FormulaError(f"the formula has no term {text!r}",
                           hint="its terms are: " + ", ".join(self.terms))

    def with_terms(self, terms, intercept: bool | None = None) -> "Formula":
        """A formula with the same response and the given terms (order normalised)."""
        ordered = tuple(sorted(dict.fromkeys(terms), key=lambda t: t.degree))
        return Formula(self.response, self.units, ordered,
                       self.intercept if intercept is None else intercept)


def parse(text: "str | Formula", *, require_response: bool = True) -> Formula:
    """Parse formula text into a :class:`Formula`.

    Parameters
    ----------
    text : str or Formula
        e.g. ``"spikes ~ cyclic(hd, 12) + history(8, log, window=100ms)"``. A Formula is
        returned unchanged.
    require_response : bool
        If False, ``~ x + y`` and ``x + y`` are accepted (for :func:`design_matrix`).

    Raises
    ------
    FormulaError
        A subclass naming what is wrong, where (caret) and how to fix it.
    """
    if isinstance(text, Formula):
        if require_response and text.response is None:
            raise _missing_response(str(text))
        return text
    if not isinstance(text, str):  # before the cache: a list is not even hashable
        parse_syntax(text)  # raises FormulaSyntaxError("a formula must be a string, ...")
    try:
        return _parse_cached(text, require_response, registry.generation())
    except _TooLargeToKeep as large:
        return large.formula
    except RecursionError:
        # the limits of glmformula.syntax.limits keep every walk over a formula far from
        # Python's recursion limit (nested calls are the only recursive one), unless the
        # caller is itself that deep in its stack: still a FormulaError, never a crash
        raise FormulaSyntaxError(
            "the formula is nested too deeply for the Python stack that is left",
            formula=text if len(text) <= MAX_LENGTH else None,
            hint="nest fewer calls and parentheses, or parse from less deeply nested code"
        ) from None


#: Formulas kept in the parse cache are at most this large, so that a stream of distinct,
#: large formulas (up to 10,000 terms each) cannot fill memory through the cache.
_KEEP_TERMS = 256
_KEEP_LENGTH = 4_000


class _TooLargeToKeep(Exception):
    """A parsed formula too large to cache, carried out of :func:`_parse_cached`.

    ``lru_cache`` keeps return values, never exceptions.
    """

    def __init__(self, formula: "Formula"):
        super().__init__()
        self.formula = formula


@functools.lru_cache(maxsize=4096)
def _parse_cached(text: str, require_response: bool, generation: int = 0) -> Formula:
    # ``generation`` is only part of the cache key: a term function registered, replaced or
    # removed since must not be answered from the cache
    formula = _parse_text(text, require_response)
    if len(formula.term_objects) > _KEEP_TERMS or len(text) > _KEEP_LENGTH:
        raise _TooLargeToKeep(formula)
    return formula


def _parse_text(text: str, require_response: bool) -> Formula:
    syntax = parse_syntax(text)
    if syntax.response is None and require_response:
        raise _missing_response(syntax.text)
    terms, intercept = expand(syntax.rhs, syntax.text)
    terms = _resolve_inherited(terms)
    _check_duplicate_roles(terms, syntax.text)
    response = syntax.response
    return Formula(response.name if response else None,
                   response.units if response else None, terms, intercept)


def _missing_response(text: str) -> FormulaSyntaxError:
    return FormulaSyntaxError(
        "the formula has no response (the part left of '~')", formula=text, column=1,
        hint="write the spike trains' name first, e.g. \"spikes ~ " +
             text.lstrip("~ ").strip() + "\"")


def _resolve_inherited(terms: tuple[Term, ...]) -> tuple[Term, ...]:
    """Fill parameters declared ``inherit_from`` (coupling takes history's filters)."""
    calls = {f.function: f for t in terms for f in t.factors if isinstance(f, FunctionCall)}

    def resolve(factor):
        if not isinstance(factor, FunctionCall):
            return factor
        function = registry.lookup(factor.function)
        changes = {}
        for param in function.params:
            if param.inherit_from and factor.argument(param.name) is None:
                source = calls.get(param.inherit_from)
                inherited = source.argument(param.name) if source is not None else None
                changes[param.name] = inherited if inherited is not None else param.fallback
        return registry.with_arguments(factor, **changes) if changes else factor

    # two calls may become one once resolved (coupling(all) and coupling(all, 8) with no
    # history): merge them within a term and across terms, and re-sort by the new degree
    resolved = [Term(tuple(dict.fromkeys(resolve(f) for f in t.factors))) for t in terms]
    return tuple(sorted(dict.fromkeys(resolved), key=lambda t: t.degree))


def _check_duplicate_roles(terms: tuple[Term, ...], text: str) -> None:
    histories = [f for t in terms for f in t.factors
                 if isinstance(f, FunctionCall) and f.function == "history"]
    if len(set(histories)) > 1:
        raise FormulaSyntaxError(
            "the formula has more than one history() term", formula=text,
            hint="use one history term per model (its filters also set coupling's defaults)")


__all__ = ["Formula", "parse", "Variable"]
