"""Feature-graph nodes: immutable descriptions of what to compute.

A node is a hashable value, so identical sub-graphs (the same covariate, the same basis on it,
the same filtered spike trains) are one cache entry however many terms or formulas use them.
``evaluate(graph, rows)`` computes the node on a contiguous range of grid rows, asking the
graph for its inputs; temporal nodes ask for ``lead`` extra rows before the range and never
let a value cross an epoch border. Outputs are float arrays of shape (n_rows, n_columns) with
NaN marking missing values (those rows are dropped).
"""

from __future__ import annotations

import attrs
import numpy as np

from .. import bases
from ..terms.registry import lookup
from .convolution import causal_convolve, lagged_convolve
from .sampling import indicator_on_grid, sample_on_grid


def _expanded_labels(inner: tuple[str, ...], k: int) -> tuple[str, ...]:
    """``[j]`` for each of k columns, after the input column's label when it has several."""
    own = tuple(f"[{j}]" for j in range(k))
    if len(inner) <= 1:
        return own
    return tuple(f"{c}{o}" for c in inner for o in own)


def _segments_in(grid, lo: int, hi: int) -> np.ndarray:
    """Epoch row ranges clipped to [lo, hi), relative to lo."""
    seg = np.clip(grid.segments, lo, hi) - lo
    return seg[seg[:, 1] > seg[:, 0]]


@attrs.frozen
class Covariate:
    """A covariate from the data, sampled on the grid (``period`` set for angles)."""

    name: str
    period: float | None = None
    lead: int = 0

    def labels(self, graph) -> tuple[str, ...]:
        return graph.source_labels(self.name)

    def evaluate(self, graph, rows: slice) -> np.ndarray:
        source = graph.source
        if source.is_interval_set(self.name):
            intervals = source.interval_set(self.name)
            return indicator_on_grid(intervals[:, 0], intervals[:, 1], graph.grid, rows)
        signal = graph.signal(self.name)
        return sample_on_grid(signal.times, signal.values, signal.support, graph.grid, rows,
                              period=self.period)


@attrs.frozen
class Rowwise:
    """A registered row-wise function (``log``, ``sqrt``, user functions) of its inputs."""

    function: str
    inputs: tuple
    params: tuple[tuple[str, object], ...] = ()

    @property
    def lead(self) -> int:
        return max(i.lead for i in self.inputs)

    def labels(self, graph) -> tuple[str, ...]:
        return self.inputs[0].labels(graph)

    def evaluate(self, graph, rows: slice) -> np.ndarray:
        # a covariate on the grid's own centres is a read-only view of the user's samples:
        # a function that writes into its input gets a copy
        arrays = [a if a.flags.writeable else a.copy()
                  for a in (graph.evaluate(i, rows) for i in self.inputs)]
        with np.errstate(all="ignore"):
            out = np.asarray(lookup(self.function).compute(*arrays, **dict(self.params)),
                             dtype=float)
        if out.ndim == 1:
            out = out[:, None]
        if out.shape[0] != rows.stop - rows.start:
            raise ValueError(f"term function {self.function}() returned {out.shape[0]} rows "
                             f"for {rows.stop - rows.start} inputs; it must act row by row")
        return np.where(np.isfinite(out), out, np.nan)


@attrs.frozen
class Standardise:
    """``center(x)`` / ``scale(x)``: uses the mean (and sd) remembered from training rows."""

    input: object
    divide: bool

    @property
    def lead(self) -> int:
        return self.input.lead

    def labels(self, graph) -> tuple[str, ...]:
        return self.input.labels(graph)

    def evaluate(self, graph, rows: slice) -> np.ndarray:
        mean, sd = graph.statistic(self, lambda x: (np.nanmean(x, axis=0),
                                                    np.nanstd(x, axis=0)))
        x = graph.evaluate(self.input, rows) - mean
        # values equal to the mean up to rounding are exactly 0 (a constant covariate is a
        # zero column, which the fit leaves out, not a column of 1e-16 noise)
        x = np.where(np.abs(x) <= 8 * np.finfo(float).eps * np.abs(mean), 0.0, x)
        if self.divide:
            # a constant covariate has sd 0, or a rounding residue of its mean: leave it at 0
            x = x / np.where(sd > 1e-12 * np.abs(mean), sd, 1.0)
        return x


