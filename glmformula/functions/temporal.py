"""Temporal terms: lag, filter, history, coupling.

They read the past: ``lag`` shifts a covariate, ``filter`` convolves a covariate (or event
times) with k raised-cosine filters, ``history`` filters the response unit's own spike counts
and ``coupling`` the other units'. Bin t sees bins t-1 ... t-window only, never across an epoch
border; rows whose window would start before their epoch are dropped.

Event kernels are the one exception to causality: ``filter(events, k, window=..., start=...)``
on a Ts (or one train of a TsGroup, ``events[3]``) covers lags ``start + 1 ... start + window``
bins, and ``start < 0`` reaches the time before each event (events are exogenous). Rows whose
window would reach past the end of their epoch are dropped. ``history`` and ``coupling`` read
spikes of the modelled population and refuse ``start``.
"""

from __future__ import annotations

import pynapple as nap

from ..bases.raised_cosine import most_distinct_filters, shortest_distinct_window
from ..errors import DataError, TermArgumentError
from ..graph import nodes
from ..terms import params as kinds
from ..terms.registry import Param, TermFunction, lookup, register, with_arguments
from ..terms.values import Duration, UnitSet, Variable
from .basis import SMOOTH

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
    start = _start_bins(call, compiler)
    return nodes.CausalFilter(_filter_input(call, compiler), call.argument("k"), window,
                              call.argument("log"), start)


def _where(call, compiler) -> dict:
    formula = str(compiler.formula)
    return {"formula": formula,
            "column": formula.find(call.text) + 1 if call.text in formula else None}


def _start_bins(call, compiler) -> int:
    """``start`` in whole bins (0: causal). Log-spaced filters are narrow at the start of the
    window: a kernel that starts before the event would resolve the far past of the event
    finely and the event itself coarsely, so it needs linear spacing."""
    start = call.argument("start")
    if start.seconds == 0:
        return 0
    bin_size = compiler.graph.grid.bin_size
    bins = int(round(start.seconds / bin_size))
    if bins == 0:
        one_bin = Duration(_round_seconds(-bin_size if start.seconds < 0 else bin_size))
        raise TermArgumentError(
            f"filter(): start={start} is shorter than one bin ({bin_size * 1e3:g} ms)",
            **_where(call, compiler),
            hint=f"write start=0ms, or a start of whole bins (e.g. start={one_bin})")
    if bins < 0 and call.argument("log"):
        raise TermArgumentError(
            f"filter(): start={start} reaches before the event, but log-spaced filters are "
            "narrow at the start of the window and broad at the event itself",
            **_where(call, compiler),
            hint=f"write {with_arguments(call, log=False)} (linearly spaced filters)")
    return bins


def _event_kind(obj) -> str | None:
    """``"Ts"`` or ``"TsGroup"`` for event (spike) trains, None for anything else."""
    if isinstance(obj, nap.TsGroup):
        return "TsGroup"
    if isinstance(obj, nap.Ts) and not isinstance(obj, (nap.Tsd, nap.TsdFrame, nap.TsdTensor)):
        return "Ts"
    return None


def _filter_input(call, compiler):
    """The node ``filter`` convolves: a covariate, or event times counted into the bins (a Ts,
    or one train of a TsGroup written ``events[3]``)."""
    x = call.argument("x")
    if not isinstance(x, Variable) or x.name == compiler.response:
        return compiler.node(x)  # the response is refused there: history/coupling read it
    # (a result rebuilding its nodes without data gets None here: only the kernels matter)
    obj = compiler.graph.source.get(x.name)
    kind = _event_kind(obj)
    if obj is None or (kind is None and x.unit is None):
        return nodes.EventCounts(x.name, x.unit) if x.unit is not None else compiler.node(x)
    if kind != "TsGroup" and x.unit is not None:
        raise DataError(
            f"'{x.name}' is a {type(obj).__name__}: [{x.unit}] selects one train of a TsGroup",
            **_where(call, compiler),
            hint=f"write {with_arguments(call, x=Variable(x.name))}")
    if kind == "TsGroup":
        ids = [int(u) for u in obj.index]
        if x.unit is None:
            raise DataError(
                f"'{x.name}' is a TsGroup of {len(ids)} trains; filter() reads one of them",
                **_where(call, compiler),
                hint=f"pick one, e.g. {with_arguments(call, x=Variable(x.name, ids[0]))}")
        if x.unit not in ids:
            shown = ", ".join(map(str, ids[:10])) + (", ..." if len(ids) > 10 else "")
            raise DataError(
                f"unit {x.unit} is not in '{x.name}' (its units: {shown})",
                **_where(call, compiler),
                hint=f"write e.g. {with_arguments(call, x=Variable(x.name, ids[0]))}")
    return nodes.EventCounts(x.name, x.unit)


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
    summary="the covariate, or event times (a Ts, or events[3] of a TsGroup), convolved with "
            "k raised-cosine filters over lags start ... start + window (start < 0: also "
            "before each event)",
    params=(Param("x", kinds.Covariate(units=True)),
            Param("k", kinds.Count(minimum=1), DEFAULT_FILTERS, always_shown=True),
            Param("window", kinds.Time(), DEFAULT_WINDOW, keyword=True, always_shown=True),
            Param("log", kinds.Flag(), True, keyword=True, always_shown=True),
            Param("start", kinds.Time(positive=False, zero=True), Duration(0.0),
                  keyword=True), SMOOTH)))

_CAUSAL_FIX = ("remove start=...; to cover the time before external events, filter their "
               "times: filter(events, 8, window=300ms, log=False, start=-100ms), events a Ts")

register(TermFunction(
    name="history", role="spikes", example="history(8, log, window=100ms)",
    build=_build_spike_filters,
    summary="the response unit's own past spike counts through k causal filters",
    refuses=(("start", "it reads the unit's own spikes, which are not exogenous, so it stays "
              "strictly causal (lags 1 ... window)", _CAUSAL_FIX),),
    params=(Param("k", kinds.Count(minimum=1), DEFAULT_FILTERS, always_shown=True),
            Param("spacing", kinds.Spacing(), DEFAULT_SPACING, always_shown=True),
            Param("window", kinds.Time(), DEFAULT_WINDOW, keyword=True, always_shown=True),
            SMOOTH)))

register(TermFunction(
    name="coupling", role="spikes", example="coupling(all, 8, log, window=100ms)",
    build=_build_spike_filters,
    summary="the other units' past spike counts through k causal filters each",
    refuses=(("start", "it reads the other units' spikes, which are not exogenous, so it "
              "stays strictly causal (lags 1 ... window)", _CAUSAL_FIX),),
    params=(Param("units", kinds.Units(), UnitSet(None), always_shown=True),
            Param("k", kinds.Count(minimum=1), None, always_shown=True,
                  inherit_from="history", fallback=DEFAULT_FILTERS),
            Param("spacing", kinds.Spacing(), None, always_shown=True,
                  inherit_from="history", fallback=DEFAULT_SPACING),
            Param("window", kinds.Time(), None, keyword=True, always_shown=True,
                  inherit_from="history", fallback=DEFAULT_WINDOW), SMOOTH)))
