"""Wilkinson term algebra: expand a syntax tree into an ordered set of terms.

Semantics follow patsy/formulaic: ``+`` union, ``-`` removal, ``a:b`` all pairwise products,
``a*b = a + b + a:b``, ``a/b = a + (all of a):b``, ``(a+b)**n`` all products up to order n.
``1`` is the intercept (the empty term), ``0``/``-1`` remove it, with patsy's rules for where
a removal reaches (see :class:`TermSet`). Terms form a set; the result is ordered by degree,
then by first appearance; a term's factors keep the order in which the term was first written.
tests/syntax/test_formulaic_conformance.py compares all this with formulaic and patsy.
"""

from __future__ import annotations

import attrs

from ..errors import FormulaSyntaxError
from ..syntax import ast
from .registry import normalise_call
from .values import Term, Variable

INTERCEPT = Term(())


@attrs.frozen
class TermSet:
    """An ordered set of terms and the intercept state of a sub-expression (patsy's rules).

    ``terms`` may hold the empty term :data:`INTERCEPT` when a ``1`` was written (it also acts
    as the identity in products: ``(a + 1):b`` is ``a:b + b``). ``no_intercept`` records a
    ``0`` or ``- 1``; like patsy's ``intercept_removed`` it travels left to right through
    ``+`` and ``-`` only, and the products ``: * / **`` reset it, so ``(a - 1):b`` keeps the
    intercept while ``(a - 1) + b`` and ``1 + (a + 0)`` follow patsy exactly.
    """

    terms: tuple[Term, ...]
    no_intercept: bool = False


def expand(rhs, formula: str) -> tuple[tuple[Term, ...], bool]:
    """Expand a right-hand side into ``(terms without the intercept, has_intercept)``.

    The intercept is implicit unless removed by ``0``, ``+ 0``, ``- 1`` or ``-1 + ...``.
    """
    result = _Expander(formula).visit(rhs)
    terms = [t for t in result.terms if t != INTERCEPT]
    return _order(terms), not result.no_intercept


def _order(terms: list[Term]) -> tuple[Term, ...]:
    unique = list(dict.fromkeys(terms))
    return tuple(sorted(unique, key=lambda t: t.degree))  # sorted() is stable


class _Expander:
    def __init__(self, formula: str):
        self.formula = formula

    def visit(self, node) -> TermSet:
        if isinstance(node, ast.BinaryOp):
            return getattr(self, _OPS[node.op])(node)
        if isinstance(node, ast.Negate):
            return self.negate(node)
        if isinstance(node, ast.Number):
            return self._constant(node)
        if isinstance(node, ast.Word):
            return TermSet((self._term((Variable(node.name),)),))
        if isinstance(node, ast.Call):
            return TermSet((self._term((normalise_call(node, self.formula),)),))
        raise FormulaSyntaxError(f"{_describe(node)} cannot be a term", formula=self.formula,
                                 column=getattr(node, "column", None),
                                 hint="terms are covariate names or term-function calls")

    def _constant(self, node: ast.Number) -> TermSet:
        if node.is_integer and node.value == 1:
            return TermSet((INTERCEPT,))
        if node.is_integer and node.value == 0:
            return TermSet((), no_intercept=True)
        raise FormulaSyntaxError(
            f"the number {node.text} cannot be a term", formula=self.formula, column=node.column,
            hint="only 1 (intercept) and 0 (no intercept) may stand alone; numbers belong "
                 "inside calls, e.g. rcos(x, 5)")

    @staticmethod
    def _term(factors) -> Term:
        # factors keep the order in which the term was written (``b:a`` stays ``b:a``; a set
        # keeps the first spelling it meets). Sorting them by where each factor first appears
        # in the whole formula would not survive a round trip: in "x:y + y" the canonical
        # text "y + x:y" meets y first.
        return Term(tuple(dict.fromkeys(factors)))

    def _product(self, left: TermSet, right: TermSet) -> TermSet:
        # products reset the intercept state (patsy): "(a - 1):b" still has an intercept
        terms = [self._term(a.factors + b.factors) for a in left.terms for b in right.terms]
        return TermSet(tuple(dict.fromkeys(terms)))

    def add(self, node) -> TermSet:
        left = self.visit(node.left)
        if _is_literal(node.right, 0):  # "+ 0" removes the intercept, even an explicit "1"
            return TermSet(tuple(t for t in left.terms if t != INTERCEPT), no_intercept=True)
        right = self.visit(node.right)
        terms = _union(left.terms, right.terms)
        if INTERCEPT in right.terms:  # "+ 1" restores it
            return TermSet(terms)
        # otherwise the left side decides: "1 + (a + 0)" keeps the intercept, as in patsy
        return TermSet(terms, left.no_intercept)

    def subtract(self, node) -> TermSet:
        left = self.visit(node.left)
        if _is_literal(node.right, 0):  # "- 0" puts the intercept back, as in patsy
            return TermSet(_union(left.terms, (INTERCEPT,)))
        right = self.visit(node.right)
        removed = set(right.terms)
        terms = tuple(t for t in left.terms if t not in removed)
        return TermSet(terms, INTERCEPT in removed or left.no_intercept)

    def negate(self, node) -> TermSet:
        if _is_literal(node.operand, 0):
            return TermSet((INTERCEPT,))
        if _is_literal(node.operand, 1):
            return TermSet((), no_intercept=True)
        # patsy refuses this too; formulaic silently reads "-a" as nothing at all
        raise FormulaSyntaxError(
            "a leading '-' can only remove the intercept ('- 1') or restore it ('- 0')",
            formula=self.formula, column=node.column,
            hint="to leave a term out, subtract it after the others, e.g. 'a*b - a:b'")

    def interact(self, node) -> TermSet:
        return self._product(self.visit(node.left), self.visit(node.right))

    def cross(self, node) -> TermSet:
        left, right = self.visit(node.left), self.visit(node.right)
        product = self._product(left, right)
        return TermSet(_union(left.terms, right.terms, product.terms))

    def nest(self, node) -> TermSet:
        left, right = self.visit(node.left), self.visit(node.right)
        all_left = [f for t in left.terms for f in t.factors]
        merged = TermSet((self._term(tuple(all_left)),))
        product = self._product(merged, right)
        return TermSet(_union(left.terms, product.terms))

    def power(self, node) -> TermSet:
        base = self.visit(node.left)
        result = base
        for _ in range(int(node.right.value) - 1):
            result = TermSet(_union(result.terms, self._product(result, base).terms))
        return TermSet(result.terms)


def _union(*term_lists) -> tuple[Term, ...]:
    return tuple(dict.fromkeys(t for terms in term_lists for t in terms))


def _is_literal(node, value: int) -> bool:
    """Whether ``node`` is the bare number ``value`` (``0`` or ``1``; parentheses vanish)."""
    return isinstance(node, ast.Number) and node.is_integer and node.value == value


_OPS = {"+": "add", "-": "subtract", ":": "interact", "*": "cross", "/": "nest",
        "**": "power"}


def _describe(node) -> str:
    return {ast.Quantity: "a duration", ast.String: "a string", ast.ListValue: "a list",
            ast.TupleValue: "a tuple"}.get(type(node), type(node).__name__)
