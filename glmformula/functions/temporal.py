"""Causal temporal terms: lag, filter, history, coupling.

They read the past: ``lag`` shifts a covariate, ``filter`` convolves a covariate with k
raised-cosine filters, ``history`` filters the response unit's own spike counts and
``coupling`` the other units'. Bin t sees bins t-1 ... t-window only, never across an epoch
border; rows whose window would start before their epoch are dropped.
"""

from __future__ import annotations

from ..errors import TermArgumentError
from ..graph import nodes
from ..terms import params as kinds
from ..terms.registry import Param, TermFunction, lookup, register
from ..terms.values import Duration, UnitSet

DEFAULT_FILTERS = 8
DEFAULT_WINDOW = Duration(0.1)
DEFAULT_SPACING = "log"

def _build_lag(call, compiler):
    bins = compiler.bins(call.argument("dt"), call, allow_negative=True)
    return nodes.Lag(compiler.node(call.argument("x")), bins)


def _check_filters(call, compiler) -> None:
    """Raised-cosine filters are spaced by their peaks: one filter alone is not defined."""
    if call.argument("k") < 2:
        raise TermArgumentError(
            f"{call.function}(): k={call.argument('k')} filter is too few; raised-cosine "
            "filters need k >= 2", formula=str(compiler.formula),
            hint=f"write e.g. {lookup(call.function).example}")


def _build_filter(call, compiler):
    _check_filters(call, compiler)
    window = compiler.bins(call.argument("window"), call)
    return nodes.CausalFilter(compiler.node(call.argument("x")), call.argument("k"), window,
                              call.argument("log"))


def _build_spike_filters(call, compiler):
    """Filtered spike counts of every unit the term may read (one bank shared by all units)."""
    _check_filters(call, compiler)
    window = compiler.bins(call.argument("window"), call)
    counts = nodes.SpikeCounts(compiler.response, compiler.bank_units)
    return nodes.CausalFilter(counts, call.argument("k"), window,
                              call.argument("spacing") == "log")


register(TermFunction(
    name="lag", role="transform", example="lag(speed, 50ms)", build=_build_lag,
    summary="the covariate shifted by dt (dt > 0: its past value)",
    params=(Param("x", kinds.Covariate()), Param("dt", kinds.Time(positive=False)))))

register(TermFunction(
    name="filter", role="temporal", example="filter(current, 8, window=200ms)",
    build=_build_filter,
    summary="the covariate convolved causally with k raised-cosine filters over window",
    params=(Param("x", kinds.Covariate()),
            Param("k", kinds.Count(minimum=1), DEFAULT_FILTERS, always_shown=True),
            Param("window", kinds.Time(), DEFAULT_WINDOW, keyword=True, always_shown=True),
            Param("log", kinds.Flag(), True, keyword=True, always_shown=True))))

register(TermFunction(
    name="history", role="spikes", example="history(8, log, window=100ms)",
    build=_build_spike_filters,
    summary="the response unit's own past spike counts through k causal filters",
    params=(Param("k", kinds.Count(minimum=1), DEFAULT_FILTERS, always_shown=True),
            Param("spacing", kinds.Spacing(), DEFAULT_SPACING, always_shown=True),
            Param("window", kinds.Time(), DEFAULT_WINDOW, keyword=True, always_shown=True))))

register(TermFunction(
    name="coupling", role="spikes", example="coupling(all, 8, log, window=100ms)",
    build=_build_spike_filters,
    summary="the other units' past spike counts through k causal filters each",
    params=(Param("units", kinds.Units(), UnitSet(None), always_shown=True),
            Param("k", kinds.Count(minimum=1), None, always_shown=True,
                  inherit_from="history", fallback=DEFAULT_FILTERS),
            Param("spacing", kinds.Spacing(), None, always_shown=True,
                  inherit_from="history", fallback=DEFAULT_SPACING),
            Param("window", kinds.Time(), None, keyword=True, always_shown=True,
                  inherit_from="history", fallback=DEFAULT_WINDOW))))
