"""The rows a fit reads: those with positive weight, copied into arrays of their own.

A fit on a subset of the grid's rows (a cross-validation fold's training rows: 80% at cv=5)
would otherwise pass over every row, the left-out ones at weight 0. Where enough rows are left
out, the fitted rows are copied (run by run of consecutive rows: a fold is one or two runs) and
padded with weight-0 rows to a multiple of :data:`COMPACT_ROW_MULTIPLE`, so that folds of nearly
equal size share one shape and one compilation of every kernel. The engine copies all stored
columns this way; units fitted in groups on their own columns (:mod:`.groups`) copy only their
group's columns of those rows, never the whole design.
"""

from __future__ import annotations

import attrs
import numpy as np

from ..graph.design import gather

#: Copy the fitted rows when at least this fraction of the rows is left out.
COMPACT_ROWS_BELOW = 0.9
#: The copy's rows are padded (weight 0) to a multiple of this, so that folds of nearly equal
#: size share one shape and one compilation of every kernel.
COMPACT_ROW_MULTIPLE = 4096


@attrs.frozen(eq=False)
class RowSelection:
    """The rows with positive weight (``rows``, ascending), to be copied into ``n`` rows (the
    rest weight-0 padding)."""

    rows: np.ndarray
    n: int

    def take(self, a: np.ndarray | None) -> np.ndarray | None:
        """``a``'s selected rows (first axis) in an array of ``n`` rows, zero after them."""
        if a is None:
            return None
        a = np.asarray(a)
        out = np.zeros((self.n,) + a.shape[1:], a.dtype)
        out[:len(self.rows)] = a[self.rows]
        return out

    def copy_into(self, out: np.ndarray, X: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """The selected rows of ``X[:, columns]`` into ``out`` (``n`` rows), run by run of
        consecutive rows and columns (:func:`..graph.design.gather`); padding rows zero."""
        gather(X, self.rows, columns, False, out=out)
        out[len(self.rows):] = 0.0
        return out


#: Runs of consecutive used rows up to which :func:`used_row_parts` hands out slices in place
#: (more: blocks of rows gathered by the mask).
MAX_RUNS = 64


def used_row_parts(X: np.ndarray, used: np.ndarray | None, rows_per_block: int,
                   split_runs: bool = False):
    """The rows ``used`` (bool; None: all) of ``X`` in parts, for reductions over them
    without a copy of the design: each run of consecutive used rows as a slice (the rows a fit
    uses are whole epochs less their first window, a fold's training rows one or two runs;
    ``split_runs``: in slices of at most ``rows_per_block`` rows), or, where the rows are
    scattered in more than :data:`MAX_RUNS` runs, blocks of ``rows_per_block`` rows gathered
    by the mask."""
    T = X.shape[0]
    slices = used_row_slices(used, T, rows_per_block if split_runs else T)
    if slices is None:
        flags = np.asarray(used, bool)
        for start in range(0, T, rows_per_block):
            part = X[start:start + rows_per_block][flags[start:start + rows_per_block]]
            if part.shape[0]:
                yield part
        return
    for rows in slices:
        yield X[rows]


def used_row_slices(used: np.ndarray | None, n_rows: int, rows_per_slice: int
                    ) -> list[slice] | None:
    """The runs of consecutive rows ``used`` (bool; None: all ``n_rows``) as slices of at
    most ``rows_per_slice`` rows, or None where the rows are scattered in more than
    :data:`MAX_RUNS` runs."""
    flags = np.ones(n_rows, bool) if used is None else np.asarray(used, bool)
    edges = np.flatnonzero(np.diff(flags.view(np.int8), prepend=0, append=0))
    if len(edges) > 2 * MAX_RUNS:
        return None
    step = max(rows_per_slice, 1)
    return [slice(start, min(start + step, b))
            for a, b in zip(edges[::2].tolist(), edges[1::2].tolist())
            for start in range(a, b, step)]


def select_rows(row_weight: np.ndarray | None, always: bool = False) -> RowSelection | None:
    """The rows with positive ``row_weight`` to copy, or None where a copy would not pay: no
    weights, or at least :data:`COMPACT_ROWS_BELOW` of the rows used once padded (``always``:
    in any case)."""
    if row_weight is None:
        return None
    weight = np.asarray(row_weight)
    rows = np.flatnonzero(weight > 0)
    n = -(-len(rows) // COMPACT_ROW_MULTIPLE) * COMPACT_ROW_MULTIPLE
    if not always and n >= COMPACT_ROWS_BELOW * len(weight):
        return None
    return RowSelection(rows, n)


__all__ = ["COMPACT_ROWS_BELOW", "COMPACT_ROW_MULTIPLE", "MAX_RUNS", "RowSelection",
           "select_rows", "used_row_parts", "used_row_slices"]
