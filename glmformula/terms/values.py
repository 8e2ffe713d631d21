"""Immutable values that give a formula its meaning: factors, terms, durations, unit sets.

A *factor* is one atomic feature: a covariate by name (:class:`Variable`) or a call of a
registered term function with normalised arguments (:class:`FunctionCall`). A *term* is a set
of factors multiplied row-wise (``a:b``); the empty term is the intercept. Every value has a
canonical text, and equal text means equal meaning.
"""

from __future__ import annotations

import decimal
import math

import attrs


def format_number(value: float) -> str:
    """Shortest text that reads back as the same number (``12``, ``0.5``, ``1e-06``)."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def format_angle(value: float) -> str:
    """Write multiples of pi as such (``2pi``), other numbers plainly; both read back exactly."""
    rounded = round(value / math.pi, 9)
    coefficient = format_number(rounded)
    # "2pi" only when it reads back as this very float (the parser computes 2 * math.pi)
    if rounded != 0 and float(coefficient) * math.pi == value and len(coefficient) <= 6:
        # a bare "pi" is a word, and the grammar has no "-word": write -pi as -1pi
        return "pi" if coefficient == "1" else f"{coefficient}pi"
    return format_number(value)


def _decimal_text(value: decimal.Decimal) -> str:
    if value == value.to_integral_value() and abs(value) < 10**15:
        return str(int(value))
    return str(value.normalize()).replace("E", "e")


@attrs.frozen
class Duration:
    """A time span in seconds, written canonically as ``100ms`` or ``1.5s``."""

    seconds: float

    def __str__(self) -> str:
        # shift the shortest decimal of the float, rather than multiplying floats, so that
        # the text reads back as exactly this duration (the parser multiplies decimals too)
        seconds = decimal.Decimal(repr(float(self.seconds)))
        if seconds != 0 and abs(seconds) < 1:
            return f"{_decimal_text(seconds * 1000)}ms"
        return f"{_decimal_text(seconds)}s"


@attrs.frozen
class UnitSet:
    """Which units a coupling term draws from: all of them (``ids=None``) or listed ids."""

    ids: tuple[int, ...] | None = None

    def __str__(self) -> str:
        if self.ids is None:
            return "all"
        return "[" + ", ".join(str(i) for i in self.ids) + "]"


# Factors cache their hash: expanding (a + b + ...)**n hashes each of them millions of times.
@attrs.frozen(cache_hash=True)
class Variable:
    """A covariate named in the formula, used as it is.

    ``unit`` selects one train of a TsGroup of events (``events[3]``, only where a parameter
    reads event trains: ``filter``); None for a covariate or a single train.
    """

    name: str
    unit: int | None = None

    @property
    def function(self) -> None:
        return None

    def __str__(self) -> str:
        return self.name if self.unit is None else f"{self.name}[{self.unit}]"

    def variables(self) -> tuple[str, ...]:
        return (self.name,)


@attrs.frozen(cache_hash=True)
class FunctionCall:
    """A call of a registered term function; ``arguments`` holds every parameter, normalised.

    ``text`` is the canonical text (defaults written out where the function asks for it); it
    is computed by the registry when the call is normalised.
    """

    function: str
    arguments: tuple[tuple[str, object], ...]
    text: str = attrs.field(eq=False)

    def __str__(self) -> str:
        return self.text

    def argument(self, name: str):
        return dict(self.arguments)[name]

    @property
    def kwargs(self) -> dict:
        return dict(self.arguments)

    def variables(self) -> tuple[str, ...]:
        """Names of the covariates this factor reads (nested calls included), in order."""
        found: list[str] = []
        for _, value in self.arguments:
            if isinstance(value, (Variable, FunctionCall)):
                found.extend(v for v in value.variables() if v not in found)
        return tuple(found)


Factor = Variable | FunctionCall


@attrs.frozen(eq=False)
class Term:
    """A set of factors multiplied row-wise; ``a:b`` equals ``b:a``. No factors = intercept."""

    factors: tuple[Factor, ...]
    #: the factors as a set, made once: terms are compared and hashed very often while a
    #: formula is expanded (and a frozenset caches its own hash). Made from ``factors`` unless
    #: given (the term algebra has it already); it must then be ``frozenset(factors)``.
    key: frozenset = attrs.field(kw_only=True, repr=False)

    @key.default
    def _factor_set(self) -> frozenset:
        return frozenset(self.factors)

    @property
    def degree(self) -> int:
        return len(self.factors)

    def __eq__(self, other) -> bool:
        return isinstance(other, Term) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __str__(self) -> str:
        return ":".join(str(f) for f in self.factors) if self.factors else "1"

    def variables(self) -> tuple[str, ...]:
        found: list[str] = []
        for factor in self.factors:
            found.extend(v for v in factor.variables() if v not in found)
        return tuple(found)
