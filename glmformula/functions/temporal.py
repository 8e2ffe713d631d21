"""Causal temporal terms: lag, filter, history, coupling.

They read the past: ``lag`` shifts a covariate, ``filter`` convolves a covariate with k
raised-cosine filters, ``history`` filters the response unit's own spike counts and
``coupling`` the other units'. Bin t sees bins t-1 ... t-window only, never across an epoch
border; rows whose window would start before their epoch are dropped.
"""

from __future__ import annotations

from ..bases.raised_cosine import most_distinct_filters, shortest_distinct_window
from ..errors import TermArgumentError
from ..graph import nodes
from ..terms import params as kinds
from ..terms.registry import Param, TermFunction, lookup, register, with_arguments
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


def _check_resolvable(call, compiler, window: int, log: bool) -> None:
    """Refuse more filters than the window has lags to tell apart, at design time.

    The rule (:func:`~glmformula.bases.raised_cosine.filters_are_distinct`): the k filters,
    sampled at the window's lags 1 ... window_bins, must be linearly independent (full rank,
    condition number below 1e6). Log-spaced filters then need at least k + 1 bins in the window
    (they decay to 0 at its last lag), linear ones k. Otherwise some filtered columns are
    identical for any data and the fit could only report rank deficiency, unit by unit.
    """
    k = call.argument("k")
    most = most_distinct_filters(window, k, log=log)
    if most >= k:
        return
    duration = call.argument("window")
    bin_size = compiler.graph.grid.bin_size
    spacing = "log-spaced" if log else "linearly spaced"
    can = f"at most {most}" if most else "not even 2"
    needed = shortest_distinct_window(k, log=log)
    longer = with_arguments(call, window=Duration(_round_seconds(needed * bin_size)))
    finer = _round_seconds(duration.seconds / needed) * 1e3
    keep = (f"{k} filters need a window of {needed} bins: {longer}, or bins of at most "
            f"{finer:g} ms")
    formula = str(compiler.formula)
    raise TermArgumentError(
        f"{call.function}(): window={duration} at {bin_size * 1e3:g} ms bins spans {window} "
        f"bin{'s' if window > 1 else ''}, which can resolve {can} {spacing} filters, not {k} "
        "(more give linearly dependent columns)",
        formula=formula, column=formula.find(call.text) + 1 if call.text in formula else None,
        hint=(f"write {with_arguments(call, k=most)}; or " if most else "") + keep)


def _round_seconds(seconds: float) -> float:
    """Seconds rounded to 0.1 ms, so that suggested durations read as typed ones."""
    return round(seconds * 1e4) / 1e4


def _build_filter(call, compiler):
    _check_filters(call, compiler)
    window = compiler.bins(call.argument("window"), call)
    _check_resolvable(call, compiler, window, call.argument("log"))
    return nodes.CausalFilter(compiler.node(call.argument("x")), call.argument("k"), window,
                              call.argument("log"))


def _build_spike_filters(call, compiler):
    """Filtered spike counts of every unit the term may read (one bank shared by all units)."""
    _check_filters(call, compiler)
    window = compiler.bins(call.argument("window"), call)
    log = call.argument("spacing") == "log"
    _check_resolvable(call, compiler, window, log)
    counts = nodes.SpikeCounts(compiler.response, compiler.bank_units)
    return nodes.CausalFilter(counts, call.argument("k"), window, log)


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
