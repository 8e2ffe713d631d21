"""Wilkinson term algebra: expand a syntax tree into an ordered set of terms.

Semantics follow patsy/formulaic: ``+`` union, ``-`` removal, ``a:b`` all pairwise products,
``a*b = a + b + a:b``, ``a/b = a + (all of a):b``, ``(a+b)**n`` all products up to order n.
``1`` is the intercept (the empty term), ``0``/``-1`` remove it, with patsy's rules for where
a removal reaches (see :class:`TermSet`). Terms form a set; the result is ordered by degree,
then by first appearance; a term's factors keep the order in which the term was first written.
tests/syntax/test_formulaic_conformance.py compares all this with formulaic and patsy.
"""

from __future__ import annotations

import itertools

import attrs

from ..errors import FormulaSyntaxError
from ..syntax import ast
from ..syntax.limits import MAX_FACTORS, MAX_TERMS, MAX_WORK, thousands
from .registry import normalise_call
from .values import Term, Variable

INTERCEPT = Term(())


@attrs.frozen
class TermSet:
    """An ordered set of terms and the intercept state of a sub-expression (patsy's rules).

    ``terms`` (a dict used as an ordered set) may hold the empty term :data:`INTERCEPT` when a
    ``1`` was written (it also acts as the identity in products: ``(a + 1):b`` is ``a:b + b``).
    ``no_intercept`` records a ``0`` or ``- 1``; like patsy's ``intercept_removed`` it travels
    left to right through ``+`` and ``-`` only, and the products ``: * / **`` reset it, so
    ``(a - 1):b`` keeps the intercept while ``(a - 1) + b`` and ``1 + (a + 0)`` follow patsy
    exactly.

    Each TermSet is used once, by the operator above it, which may change ``terms`` in place:
    that keeps a sum of n terms linear in n, where copying the set at every ``+`` made it
    quadratic.
    """

    terms: dict[Term, None]
    no_intercept: bool = False


def expand(rhs, formula: str) -> tuple[tuple[Term, ...], bool]:
    """Expand a right-hand side into ``(terms without the intercept, has_intercept)``.

    The intercept is implicit unless removed by ``0``, ``+ 0``, ``- 1`` or ``-1 + ...``.

    Raises
    ------
    FormulaSyntaxError
        Also when the expansion would exceed a limit of :mod:`glmformula.syntax.limits`:
        ``MAX_TERMS`` terms, ``MAX_FACTORS`` factors in a term, ``MAX_WORK`` operations.
    """
    result = _Expander(formula).evaluate(rhs)
    terms = [t for t in result.terms if t != INTERCEPT]
    return _order(terms), not result.no_intercept


def _order(terms: list[Term]) -> tuple[Term, ...]:
    unique = list(dict.fromkeys(terms))
    return tuple(sorted(unique, key=lambda t: t.degree))  # sorted() is stable


def _term_set(terms, no_intercept: bool = False) -> TermSet:
    return TermSet(dict.fromkeys(terms), no_intercept)