@attrs.frozen
class Lag:
    """The input shifted by ``bins`` (> 0: the past), never across an epoch border."""

    input: object
    bins: int

    @property
    def lead(self) -> int:
        return self.input.lead + max(self.bins, 0)

    def labels(self, graph) -> tuple[str, ...]:
        return self.input.labels(graph)

    def evaluate(self, graph, rows: slice) -> np.ndarray:
        grid, n = graph.grid, rows.stop - rows.start
        source_rows = np.arange(rows.start, rows.stop) - self.bins
        position = grid.row_in_epoch[rows] - self.bins
        ok = (position >= 0) & (position < grid.bins_per_epoch[grid.epoch_of_row[rows]])
        lo = int(max(min(source_rows.min(initial=rows.start), rows.start), 0))
        hi = int(min(max(source_rows.max(initial=rows.stop - 1) + 1, rows.stop), grid.n_rows))
        values = graph.evaluate(self.input, slice(lo, hi))
        out = np.full((n, values.shape[1]), np.nan)
        out[ok] = values[source_rows[ok] - lo]
        return out


@attrs.frozen
class Basis:
    """A basis family evaluated on a one-column input (per column for several columns).

    ``bounds`` None means: the range of the training data, remembered for prediction.
    """

    family: str
    input: object
    k: int
    options: tuple[tuple[str, object], ...] = ()
    bounds: tuple[float, float] | None = None

    @property
    def lead(self) -> int:
        return self.input.lead

    def labels(self, graph) -> tuple[str, ...]:
        return _expanded_labels(self.input.labels(graph), self.k)

    def evaluate(self, graph, rows: slice) -> np.ndarray:
        x = graph.evaluate(self.input, rows)
        options = dict(self.options)
        if self.family == "cyclic":
            blocks = [bases.cyclic_bspline(x[:, j], self.k, **options)
                      for j in range(x.shape[1])]
            return np.concatenate(blocks, axis=1)
        if self.bounds is not None:
            bounds = (np.full(x.shape[1], self.bounds[0]), np.full(x.shape[1], self.bounds[1]))
        else:
            bounds = graph.statistic(self, _finite_range)
        function = {"rcos": bases.raised_cosine, "bspline": bases.bspline,
                    "onehot": bases.onehot}[self.family]
        blocks = []
        for j in range(x.shape[1]):
            low, high = bounds[0][j], bounds[1][j]
            blocks.append(function(x[:, j], self.k, bounds=(low, high), **options))
        return np.concatenate(blocks, axis=1)


def _finite_range(x: np.ndarray):
    with np.errstate(all="ignore"):
        low, high = np.nanmin(x, axis=0), np.nanmax(x, axis=0)
    high = np.where(high > low, high, low + 1.0)  # a constant covariate still gets a range
    return low, high


