"""State-dependent temporal terms of a fitted model: which terms a state gates, and the filters
in a state.

A term ``history(...):s``, ``coupling(...):s`` or ``filter(x, ...):s`` multiplies the temporal
term's columns row by row with the state ``s`` (one column): an ``IntervalSet`` indicator
(``rest``: 1 inside its intervals, 0 outside) or a scalar covariate (``speed``, in its own
unit). Its weights ``w_s`` are therefore a *change* of filter: with ``coupling(all) +
coupling(all):rest`` the filter of a pair is ``K w`` outside ``rest`` and ``K (w + w_rest)``
inside it; with ``history(8):speed`` the history filter changes by ``K w_speed`` per unit of
speed (``K``: the design's causal kernels, window x k).

``state=`` in :meth:`FitResult.coupling_matrix` and :meth:`FitResult.curve` says in which state
to read the filters:

* ``None``: the ungated term alone, i.e. every state indicator 0 (outside every IntervalSet
  state) and every scalar state at 0;
* ``"rest"`` (the name of an IntervalSet state): inside ``rest``, the ungated term plus the
  ``:rest`` term; a scalar state has no such reading and is refused (give its value);
* ``{"speed": 20.0}`` (state text -> value, several allowed): the ungated term plus each gated
  term times its state's value (``{"rest": 1}`` is ``"rest"``, ``{"rest": 0}`` is ``None``).
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs
import numpy as np

from ..errors import ResultError
from ..graph import nodes
from ..terms.values import FunctionCall, Variable
from .evaluation import contains, term_factor_nodes

#: The temporal term functions a state may gate.
TEMPORAL = ("history", "coupling", "filter")


@attrs.frozen
class GatedTerm:
    """A temporal term gated by a state.

    Attributes
    ----------
    term : str
        The term's canonical text (``"coupling(all, 8, log, window=100ms):rest"``).
    call : FunctionCall
        Its temporal factor (``coupling(all, 8, log, window=100ms)``).
    position : int
        The temporal factor's position among the term's factors.
    state : str
        The text of the other factors, joined by ``:`` (``"rest"``, ``"log(speed)"``).
    interval : bool
        True when the state is one IntervalSet (an indicator, 0 or 1).
    """

    term: str
    call: FunctionCall
    position: int
    state: str
    interval: bool

    @property
    def function(self) -> str:
        return self.call.function


def gated_term(result, term: str) -> GatedTerm | None:
    """The :class:`GatedTerm` of ``term`` (canonical text), or None when it is not a temporal
    term gated by a one-column state."""
    factors = result.formula.term(term).factors
    temporal = [i for i, f in enumerate(factors)
                if isinstance(f, FunctionCall) and f.function in TEMPORAL]
    if len(factors) < 2 or len(temporal) != 1:
        return None
    position = temporal[0]
    others = [f for i, f in enumerate(factors) if i != position]
    ranges = result.covariate_ranges
    for factor in others:
        if isinstance(factor, FunctionCall) and factor.function in TEMPORAL:
            return None
        names = factor.variables()
        if not names or any(n not in ranges or ranges[n].n_columns != 1 for n in names):
            return None
    factor_nodes = term_factor_nodes(result, term)
    if any(_has_columns(n) for i, n in enumerate(factor_nodes) if i != position):
        return None  # a basis: several columns, not a state
    interval = len(others) == 1 and isinstance(others[0], Variable) \
        and ranges[others[0].name].interval
    return GatedTerm(term, factors[position], position, ":".join(str(f) for f in others),
                     bool(interval))


def _has_columns(node) -> bool:
    return contains(node, nodes.Basis) or contains(node, nodes.CausalFilter)


def gated_terms(result, function: str | None = None) -> list[GatedTerm]:
    """Every gated temporal term of the model (of ``function`` only, if given)."""
    found = [gated_term(result, t) for t in result.formula.terms]
    return [g for g in found if g is not None and function in (None, g.function)]


def filter_node(result, gated: GatedTerm):
    """The :class:`~glmformula.graph.nodes.CausalFilter` of a gated term's temporal factor."""
    return term_factor_nodes(result, gated.term)[gated.position]


def state_values(state, gated: list[GatedTerm], what: str) -> dict[str, float]:
    """State text -> value from a ``state=`` argument (see the module's docstring).

    Parameters
    ----------
    state : None, str or mapping
    gated : list of GatedTerm
        The gated terms that may be read.
    what : str
        What is read, for the messages (``"coupling"``).

    Raises
    ------
    ResultError
        An unknown state, a scalar state named without a value, or a value that is not a
        finite number.
    """
    if state is None:
        return {}
    known = {g.state: g for g in gated}
    if not known:
        raise ResultError(f"this model's {what} does not depend on a state",
                          hint=f"state= reads models with a gated term such as {what}(...):rest; "
                               "leave it out here")
    listing = ", ".join(repr(s) for s in known)
    if isinstance(state, str):
        if state not in known:
            raise ResultError(f"no {what} term is gated by {state!r}",
                              hint=f"the {what} terms are gated by {listing}")
        if not known[state].interval:
            raise ResultError(
                f"{state!r} is a scalar state: the {what} changes with its value, so a matrix "
                "or filter in that state needs the value",
                hint=f"give it, e.g. state={{{state!r}: 1.0}} (the ungated {what} plus 1.0 "
                     f"times the :{state} part); state=None is the {what} at {state} = 0")
        return {state: 1.0}
    if not isinstance(state, Mapping):
        raise ResultError(f"state must be a state's name or a mapping of states to values, "
                          f"got {type(state).__name__}",
                          hint=f"e.g. state={next(iter(known))!r} or "
                               f"state={{{next(iter(known))!r}: 1.0}}")
    values = {}
    for name, value in state.items():
        if name not in known:
            raise ResultError(f"no {what} term is gated by {name!r}",
                              hint=f"the {what} terms are gated by {listing}")
        try:
            value = float(value)
        except (TypeError, ValueError):
            value = float("nan")
        if not np.isfinite(value):
            raise ResultError(f"the value of state {name!r} must be a finite number, got "
                              f"{state[name]!r}", hint="e.g. 1.0 (inside an IntervalSet state)")
        values[name] = value
    return values


def describe(values: dict[str, float], gated: list[GatedTerm]) -> str:
    """Every state's reading, for a frame's ``attrs["state"]``: ``"rest"`` (inside),
    ``"outside rest"``, ``"speed = 20"``, joined by ``", "``."""
    parts = []
    for g in {g.state: g for g in gated}.values():
        value = values.get(g.state, 0.0)
        if g.interval and value in (0.0, 1.0):
            parts.append(g.state if value == 1.0 else f"outside {g.state}")
        else:
            parts.append(f"{g.state} = {value:g}")
    return ", ".join(parts)


__all__ = ["GatedTerm", "gated_term", "gated_terms", "filter_node", "state_values",
           "describe", "TEMPORAL"]
