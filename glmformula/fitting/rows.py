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


__all__ = ["COMPACT_ROWS_BELOW", "COMPACT_ROW_MULTIPLE", "RowSelection", "select_rows"]