@attrs.frozen
class CausalFilter:
    """The input convolved with ``k`` raised-cosine filters over ``window`` bins of lags.

    With ``start = 0`` (history, coupling, filters of covariates) it is causal: output row t
    sees input rows t-1 ... t-window of its own epoch (lag 1 = previous bin). An event kernel
    may start elsewhere: the filters cover lags ``start + 1 ... start + window`` bins, so
    ``start < 0`` reads bin t itself and the ``-start - 1`` bins after it (events are
    exogenous). Rows whose window would reach past the end of their epoch are NaN (dropped,
    as for ``lag(x, -dt)``); rows whose window would reach before its start are dropped by
    ``lead``. No row ever reads another epoch.
    """

    input: object
    k: int
    window: int
    log: bool
    start: int = 0

    @property
    def lead(self) -> int:
        return self.input.lead + max(self.start + self.window, 0)

    def lags(self) -> np.ndarray:
        """The lag of each row of :meth:`kernels`, in bins (> 0: before the output bin)."""
        return np.arange(self.start + 1, self.start + self.window + 1)

    def kernels(self) -> np.ndarray:
        """(window, k) filters. Log spacing uses NeMoS's stretch where the bins resolve it,
        relaxed on coarse grids so that no two filters coincide (see
        :func:`~glmformula.bases.raised_cosine.resolvable_time_scaling`)."""
        scaling = bases.resolvable_time_scaling(self.window, self.k) if self.log else 50.0
        return bases.causal_filters(self.window, self.k, log=self.log, time_scaling=scaling)

    def labels(self, graph) -> tuple[str, ...]:
        return _expanded_labels(self.input.labels(graph), self.k)

    def evaluate(self, graph, rows: slice, *, dtype=np.float64) -> np.ndarray:
        if self.start != 0:
            return self._evaluate_shifted(graph, rows, dtype)
        lo = max(rows.start - self.window, 0)
        signal = graph.evaluate(self.input, slice(lo, rows.stop))
        out = causal_convolve(signal, self.kernels(), _segments_in(graph.grid, lo, rows.stop),
                              dtype=dtype)
        return out[rows.start - lo:]

    def _evaluate_shifted(self, graph, rows: slice, dtype) -> np.ndarray:
        # the input rows the window reads: t - start - window ... t - start - 1
        lo = max(rows.start - max(self.start + self.window, 0), 0)
        hi = min(rows.stop + max(-self.start - 1, 0), graph.grid.n_rows)
        signal = graph.evaluate(self.input, slice(lo, hi))
        out = lagged_convolve(signal, self.kernels(), _segments_in(graph.grid, lo, hi),
                              first_lag=self.start + 1, dtype=dtype)
        return out[rows.start - lo:rows.stop - lo]


@attrs.frozen
class EventCounts:
    """Event times (a Ts, or unit ``unit`` of a TsGroup) counted into the bins: one column.

    Events are exogenous (stimuli, rewards, licks): unlike the response's spike counts, a
    filter may read them after the output bin (``filter(events, ..., start=-100ms)``).
    """

    name: str
    unit: int | None = None
    lead: int = 0

    def labels(self, graph) -> tuple[str, ...]:
        return ("",)

    def evaluate(self, graph, rows: slice) -> np.ndarray:
        units = (0,) if self.unit is None else (self.unit,)
        return np.asarray(graph.counts(self.name, units)[rows], dtype=float)


@attrs.frozen
class SpikeCounts:
    """Binned spike counts of the listed units of the response (one column per unit)."""

    response: str
    units: tuple
    lead: int = 0

    def labels(self, graph) -> tuple[str, ...]:
        return tuple(f"[unit {u}]" for u in self.units)

    def evaluate(self, graph, rows: slice) -> np.ndarray:
        return graph.counts(self.response, self.units)[rows]


@attrs.frozen
class Product:
    """Row-wise products of all column pairs of the inputs (``a:b``), first input slowest."""

    inputs: tuple

    @property
    def lead(self) -> int:
        return max(i.lead for i in self.inputs)

    def labels(self, graph) -> tuple[str, ...]:
        labels = ("",)
        for node in self.inputs:
            labels = tuple(a + b for a in labels for b in node.labels(graph))
        return labels

    def evaluate(self, graph, rows: slice) -> np.ndarray:
        out = graph.evaluate(self.inputs[0], rows)
        for node in self.inputs[1:]:
            other = graph.evaluate(node, rows)
            out = (out[:, :, None] * other[:, None, :]).reshape(out.shape[0], -1)
        return out
