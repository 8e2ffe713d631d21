"""Immutable syntax-tree values produced by the parser.

These describe what was written, with the column where it was written; they carry no meaning
yet. :mod:`glmformula.terms` turns them into terms.
"""

from __future__ import annotations

import attrs

Value = "Number | Quantity | String | Word | IndexedWord | ListValue | TupleValue | Call"


@attrs.frozen
class Number:
    """A plain number (``12``, ``1e-3``), or a multiple of pi (``2pi``) already multiplied out."""

    value: float
    text: str
    column: int = attrs.field(eq=False)

    @property
    def is_integer(self) -> bool:
        return float(self.value).is_integer() and "pi" not in self.text


@attrs.frozen
class Quantity:
    """A duration with a unit glued to it (``100ms``); ``seconds`` is the value in seconds."""

    seconds: float
    text: str
    column: int = attrs.field(eq=False)


@attrs.frozen
class String:
    """A quoted string (quotes removed)."""

    value: str
    column: int = attrs.field(eq=False)


@attrs.frozen
class Word:
    """A bare word: a covariate name, or an option such as ``log``, ``linear`` or ``all``."""

    name: str
    column: int = attrs.field(eq=False)


@attrs.frozen
class IndexedWord:
    """A name with one unit id in brackets (``events[3]``): one spike or event train of a
    TsGroup."""

    name: str
    unit: int
    column: int = attrs.field(eq=False)


@attrs.frozen
class ListValue:
    """``[a, b, c]``."""

    items: tuple
    column: int = attrs.field(eq=False)


@attrs.frozen
class TupleValue:
    """``(a, b)``."""

    items: tuple
    column: int = attrs.field(eq=False)


@attrs.frozen
class Keyword:
    """``name=value`` inside a call."""

    name: str
    value: object
    column: int = attrs.field(eq=False)


@attrs.frozen
class Call:
    """``name(arg, ..., key=value)``: a term-function call."""

    function: str
    args: tuple
    keywords: tuple[Keyword, ...]
    column: int = attrs.field(eq=False)


@attrs.frozen
class BinaryOp:
    """A Wilkinson operator applied to two sub-expressions: ``+ - * / : **``."""

    op: str
    left: object
    right: object
    column: int = attrs.field(eq=False)


@attrs.frozen
class Negate:
    """A leading ``-`` (``~ -1 + x``)."""

    operand: object
    column: int = attrs.field(eq=False)


@attrs.frozen
class Response:
    """The left-hand side: a name and an optional unit selection (``spikes[[0, 4]]``)."""

    name: str
    units: tuple[int, ...] | None
    column: int = attrs.field(eq=False)


@attrs.frozen
class FormulaSyntax:
    """A whole parsed formula: optional response and the right-hand side expression."""

    response: Response | None
    rhs: object
    text: str
