"""Design matrices: bind a formula to data on a time grid and build its columns.

:func:`prepare` does the binding (bin size, epochs, checks) and compiles the formula;
:func:`build` materialises the columns; :func:`design_matrix` is the public one-call form.
The stored design covers every bin of the grid, with a ``valid`` mask for the rows used (the
others are zero and get weight 0 in fits), so filtered spike trains are written straight into
the final array and peak memory stays close to the design itself.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Mapping

import attrs
import numpy as np
import pandas as pd
import pynapple as nap

from .._memory import aligned_zeros, setup_allocator
from ..config import config
from ..errors import BinSizeWarning, DataError, FormulaError, warn
from ..syntax import ast
from ..syntax.parser import parse_number
from ..terms.formula import Formula, parse
from . import gating
from .compile import DesignPlan, compile_formula
from .convolution import causal_convolve
from .data import DataSource, covered_fraction, intersect_intervals
from .features import FeatureGraph
from .grid import TimeGrid
from .nodes import CausalFilter, SpikeCounts
from .rows import RowBlock


def parse_bin_size(bin_size) -> float:
    """Seconds from a number (seconds) or a quantity string such as ``"10ms"``.

    A bare number above 1 s (``bin_size=10``) is most likely milliseconds meant: it warns
    (:class:`~glmformula.errors.BinSizeWarning`, at the user's call) unless the number is one
    that glmformula passes itself (a result re-binding new data with its stored bin size).
    A quantity (``"10s"``) says the unit and never warns.
    """
    if isinstance(bin_size, str):
        text = bin_size.strip()
        try:
            value = parse_number(text, 1, text)
        except (FormulaError, AttributeError, TypeError):
            value = None
        if not isinstance(value, ast.Quantity):
            raise DataError(f"bin_size {bin_size!r} is not a duration",
                            hint="write it as seconds (0.01) or with a unit (\"10ms\")")
        seconds = value.seconds
    elif isinstance(bin_size, (int, float, np.floating, np.integer)) and \
            not isinstance(bin_size, bool):
        seconds = float(bin_size)
        if seconds > 1 and _bin_size_from_user():
            warn(bare_bin_size_message(bin_size), BinSizeWarning)
    else:
        raise DataError(f"bin_size must be seconds or a string such as \"10ms\", not "
                        f"{bin_size!r}", hint="e.g. bin_size=\"10ms\"")
    if not np.isfinite(seconds) or seconds <= 0:
        raise DataError(f"bin_size must be positive, got {bin_size!r}", hint="e.g. \"10ms\"")
    return seconds


def bare_bin_size_message(bin_size) -> str:
    """What the :class:`~glmformula.errors.BinSizeWarning` of a bare number says."""
    return (f"bin_size={bin_size!r} has no unit, so it is read as {float(bin_size):g} seconds "
            f"per bin; for {float(bin_size):g} milliseconds write \"{float(bin_size):g}ms\" "
            f"(or {float(bin_size) / 1000:g}); to keep {float(bin_size):g}-second bins, write "
            f"\"{float(bin_size):g}s\"")


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _bin_size_from_user() -> bool:
    """Whether the bin size being parsed is the one the user typed.

    It is when the glmformula function the user called (the outermost frame inside the
    package) takes a ``bin_size`` argument (``fit``, ``design_matrix``, ``compare``, ...);
    a result's ``predict`` or ``summary`` re-binds with the seconds it stored, and a spec
    file warns with its own file and line.
    """
    frame, entry = sys._getframe(1), None
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        entry, frame = frame, frame.f_back
    if entry is None:
        return False
    code = entry.f_code
    return "bin_size" in code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]


def resolve_epochs(source: DataSource, formula: Formula, epochs) -> np.ndarray:
    """The epochs to fit, as an (E, 2) array: given, named, or the intersection of supports."""
    if isinstance(epochs, str):
        intervals = source.interval_set(epochs, role="epochs")
    elif isinstance(epochs, nap.IntervalSet):
        intervals = np.stack([np.asarray(epochs.start, float),
                              np.asarray(epochs.end, float)], axis=1)
    elif epochs is None:
        intervals = None
        for name in _used_names(formula):
            support = source.support_of(name, response=name == formula.response)
            if support is None or len(support) == 0:
                continue
            intervals = support if intervals is None else intersect_intervals(intervals, support)
        if intervals is None:
            raise DataError("no epochs: nothing in the formula has a time support",
                            hint="pass epochs=IntervalSet(...) or the name of one in the data")
    else:
        raise DataError(f"epochs must be an IntervalSet or the name of one, not "
                        f"{type(epochs).__name__}",
                        hint="e.g. epochs=\"wake\", or epochs=nap.IntervalSet(start=starts, "
                             "end=ends)")
    intervals = np.asarray(intervals, float).reshape(-1, 2)
    if len(intervals) == 0 or np.all(intervals[:, 1] <= intervals[:, 0]):
        raise DataError("the epochs are empty (no time in common between the objects the "
                        "formula uses)", hint="check the time supports, or pass epochs=...")
    order = np.argsort(intervals[:, 0])
    intervals = intervals[order]
    if np.any(intervals[1:, 0] < intervals[:-1, 1]):
        raise DataError("the epochs overlap", hint="merge them first (IntervalSet.merge_close_"
                                                   "intervals or union)")
    return intervals[intervals[:, 1] > intervals[:, 0]]


def _used_names(formula: Formula) -> tuple[str, ...]:
    names = (formula.response,) if formula.response else ()
    return names + formula.variables()


def _check_coverage(source: DataSource, formula: Formula, epochs: np.ndarray,
                    bin_size: float) -> None:
    total = float(np.sum(epochs[:, 1] - epochs[:, 0]))
    for name in _used_names(formula):
        support = source.support_of(name, response=name == formula.response)
        if support is None or len(support) == 0:
            continue
        uncovered = (1 - covered_fraction(epochs, support)) * total
        if uncovered > max(2 * bin_size * len(epochs), 0.01 * total):
            raise DataError(
                f"'{name}' does not cover the epochs: {uncovered:.3g} s of the "
                f"{total:.3g} s to fit lie outside its time support",
                hint="restrict the fit to where it is defined (epochs=...), or leave epochs "
                     "out to use the intersection of all time supports")


@attrs.frozen(eq=False)
class Prepared:
    """A formula bound to data: the feature graph (data + grid) and the compiled plan."""

    formula: Formula
    graph: FeatureGraph
    plan: DesignPlan | None


def bind(formulas, data: Mapping, *, bin_size, epochs=None,
         state: dict | None = None, response_kind: str = "counts") -> FeatureGraph:
    """One feature graph (data + grid) for one or several formulas on the same data.

    The default epochs are the intersection of the time supports of everything any of the
    formulas uses, so every formula is built on the same bins. ``response_kind``: how the
    response is read (:data:`~glmformula.graph.data.RESPONSE_KINDS`; the fit's family says).
    """
    formulas = [parse(f, require_response=False) for f in formulas]
    combined = _union_formula(formulas)
    source = DataSource(data, response=combined.response, response_kind=response_kind)
    seconds = parse_bin_size(bin_size)
    for name in _used_names(combined):
        # numpy arrays have no time support: say how to wrap them before the epochs (the
        # intersection of time supports) would report that there is no time at all
        source.check_pynapple(name, role="response" if name == combined.response
                              else "covariate")
    intervals = resolve_epochs(source, combined, epochs)
    _check_coverage(source, combined, intervals, seconds)
    grid = TimeGrid.from_epochs(intervals[:, 0], intervals[:, 1], seconds)
    return FeatureGraph(source, grid, state)


def _union_formula(formulas) -> Formula:
    terms = tuple(dict.fromkeys(t for f in formulas for t in f.term_objects))
    response = next((f.response for f in formulas if f.response), None)
    return Formula(response, None, terms, True)


def prepare(formula, data: Mapping, *, bin_size=None, epochs=None, state: dict | None = None,
            graph: FeatureGraph | None = None, require_response: bool = True,
            response_kind: str = "counts") -> Prepared:
    """Bind a formula to data (or to an existing graph) and compile its plan
    (``response_kind``: as for :func:`bind`)."""
    formula = parse(formula, require_response=require_response)
    if graph is None:
        graph = bind([formula], data, bin_size=bin_size, epochs=epochs, state=state,
                     response_kind=response_kind)
    plan = compile_formula(formula, graph) if formula.response else None
    if plan is not None and plan.lead >= int(graph.grid.bins_per_epoch.max()):
        raise DataError(
            f"the longest filter window ({plan.lead} bins) is as long as every epoch "
            f"(longest: {int(graph.grid.bins_per_epoch.max())} bins)",
            hint="use shorter windows, a larger bin_size or longer epochs")
    return Prepared(formula, graph, plan)


@attrs.frozen(eq=False)
class DesignMatrix:
    """The design (and binned response) of a formula on data.

    The columns are stored once for the whole population over every bin of the grid;
    ``valid`` marks the rows used. For a single unit, ``columns``/``to_numpy()`` are that unit's
    design; for a population they are the stored columns (shared terms once, then each unit's
    filtered spike counts, which ``history`` and ``coupling`` select from per unit: see
    :meth:`unit_design`).
    """

    formula: Formula
    plan: DesignPlan
    graph: FeatureGraph
    storage: np.ndarray
    valid: np.ndarray
    counts: np.ndarray
    offset: np.ndarray | None
    dropped: dict

    # -- shape and names ---------------------------------------------------------------------
    @property
    def unit_ids(self) -> tuple:
        return self.plan.unit_ids

    @property
    def grid(self) -> TimeGrid:
        return self.graph.grid

    @property
    def n_rows(self) -> int:
        return int(self.valid.sum())

    @property
    def is_population(self) -> bool:
        return len(self.unit_ids) != 1

    @property
    def columns(self) -> tuple[str, ...]:
        if self.is_population:
            return self.plan.storage_columns
        return tuple(t + label for t, label in self.plan.unit_labels[0])

    @property
    def term_slices(self) -> dict[str, slice]:
        """Canonical term text -> slice of :attr:`columns` (without the Intercept column)."""
        if self.is_population:
            return dict(self.plan.term_storage)
        slices, start = {}, 0
        for term in self.formula.terms:
            n = sum(1 for t, _ in self.plan.unit_labels[0] if t == term)
            if n or term in self.plan.term_storage:
                slices[term] = slice(start, start + n)
            start += n
        return slices

    @functools.cached_property
    def rows(self) -> np.ndarray:
        """Grid row indices of the rows used."""
        return np.flatnonzero(self.valid)

    @property
    def times(self) -> np.ndarray:
        """Bin centres (s) of the rows used."""
        return self.grid.centers[self.rows]

    @property
    def time_support(self) -> nap.IntervalSet:
        """The epochs the rows come from."""
        return nap.IntervalSet(start=self.grid.starts, end=self.grid.ends)

    # -- arrays ------------------------------------------------------------------------------
    def _unit_columns(self) -> np.ndarray | slice:
        return slice(None) if self.is_population else self.plan.unit_columns[0]

    def to_numpy(self, intercept: bool | None = None) -> np.ndarray:
        """The design of the rows used; an ``Intercept`` column first when the formula has one.

        Written once: the output is allocated whole and the rows and columns used are copied
        into it in one pass (no intermediate copy of the design).
        """
        columns = self._unit_columns()
        if isinstance(columns, slice):
            columns = np.arange(self.storage.shape[1])[columns]
        with_intercept = self.formula.intercept if intercept is None else bool(intercept)
        return gather(self.storage, self.rows, columns, with_intercept)

    def to_tsdframe(self) -> nap.TsdFrame:
        columns = (("Intercept",) if self.formula.intercept else ()) + self.columns
        return nap.TsdFrame(t=self.times, d=self.to_numpy(), columns=list(columns),
                            time_support=self.time_support)

    @property
    def response(self):
        """The binned response of the rows used: Tsd (one unit) or TsdFrame (population).

        Spike counts per bin for the count families (clipped to 1 for ``"bernoulli"``), the
        mean of a continuous signal's samples in each bin for ``"gamma"`` and ``"gaussian"``.
        """
        counts = self.counts[self.rows]
        if not self.is_population:
            return nap.Tsd(t=self.times, d=counts[:, 0], time_support=self.time_support)
        return nap.TsdFrame(t=self.times, d=counts, columns=list(self.unit_ids),
                            time_support=self.time_support)

    def unit_design(self, unit) -> pd.DataFrame:
        """One unit's own design (rows used x its columns), labelled."""
        u = self.unit_ids.index(unit)
        labels = [t + label for t, label in self.plan.unit_labels[u]]
        X = gather(self.storage, self.rows, np.asarray(self.plan.unit_columns[u]), False)
        return pd.DataFrame(X, index=pd.Index(self.times, name="time"), columns=labels,
                            copy=False)

    def __repr__(self) -> str:
        return (f"DesignMatrix({str(self.formula)!r}, rows={self.n_rows}, "
                f"columns={len(self.columns)}, units={len(self.unit_ids)})")


def _runs(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where an integer index array goes up by one: (first, stop) positions of its runs."""
    if len(index) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    breaks = np.flatnonzero(np.diff(index) != 1) + 1
    return np.r_[0, breaks], np.r_[breaks, len(index)]


#: Bytes per piece when the rows used are scattered (gathered through a small buffer).
_GATHER_BYTES = 2 * 1024**2


def gather(storage: np.ndarray, rows: np.ndarray, columns: np.ndarray,
            intercept: bool, out: np.ndarray | None = None) -> np.ndarray:
    """``storage[rows][:, columns]``, with a column of ones first if ``intercept``, written
    in one pass into one new array, or into ``out`` (its first ``len(rows)`` rows; e.g. a
    fitting thread's reused, aligned array).

    Rows and columns are taken as runs of consecutive indices (the rows used are whole
    epochs less their first window; a unit's columns are a few blocks), each pair copied as
    one strided slice; rows in short runs are gathered a few thousand at a time.
    """
    rows = np.asarray(rows, dtype=np.int64)
    columns = np.asarray(columns, dtype=np.int64)
    first = int(intercept)
    out = np.empty((len(rows), len(columns) + first), dtype=storage.dtype) if out is None \
        else out[:len(rows)]
    if intercept:
        out[:, 0] = 1
    if out.size == 0:
        return out
    c_first, c_stop = _runs(columns)
    targets = first + c_first
    column_runs = [(int(columns[a]), int(columns[b - 1]) + 1, int(t), int(t + b - a))
                   for a, b, t in zip(c_first, c_stop, targets)]
    r_first, r_stop = _runs(rows)
    if len(rows) >= 64 * len(r_first):  # long runs of rows: copy slices
        for a, b in zip(r_first.tolist(), r_stop.tolist()):
            src = slice(int(rows[a]), int(rows[b - 1]) + 1)
            for lo, hi, t0, t1 in column_runs:
                out[a:b, t0:t1] = storage[src, lo:hi]
        return out
    for lo, hi, t0, t1 in column_runs:
        step = max(1, _GATHER_BYTES // ((hi - lo) * storage.itemsize))
        for a in range(0, len(rows), step):
            b = min(a + step, len(rows))
            out[a:b, t0:t1] = storage[rows[a:b], lo:hi]
    return out


def build(prepared: Prepared, *, dtype=np.float64, cache_spike_filters: bool = False
          ) -> DesignMatrix:
    """Materialise the design of a prepared formula over the whole grid.

    Filtered spike counts are written straight into the design (no second copy) unless
    ``cache_spike_filters``, which keeps them in the graph for other formulas (comparisons).
    """
    plan, graph = prepared.plan, prepared.graph
    grid = graph.grid
    setup_allocator(config.keep_freed_memory)  # before the first large buffer (gf.config)
    storage = aligned_zeros((grid.n_rows, plan.n_storage), dtype)  # the solver uses it in place
    counts = graph.counts(plan.response, plan.unit_ids)
    finite = np.isfinite(counts).all(axis=1)  # a response of counts per bin may have gaps
    gaps = not finite.all()
    filled = {}  # bank -> its stored columns, which a gated bank (filled last) copies
    for node, start, stop in sorted(plan.blocks, key=lambda b: gating.gate(b[0]) is not None):
        target = storage[:, start:stop]
        bank = gating.spike_bank(node)
        if bank is not None and not cache_spike_filters:
            if bank in filled:
                target[...] = storage[:, filled[bank]]
            else:
                _filter_spikes_into(bank, graph, target)
            if node is bank:
                filled[bank] = slice(start, stop)
            if gaps:  # filtered counts are unknown where their window reads a gap
                finite &= np.isfinite(target).all(axis=1)
            state = gating.gate(node)
            if state is not None:  # a gated bank: the bank times the state's one column
                values = graph.evaluate(state)[:, 0]
                finite &= np.isfinite(values)
                target *= np.nan_to_num(values)[:, None]
        else:
            values = graph.evaluate(node)
            finite &= _finite_rows(values)
            target[...] = values
            _check_range(target, values, plan.storage_columns[start], prepared.formula)
    offset = None
    for node in plan.offsets:
        values = graph.evaluate(node)[:, 0]
        offset = values if offset is None else offset + values
    if offset is not None:
        finite &= np.isfinite(offset)
    window_ok = grid.row_in_epoch >= plan.lead
    valid = window_ok & finite
    dropped = {"window": int((~window_ok).sum()), "missing": int((window_ok & ~finite).sum())}
    if not valid.any():
        raise DataError("no rows are left to fit after dropping missing values and the first "
                        "window of each epoch", formula=str(prepared.formula),
                        hint="check for covariates that are NaN everywhere, or shorten windows")
    storage[~valid] = 0.0  # rows not used get weight 0; zero keeps products finite
    if offset is not None:
        offset = np.where(valid, offset, 0.0)
    if gaps:
        counts = np.where(valid[:, None], counts, np.float32(0.0))
    return DesignMatrix(prepared.formula, plan, graph, storage, valid, counts, offset, dropped)


def _finite_rows(values: np.ndarray) -> np.ndarray:
    """Whether each row of ``values`` (n, c) is finite throughout.

    Tested on the whole array first: covariates are mostly complete, and the test by rows
    costs three times as much (1e5 x 50: 3.7 ms against 1.2 ms).
    """
    finite = np.isfinite(values)
    if finite.all():
        return np.ones(finite.shape[0], bool)
    return finite.all(axis=1)


def _check_range(stored: np.ndarray, values: np.ndarray, column: str, formula) -> None:
    """Finite values that overflowed the storage dtype (float32 tops out at 3.4e38) would
    reach the solver as inf: refuse them, naming the column."""
    if stored.dtype.itemsize >= 8 or stored.size == 0:
        return
    with np.errstate(invalid="ignore"):
        limit = np.finfo(stored.dtype).max
        if np.nanmax(np.abs(values), initial=0.0) <= limit:
            return
    raise DataError(f"'{column}' has values beyond the float32 range (|x| > {limit:.3g}), "
                    "which would become infinite in a float32 design",
                    formula=str(formula),
                    hint="rescale the covariate (e.g. scale(x), or other units), or use "
                         "dtype='float64'")


def _filter_spikes_into(node: CausalFilter, graph: FeatureGraph, out: np.ndarray) -> None:
    counts = graph.evaluate(node.input)
    causal_convolve(counts, node.kernels(), graph.grid.segments, out=out)


def design_matrix(formula, data: Mapping, *, bin_size, epochs=None,
                  dtype="float64", response_kind: str = "counts") -> DesignMatrix:
    """Build the design matrix (and binned response) of ``formula`` on ``data``.

    ``gf.design_matrix`` (:func:`glmformula.results.fit.design_matrix`, where the other
    parameters are documented) calls this with the response kind of its ``family``:
    ``response_kind`` (:data:`~glmformula.graph.data.RESPONSE_KINDS`) is ``"counts"`` (spike
    counts, default), ``"binary"`` (counts clipped to 1) or ``"continuous"`` (a Tsd/TsdFrame
    averaged into the bins). Returns a :class:`DesignMatrix`.
    """
    prepared = prepare(formula, data, bin_size=bin_size, epochs=epochs, require_response=True,
                       response_kind=response_kind)
    return build(prepared, dtype=np.dtype(dtype))


def build_block(prepared: Prepared, start: int, stop: int, *, dtype=np.float64) -> RowBlock:
    """Build grid rows ``[start, stop)`` only, reading back just the filter windows they need
    (the same values as the corresponding rows of :func:`build`); rows not used have weight 0."""
    plan, graph = prepared.plan, prepared.graph
    grid = graph.grid
    rows = slice(start, stop)
    storage = aligned_zeros((stop - start, plan.n_storage), dtype)
    all_counts = graph.counts(plan.response, plan.unit_ids)
    counts = all_counts[rows]
    gaps = not np.isfinite(all_counts).all()  # a response of counts per bin may have gaps
    finite = np.isfinite(counts).all(axis=1)
    for node, first, last in plan.blocks:
        values = node.evaluate(graph, rows)
        if gaps or not (isinstance(node, CausalFilter) and isinstance(node.input, SpikeCounts)):
            finite &= np.isfinite(values).all(axis=1)
        storage[:, first:last] = values
        _check_range(storage[:, first:last], values, plan.storage_columns[first],
                     prepared.formula)
    offset = None
    for node in plan.offsets:
        values = node.evaluate(graph, rows)[:, 0]
        offset = values if offset is None else offset + values
    if offset is not None:
        finite &= np.isfinite(offset)
    valid = (grid.row_in_epoch[rows] >= plan.lead) & finite
    storage[~valid] = 0.0
    if offset is not None:
        offset = np.where(valid, offset, 0.0)
    if gaps:
        counts = np.where(valid[:, None], counts, np.float32(0.0))
    return RowBlock(start, storage, counts, offset, valid.astype(np.float64))


def iter_blocks(prepared: Prepared, chunk_size: int, *, dtype=np.float64):
    """Blocks of ``chunk_size`` grid rows covering the whole grid, in time order."""
    n = prepared.graph.grid.n_rows
    for start in range(0, n, chunk_size):
        yield build_block(prepared, start, min(start + chunk_size, n), dtype=dtype)