class _Expander:
    """Expands one formula; counts its operations on terms against :data:`MAX_WORK`."""

    def __init__(self, formula: str):
        self.formula = formula
        self.work = 0

    def evaluate(self, root) -> TermSet:
        """Expand ``root`` bottom-up, with a stack of its own instead of recursion.

        The grammar is left-recursive, so a sum of 3,000 terms is a tree 3,000 levels deep:
        a recursive walk would hit Python's recursion limit.
        """
        pending = [(root, False)]  # (node, whether its operands are already expanded)
        done: list[TermSet] = []  # expanded operands, waiting for their operator
        while pending:
            node, ready = pending.pop()
            operands = _operands(node)
            if ready or not operands:
                values = done[len(done) - len(operands):]
                del done[len(done) - len(operands):]
                done.append(self._checked(self.combine(node, *values), node))
            else:
                pending.append((node, True))
                pending.extend((operand, False) for operand in reversed(operands))
        (result,) = done
        return result

    def combine(self, node, *operands: TermSet) -> TermSet:
        """The TermSet of ``node``, given those of the operands :func:`_operands` named."""
        if isinstance(node, ast.BinaryOp):
            return getattr(self, _OPS[node.op])(node, *operands)
        if isinstance(node, ast.Negate):
            return self.negate(node)
        if isinstance(node, ast.Number):
            return self._constant(node)
        if isinstance(node, ast.Word):
            return _term_set((Term((Variable(node.name),)),))
        if isinstance(node, ast.Call):
            return _term_set((Term((normalise_call(node, self.formula),)),))
        raise FormulaSyntaxError(f"{_describe(node)} cannot be a term", formula=self.formula,
                                 column=getattr(node, "column", None),
                                 hint="terms are covariate names or term-function calls")

    # -- limits ------------------------------------------------------------------------------
    def _checked(self, result: TermSet, node) -> TermSet:
        if len(result.terms) > MAX_TERMS:
            raise self._too_many_terms(node)
        return result

    def _too_many_terms(self, node) -> FormulaSyntaxError:
        return FormulaSyntaxError(
            f"the formula expands to more than {thousands(MAX_TERMS)} terms (the limit)",
            formula=self.formula, column=getattr(node, "column", None), hint=_FEWER_TERMS)

    def _charge(self, operations: int, node) -> None:
        """Count ``operations`` on terms, before doing them; refuse past :data:`MAX_WORK`."""
        self.work += operations
        if self.work > MAX_WORK:
            raise FormulaSyntaxError(
                f"the formula takes more than {thousands(MAX_WORK)} operations on terms to "
                "expand (the limit)", formula=self.formula, column=node.column,
                hint="products of large groups of terms, and long chains of them, are costly: "
                     "write the terms you need, e.g. (a + b + c)**2 or a + b + a:b")

    def _term(self, factors, node) -> Term:
        # factors keep the order in which the term was written (``b:a`` stays ``b:a``; a set
        # keeps the first spelling it meets). Sorting them by where each factor first appears
        # in the whole formula would not survive a round trip: in "x:y + y" the canonical
        # text "y + x:y" meets y first.
        factors = tuple(dict.fromkeys(factors))
        self._check_degree(len(factors), node)
        return Term(factors)

    def _check_degree(self, degree: int, node) -> None:
        if degree > MAX_FACTORS:
            raise FormulaSyntaxError(
                f"a term of the formula multiplies more than {MAX_FACTORS} factors (the limit)",
                formula=self.formula, column=node.column,
                hint="no model can fit an interaction of that many covariates; write the "
                     "interactions you need, e.g. a:b:c")

    # -- operators ---------------------------------------------------------------------------
    def _constant(self, node: ast.Number) -> TermSet:
        if node.is_integer and node.value == 1:
            return _term_set((INTERCEPT,))
        if node.is_integer and node.value == 0:
            return _term_set((), no_intercept=True)
        raise FormulaSyntaxError(
            f"the number {node.text} cannot be a term", formula=self.formula, column=node.column,
            hint="only 1 (intercept) and 0 (no intercept) may stand alone; numbers belong "
                 "inside calls, e.g. rcos(x, 5)")

    def _product(self, left: TermSet, right: TermSet, node) -> TermSet:
        """Every product of a term of ``left`` and one of ``right``, within the limits."""
        # products reset the intercept state (patsy): "(a - 1):b" still has an intercept
        self._charge(len(left.terms) * len(right.terms), node)
        first: dict[frozenset, tuple[Term, Term]] = {}  # product's factor set -> first pair
        for a, b in itertools.product(left.terms, right.terms):
            # the union of two frozensets reuses their elements' hashes: much faster than
            # making a Term of every pair, most of which are made again and again
            first.setdefault(a.key | b.key, (a, b))
            if len(first) > MAX_TERMS:
                raise self._too_many_terms(node)
        self._charge(len(first), node)  # making a term costs more than finding it new
        # each term spelt as its first pair spells it: a's factors, then b's new ones
        return _term_set(self._product_term(a, b, key, node) for key, (a, b) in first.items())

    def _product_term(self, a: Term, b: Term, key: frozenset, node) -> Term:
        """``a:b``, whose factor set ``key`` is known: what :meth:`_term` makes, but faster."""
        self._check_degree(len(key), node)
        factors = a.factors + tuple(f for f in b.factors if f not in a.key)
        return Term(factors, key=key)

    def _union(self, node, *term_sets: TermSet) -> TermSet:
        """A new TermSet of the terms of ``term_sets``, in order (the intercept state reset)."""
        self._charge(sum(len(s.terms) for s in term_sets), node)
        return _term_set(t for s in term_sets for t in s.terms)

    def add(self, node, left: TermSet, right: TermSet | None = None) -> TermSet:
        if right is None:  # "+ 0" removes the intercept, even an explicit "1"
            left.terms.pop(INTERCEPT, None)
            return TermSet(left.terms, no_intercept=True)
        self._charge(len(right.terms), node)
        left.terms.update(right.terms)
        if INTERCEPT in right.terms:  # "+ 1" restores it
            return TermSet(left.terms)
        # otherwise the left side decides: "1 + (a + 0)" keeps the intercept, as in patsy
        return TermSet(left.terms, left.no_intercept)

    def subtract(self, node, left: TermSet, right: TermSet | None = None) -> TermSet:
        if right is None:  # "- 0" puts the intercept back, as in patsy
            left.terms[INTERCEPT] = None  # (where it already is, it stays in its place)
            return TermSet(left.terms)
        self._charge(len(right.terms), node)
        for term in right.terms:
            left.terms.pop(term, None)
        return TermSet(left.terms, INTERCEPT in right.terms or left.no_intercept)

    def negate(self, node) -> TermSet:
        if _is_literal(node.operand, 0):
            return _term_set((INTERCEPT,))
        if _is_literal(node.operand, 1):
            return _term_set((), no_intercept=True)
        # patsy refuses this too; formulaic silently reads "-a" as nothing at all
        raise FormulaSyntaxError(
            "a leading '-' can only remove the intercept ('- 1') or restore it ('- 0')",
            formula=self.formula, column=node.column,
            hint="to leave a term out, subtract it after the others, e.g. 'a*b - a:b'")

    def interact(self, node, left: TermSet, right: TermSet) -> TermSet:
        return self._product(left, right, node)

    def cross(self, node, left: TermSet, right: TermSet) -> TermSet:
        product = self._product(left, right, node)
        return self._union(node, left, right, product)

    def nest(self, node, left: TermSet, right: TermSet) -> TermSet:
        self._charge(sum(t.degree for t in left.terms), node)
        all_left = [f for t in left.terms for f in t.factors]
        merged = _term_set((self._term(all_left, node),))
        product = self._product(merged, right, node)
        return self._union(node, left, product)

    def power(self, node, base: TermSet) -> TermSet:
        """``(a + b + c)**n``: every product of up to n terms of the base.

        Each round multiplies by the base only the terms the previous round added (products
        of older terms are already in), and the rounds stop once one adds nothing: a power
        above the number of factors means the same as that number, ``(a + b)**5`` is
        ``(a + b)**2`` (as in patsy and formulaic), at no extra cost. The terms and their
        order are those of multiplying the whole result by the base n - 1 times.
        """
        result = dict(base.terms)
        newest = base
        for _ in range(int(node.right.value) - 1):
            product = self._product(newest, base, node)
            self._charge(len(product.terms), node)
            newest = _term_set(t for t in product.terms if t not in result)
            if not newest.terms:
                break
            result.update(newest.terms)
            self._checked(TermSet(result), node)
        return TermSet(result)


def _operands(node) -> tuple:
    """The sub-expressions of ``node`` to expand before it (none for a leaf).

    ``+ 0`` and ``- 0`` are instructions about the intercept rather than terms, and the
    exponent of ``**`` is a number: neither is expanded.
    """
    if not isinstance(node, ast.BinaryOp):
        return ()
    if node.op == "**" or (node.op in "+-" and _is_literal(node.right, 0)):
        return (node.left,)
    return (node.left, node.right)


def _is_literal(node, value: int) -> bool:
    """Whether ``node`` is the bare number ``value`` (``0`` or ``1``; parentheses vanish)."""
    return isinstance(node, ast.Number) and node.is_integer and node.value == value


_FEWER_TERMS = ("(a + b + ...)**n and a*b*c*... form every interaction of their factors "
                "(2**n - 1 terms from n factors); write the interactions you need, e.g. "
                "(a + b + c)**2 or a + b + a:b")

_OPS = {"+": "add", "-": "subtract", ":": "interact", "*": "cross", "/": "nest",
        "**": "power"}


def _describe(node) -> str:
    return {ast.Quantity: "a duration", ast.String: "a string", ast.ListValue: "a list",
            ast.TupleValue: "a tuple"}.get(type(node), type(node).__name__)
