"""Kinds of term-function parameters: each checks one syntax value and normalises it.

A kind is a small value with ``convert(node, where) -> normalised value`` (raising
:class:`TermArgumentError` with a fix) and ``format(value) -> canonical text``.
"""

from __future__ import annotations

import math

import attrs

from ..errors import TermArgumentError
from ..syntax import ast
from ..syntax.limits import MAX_COUNT, shorten, thousands
from .values import Duration, FunctionCall, UnitSet, Variable, format_angle, format_number


@attrs.frozen
class Where:
    """Where a value was written: for error messages."""

    formula: str
    function: str
    param: str
    example: str

    def error(self, what: str, column: int, hint: str | None = None) -> TermArgumentError:
        return TermArgumentError(
            f"{self.function}(): {what}", formula=self.formula, column=column,
            hint=hint or f"write e.g. {self.example}")


def _column(node) -> int:
    return getattr(node, "column", 1)


@attrs.frozen
class Covariate:
    """A covariate: a name, or a nested call of a covariate-valued function (``log(speed)``).

    ``units=True`` also reads one train of a TsGroup of events, ``events[3]`` (``filter``).
    """

    description: str = "a covariate name"
    units: bool = False

    def convert(self, node, where: Where, normalise_call):
        if isinstance(node, ast.Word):
            return Variable(node.name)
        if isinstance(node, ast.IndexedWord):
            if self.units:
                return Variable(node.name, node.unit)
            raise where.error(
                f"{where.param} is the unit selection {node.name}[{node.unit}]; only filter() "
                "reads one train of a TsGroup of events", _column(node),
                f"write {node.name} for a covariate, or filter({node.name}[{node.unit}], 8, "
                "window=200ms) for an event kernel")
        if isinstance(node, ast.Call):
            return normalise_call(node, nested=True)
        raise where.error(f"{where.param} must be a covariate name, not {_describe(node)}",
                          _column(node))

    def format(self, value) -> str:
        return str(value)


@attrs.frozen
class Count:
    """A whole number from ``minimum`` to ``maximum`` (basis sizes, spline orders, exponents).

    The default maximum is :data:`~glmformula.syntax.limits.MAX_COUNT`.
    """

    minimum: int = 1
    maximum: int = MAX_COUNT
    description: str = "a whole number"

    def convert(self, node, where: Where, normalise_call=None) -> int:
        if not (isinstance(node, ast.Number) and node.is_integer):
            raise where.error(f"{where.param} must be a whole number, not {_describe(node)}",
                              _column(node))
        # compared before int(): int(1e300) has 301 digits
        if node.value > self.maximum:
            raise where.error(f"{where.param} must be at most {thousands(self.maximum)}, got "
                              f"{shorten(node.text)}", _column(node))
        if node.value < self.minimum:
            raise where.error(f"{where.param} must be at least {self.minimum}, got "
                              f"{shorten(format_number(node.value))}", _column(node))
        return int(node.value)

    def format(self, value) -> str:
        return str(value)


@attrs.frozen
class Real:
    """A plain number (``pi`` multiples allowed); ``positive`` rejects zero and negatives."""

    positive: bool = False
    angle: bool = False
    description: str = "a number"

    def convert(self, node, where: Where, normalise_call=None) -> float:
        if isinstance(node, ast.Word) and node.name == "pi":
            node = ast.Number(math.pi, "pi", node.column)
        if not isinstance(node, ast.Number):
            raise where.error(f"{where.param} must be a number, not {_describe(node)}",
                              _column(node))
        if self.positive and node.value <= 0:
            raise where.error(f"{where.param} must be positive, got {node.text}", _column(node))
        return float(node.value)

    def format(self, value) -> str:
        return format_angle(value) if self.angle else format_number(value)


@attrs.frozen
class Time:
    """A duration with a unit (``100ms``); ``positive`` rejects zero and negative spans,
    ``zero`` accepts ``0ms`` where negative ones are allowed (``filter(..., start=0ms)``)."""

    positive: bool = True
    description: str = "a duration with a time unit"
    zero: bool = False

    def convert(self, node, where: Where, normalise_call=None) -> Duration:
        if isinstance(node, ast.Number):
            guess = "" if "pi" in node.text else f"did you mean {node.text}ms or {node.text}s? "
            raise where.error(f"{where.param} needs a time unit, got the plain number "
                              f"{node.text}", _column(node),
                              f"{guess}Glue the unit to the number (us, ms, s, min or h), "
                              f"e.g. {where.example}")
        if not isinstance(node, ast.Quantity):
            raise where.error(f"{where.param} must be a duration such as 100ms, not "
                              f"{_describe(node)}", _column(node))
        if self.positive and node.seconds <= 0:
            raise where.error(f"{where.param} must be a positive duration, got {node.text}",
                              _column(node))
        if not self.positive and node.seconds == 0 and not self.zero:
            raise where.error(f"{where.param} must not be zero", _column(node))
        return Duration(float(node.seconds))

    def format(self, value) -> str:
        return str(value)


