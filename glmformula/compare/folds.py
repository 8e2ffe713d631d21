"""Cross-validation folds: contiguous blocks of time, never shuffled bins.

Shuffled bins would put a bin's neighbours (correlated through slow covariates and spike
history) in the training set and flatter every model. Folds are contiguous runs of the rows
used, of near-equal size, in time order; they follow the epochs (a fold may span an epoch
border, but each row keeps its own epoch's features).
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError


def contiguous_folds(valid: np.ndarray, n_folds: int) -> list[np.ndarray]:
    """Boolean test masks (over grid rows) of ``n_folds`` contiguous blocks of valid rows."""
    if not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
        raise DataError(f"cv must be a whole number of folds >= 2, got {n_folds!r}",
                        hint="e.g. cv=5")
    rows = np.flatnonzero(valid)
    if len(rows) < 10 * n_folds:
        raise DataError(f"only {len(rows)} rows for {n_folds} folds: the data are too short",
                        hint="use fewer folds, a smaller bin_size or more data")
    masks = []
    for block in np.array_split(rows, n_folds):
        mask = np.zeros(len(valid), dtype=bool)
        mask[block] = True
        masks.append(mask)
    return masks
