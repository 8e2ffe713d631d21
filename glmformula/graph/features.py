"""The feature graph bound to data: evaluates nodes on grid rows, caching and remembering.

One :class:`FeatureGraph` serves every formula fitted on the same data and grid, so a node
shared by several terms or formulas is computed once. Statistics learned from the training
data (basis ranges, means for ``center``) live in :attr:`state`; a graph built on new data with
the training state applies the same transforms.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import DataError
from .data import DataSource, Signal
from .grid import TimeGrid
from .sampling import bin_means, counts_on_grid  # counts are summed, never averaged


class FeatureGraph:
    """Evaluate feature nodes for one data source on one time grid.

    Parameters
    ----------
    source : DataSource
        The user's data.
    grid : TimeGrid
        The bins (rows).
    state : dict, optional
        Training statistics to reuse (node text -> value). Missing ones are learned from this data
        and added.
    cache : bool
        Keep full-grid results of nodes (on by default; blocked fits turn it off for the large
        nodes).
    """

    def __init__(self, source: DataSource, grid: TimeGrid, state: dict | None = None,
                 cache: bool = True):
        self.source = source
        self.grid = grid
        self.state = {} if state is None else state
        self._cache: dict = {}
        self._use_cache = cache
        self._signals: dict[str, Signal] = {}
        self._counts: dict = {}

    # -- data access -------------------------------------------------------------------------
    def signal(self, name: str) -> Signal:
        if name not in self._signals:
            self._signals[name] = self.source.signal(name)
        return self._signals[name]

    def source_labels(self, name: str) -> tuple[str, ...]:
        if self.source.is_interval_set(name):
            return ("",)
        columns = self.signal(name).column_names
        return tuple(f"[{c}]" for c in columns) if columns else ("",)

    def counts(self, response: str, units: tuple) -> np.ndarray:
        """(n_rows, len(units)) float32 spike counts per bin; clipped to 1 for a binary
        response; for a continuous one (``source.response_kind``) the float64 mean of the
        samples in each bin (NaN where a bin has none: the row is dropped)."""
        key = (response, units)
        if key not in self._counts:
            spikes = self.source.spikes(response, units)
            kind = getattr(self.source, "response_kind", "counts")
            if kind == "continuous":
                self._counts[key] = bin_means(spikes.counts.times, spikes.counts.values,
                                              self.grid)
            elif spikes.counts is not None:
                self._counts[key] = counts_on_grid(spikes.counts.times, spikes.counts.values,
                                                   self.grid, name=response)
            else:
                self._counts[key] = self.grid.count_each(spikes.spike_times)
            if kind == "binary":
                self._counts[key] = np.minimum(self._counts[key], 1)  # NaN (a gap) stays NaN
        return self._counts[key]

    # -- evaluation --------------------------------------------------------------------------
    def evaluate(self, node, rows: slice | None = None) -> np.ndarray:
        """Rows ``[rows.start, rows.stop)`` of ``node`` (all rows if None)."""
        full = slice(0, self.grid.n_rows)
        rows = full if rows is None else rows
        if rows == full or node in self._cache:
            if node not in self._cache:
                value = node.evaluate(self, full)
                if not self._use_cache:
                    return value
                self._cache[node] = value
            return self._cache[node][rows]
        return node.evaluate(self, rows)

    def statistic(self, node, compute: Callable[[np.ndarray], object]):
        """A statistic of ``node.input`` over the training rows, learned once and remembered.

        Keys are the nodes' text (``repr``), so a saved result can restore them.
        """
        key = repr(node)
        if key not in self.state:
            x = self.evaluate(node.input)
            if not np.isfinite(x).any():
                raise DataError("a covariate has no finite value on the grid",
                                hint="check that it covers the epochs being fitted")
            self.state[key] = tuple(np.asarray(v, float) for v in compute(x))
        return self.state[key]