@attrs.frozen
class Spacing:
    """Filter spacing: the bare word ``log`` or ``linear`` (``True``/``False`` also read)."""

    description: str = "log or linear"

    def convert(self, node, where: Where, normalise_call=None) -> str:
        if isinstance(node, ast.Word):
            word = node.name.lower()
            if word in ("log", "true"):
                return "log"
            if word in ("linear", "false"):
                return "linear"
        raise where.error(f"{where.param} must be log or linear, not {_describe(node)}",
                          _column(node))

    def format(self, value) -> str:
        return value


@attrs.frozen
class Smooth:
    """A term's smoothness penalty: ``auto`` (strength chosen from the data), ``none`` (no
    penalty) or a fixed strength >= 0 (mean objective, as ``Ridge``)."""

    description: str = "auto, none or a strength >= 0"

    def convert(self, node, where: Where, normalise_call=None):
        if isinstance(node, ast.Word) and node.name.lower() in ("auto", "none"):
            return node.name.lower()
        if isinstance(node, ast.Number):
            if node.value < 0 or not math.isfinite(node.value):
                raise where.error(f"{where.param} must be auto, none or a strength >= 0, got "
                                  f"{node.text}", _column(node),
                                  f"write e.g. {where.function}(..., smooth=1e-3)")
            return float(node.value)
        raise where.error(f"{where.param} must be auto, none or a strength >= 0, not "
                          f"{_describe(node)}", _column(node),
                          f"write e.g. {where.function}(..., smooth=none)")

    def format(self, value) -> str:
        return value if isinstance(value, str) else format_number(value)


@attrs.frozen
class Flag:
    """A yes/no option: ``True``/``False`` (``log``/``linear`` read as True/False for ``log=``)."""

    description: str = "True or False"

    def convert(self, node, where: Where, normalise_call=None) -> bool:
        if isinstance(node, ast.Word):
            word = node.name.lower()
            if word in ("true", "log"):
                return True
            if word in ("false", "linear"):
                return False
        if isinstance(node, ast.Number) and node.value in (0, 1) and node.is_integer:
            return bool(node.value)
        raise where.error(f"{where.param} must be True or False, not {_describe(node)}",
                          _column(node))

    def format(self, value) -> str:
        return "True" if value else "False"


@attrs.frozen
class Interval:
    """A range ``(low, high)`` of the covariate, low < high."""

    description: str = "a range (low, high)"

    def convert(self, node, where: Where, normalise_call=None):
        if not isinstance(node, (ast.TupleValue, ast.ListValue)) or len(node.items) != 2:
            raise where.error(f"{where.param} must be a pair (low, high), not "
                              f"{_describe(node)}", _column(node))
        low, high = (Real().convert(item, where) for item in node.items)
        if not low < high:
            raise where.error(f"{where.param} must have low < high, got "
                              f"({format_number(low)}, {format_number(high)})", _column(node))
        return (low, high)

    def format(self, value) -> str:
        return f"({format_angle(value[0])}, {format_angle(value[1])})"


@attrs.frozen
class Units:
    """Which units to couple from: ``all`` or a list of unit ids ``[3, 5]``."""

    description: str = "all or a list of unit ids"

    def convert(self, node, where: Where, normalise_call=None) -> UnitSet:
        if isinstance(node, ast.Word) and node.name == "all":
            return UnitSet(None)
        if isinstance(node, ast.Number) and node.is_integer:
            return UnitSet((int(node.value),))
        if isinstance(node, ast.ListValue):
            if not node.items:
                raise where.error(f"{where.param}: the list of unit ids is empty",
                                  _column(node), "write e.g. coupling([3, 5]) or coupling(all)")
            for item in node.items:
                if not (isinstance(item, ast.Number) and item.is_integer):
                    raise where.error(f"{where.param}: unit ids are whole numbers, not "
                                      f"{_describe(item)}", _column(item),
                                      "write e.g. coupling([3, 5]) or coupling(all)")
            return UnitSet(tuple(sorted({int(i.value) for i in node.items})))
        raise where.error(f"{where.param} must be all or a list of unit ids, not "
                          f"{_describe(node)}", _column(node))

    def format(self, value) -> str:
        return str(value)


def _describe(node) -> str:
    if isinstance(node, ast.Word):
        return f"the word {node.name!r}"
    if isinstance(node, ast.IndexedWord):
        return f"the unit selection {node.name}[{node.unit}]"
    if isinstance(node, ast.Number):
        return f"the number {node.text}"
    if isinstance(node, ast.Quantity):
        return f"the duration {node.text}"
    if isinstance(node, ast.String):
        return f"the string {node.value!r}"
    if isinstance(node, ast.Call):
        return f"a call of {node.function}()"
    if isinstance(node, ast.ListValue):
        return "a list"
    if isinstance(node, ast.TupleValue):
        return "a tuple"
    return type(node).__name__


__all__ = ["Covariate", "Count", "Real", "Time", "Spacing", "Flag", "Interval", "Units",
           "Where", "FunctionCall"]
