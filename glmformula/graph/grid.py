"""The time grid: bins that tile each epoch from its start.

Row ``t`` of every design matrix is one bin of this grid. Epochs are disjoint pieces: a bin
belongs to exactly one epoch and knows its position inside it, which is what keeps filters,
lags and history from reaching across epoch borders.
"""

from __future__ import annotations

import functools

import attrs
import numpy as np

from ..errors import DataError

# Bins are counted with a little slack so that an epoch of exactly n * bin_size seconds gives n
# bins despite floating-point error in (end - start) / bin_size.
_EDGE_SLACK = 1e-9
_TIME_PRECISION = 1e-9  # seconds; pynapple rounds timestamps to this


@attrs.frozen(eq=False)
class TimeGrid:
    """Bins of ``bin_size`` seconds tiling each epoch ``[starts[e], ends[e])`` from its start.

    Only whole bins are kept; a trailing partial bin is left out.

    Attributes
    ----------
    bin_size : float
        Seconds.
    starts, ends : ndarray
        Epoch bounds in seconds, sorted and disjoint.
    """

    bin_size: float
    starts: np.ndarray
    ends: np.ndarray

    @classmethod
    def from_epochs(cls, starts, ends, bin_size: float) -> "TimeGrid":
        starts = np.asarray(starts, dtype=float).ravel()
        ends = np.asarray(ends, dtype=float).ravel()
        keep = np.floor((ends - starts) / bin_size + _EDGE_SLACK) >= 1
        if not keep.any():
            longest = float(np.max(ends - starts)) if len(starts) else 0.0
            raise DataError(
                f"bin_size={bin_size:g} s is longer than every epoch (longest: {longest:g} s)",
                hint="use a smaller bin_size (e.g. \"10ms\") or longer epochs")
        return cls(float(bin_size), starts[keep], ends[keep])

    @functools.cached_property
    def bins_per_epoch(self) -> np.ndarray:
        return np.floor((self.ends - self.starts) / self.bin_size + _EDGE_SLACK).astype(np.int64)

    @functools.cached_property
    def segments(self) -> np.ndarray:
        """(E, 2) int array: the rows ``[first, stop)`` of each epoch."""
        stops = np.cumsum(self.bins_per_epoch)
        return np.stack([stops - self.bins_per_epoch, stops], axis=1)

    @property
    def n_rows(self) -> int:
        return int(self.bins_per_epoch.sum())

    @functools.cached_property
    def epoch_of_row(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.starts)), self.bins_per_epoch)

    @functools.cached_property
    def row_in_epoch(self) -> np.ndarray:
        """Bins since the start of the row's epoch (0 for the first bin)."""
        return np.arange(self.n_rows) - np.repeat(self.segments[:, 0], self.bins_per_epoch)

    @functools.cached_property
    def left_edges(self) -> np.ndarray:
        """Start time (s) of each bin."""
        return self.starts[self.epoch_of_row] + self.row_in_epoch * self.bin_size

    @functools.cached_property
    def centers(self) -> np.ndarray:
        """Centre time (s) of each bin: where continuous covariates are sampled."""
        return self.left_edges + 0.5 * self.bin_size

    def row_of_time(self, times: np.ndarray) -> np.ndarray:
        """Grid row of each time (s), or -1 for times outside every bin."""
        times = np.asarray(times, dtype=float)
        epoch = np.searchsorted(self.starts, times, side="right") - 1
        epoch_ok = epoch >= 0
        epoch = np.where(epoch_ok, epoch, 0)
        start = self.starts[epoch]
        within = np.floor((times - start) / self.bin_size).astype(np.int64)
        # Division can land a time sitting on an edge in the neighbouring bin; compare with the
        # edges themselves, to pynapple's time precision (1e-9 s), as pynapple does.
        within -= times < start + within * self.bin_size - _TIME_PRECISION
        within += times >= start + (within + 1) * self.bin_size - _TIME_PRECISION
        ok = epoch_ok & (within >= 0) & (within < self.bins_per_epoch[epoch])
        return np.where(ok, self.segments[epoch, 0] + within, -1)

    def count(self, times: np.ndarray, dtype=np.float32) -> np.ndarray:
        """Number of event times falling in each bin."""
        rows = self.row_of_time(times)
        return np.bincount(rows[rows >= 0], minlength=self.n_rows).astype(dtype)

    def count_each(self, trains, dtype=np.float32) -> np.ndarray:
        """(n_rows, len(trains)) counts of each train's event times per bin.

        One pass for all trains (one ``row_of_time`` and one ``bincount`` over
        the pooled times) rather than one per train: less time, and no per-train
        array of ``n_rows`` counts (measured: docs/performance_decisions.md,
        'Counting all spike trains in one pass').
        """
        n = len(trains)
        if n == 0:
            return np.zeros((self.n_rows, 0), dtype)
        rows = self.row_of_time(np.concatenate([np.asarray(t, dtype=float) for t in trains]))
        which = np.repeat(np.arange(n), [len(t) for t in trains])
        keep = rows >= 0
        flat = np.bincount(rows[keep] * n + which[keep], minlength=self.n_rows * n)
        return flat.reshape(self.n_rows, n).astype(dtype)

    def select(self, rows: np.ndarray) -> "TimeGrid":
        """The grid restricted to the epochs that contain ``rows`` (used for fold bookkeeping)."""
        epochs = np.unique(self.epoch_of_row[rows])
        return TimeGrid(self.bin_size, self.starts[epochs], self.ends[epochs])
