"""Cold starts from tuning curves: where a Newton fit begins when nothing better is known.

A term whose columns are a partition of unity (non-negative, each row summing to one: the
B-spline and cyclic bases, a full one-hot) turns its weights into a smooth log tuning curve.
Its empirical tuning curve, spikes over expected spikes under each basis function, is a
close start for those weights: ``w_k = log((X_k' y + a) / (X_k' mu + a))`` with ``mu`` the
rate predicted so far and ``a`` half a spike (a basis function under which a unit never fires
starts finite, as a zero count's log would not). For a one-hot term this is the maximum
likelihood answer of that term alone; for a spline basis, which overlaps its neighbours, it is
close to it. Terms are taken in order, each against the rate of those before it (one sweep of
iterative proportional fitting, which adjusts a second correlated covariate for the first
instead of counting their shared part twice); every other weight starts at 0.

Why: Newton's steps towards a direction of a tuning curve with almost no spikes are about one
nat long, so the sharp head-direction cells of the real recording took up to 14 iterations
from zero weights. From this start the head-direction model took 5.1 Newton iterations per
cell on average instead of 8.1 and the history model 7.0 instead of 9.3, at the same optimum
(docs/performance_decisions.md, 'Cold starts from tuning curves'). L-BFGS is not started here:
its first preconditioner is the Fisher information at the start, which at a constant rate is the
design's Gram matrix shared by all units; from this start the real coupled model took 24.6
iterations per cell instead of 20.6.
"""

from __future__ import annotations

import numpy as np

from .rows import used_row_parts

#: Spikes added to each basis function's observed and expected counts (a zero count's log
#: is -inf).
PSEUDO_SPIKES = 0.5

#: How far a row's sum may stray from one, and a value below zero (float32 storage rounds
#: splines at ~1e-7; a fit's rotation of the columns and back leaves ~1e-16).
ROUNDING_TOLERANCE = 1e-4


def tuning_curve_start(X: np.ndarray, counts: np.ndarray, offset: np.ndarray | None,
                       used: np.ndarray, constraints: dict, term_storage: dict,
                       rows_per_block: int = 16384):
    """Weights (P, U) and intercepts (U,) in the original basis for a cold Newton start, or
    None where no term qualifies.

    Parameters
    ----------
    X : ndarray (T, P)
        The stored design (columns in the original basis).
    counts : ndarray (T, U)
        Spike counts per bin.
    offset : ndarray (T,) or (T, U), optional
        Log exposure per bin (added to the linear predictor).
    used : ndarray (T,) bool
        The rows fitted.
    constraints : dict
        Term text -> its sum-to-zero rotation (:func:`.identifiability.find_constraints`):
        the terms that span the constant, the only candidates.
    term_storage : dict
        Term text -> slice of the stored columns.
    rows_per_block : int
        Rows read at a time where the used rows are scattered (:func:`.rows.used_row_parts`).

    Returns
    -------
    (weights, intercepts) or None
        Each qualifying term's weights centred so that its contribution averages zero over
        the used rows (the constraint's own parametrisation, so the rotation keeps them
        exactly), the intercepts absorbing the centring.

    Notes
    -----
    The rows are read in place, run by run (no copy of the counts or the design: a fresh
    (226k, 32) float64 array cost 0.5-0.8 s of page faults on the 2-core machine).
    """
    used = np.asarray(used, bool)
    if not constraints or not used.any():
        return None
    # parts of at most rows_per_block rows: their float64 copies stay small
    parts = lambda *arrays: zip(*(used_row_parts(a, used, rows_per_block, split_runs=True)
                                  for a in arrays))
    spikes = np.zeros(counts.shape[1])
    exposure = np.zeros(1 if offset is None or np.ndim(offset) == 1 else offset.shape[1])
    for (y,) in parts(counts):
        spikes += np.add.reduce(y, axis=0, dtype=np.float64)
    if offset is None:
        exposure[:] = np.count_nonzero(used)
    else:
        for (o,) in parts(offset):
            exposure += np.exp(np.asarray(o, float)).reshape(len(o), -1).sum(axis=0)
    rate = spikes / np.maximum(exposure, 1e-300)
    log_rate = np.log(np.where(rate > 0, rate, 1.0))
    W = np.zeros((X.shape[1], counts.shape[1]))
    intercept = log_rate.copy()
    taken: list = []  # (columns, weights before centring) of the terms taken so far
    for text in constraints:
        columns = term_storage[text]
        found = _term_sums(parts, X, counts, offset, columns, taken, log_rate)
        if found is None:
            continue
        observed, expected, means = found
        w = np.log((observed + PSEUDO_SPIKES) / (expected + PSEUDO_SPIKES))
        w[:, rate == 0] = 0.0
        # centred as the constraint parametrises the term (column means . w = 0); a
        # partition of unity's column means add up to one, so the shift is a constant
        shift = means @ w
        W[columns] = w - shift
        intercept = intercept + shift
        taken.append((columns, w))
    return None if not taken else (W, intercept)


def _term_sums(parts, X, counts, offset, columns: slice, taken: list, log_rate: np.ndarray):
    """One pass over the used rows for a term's columns ``B``: observed spikes ``B' y``
    (k, U), expected spikes ``B' mu`` under the terms ``taken`` before it (k, U) and column
    means (k,); None where the columns are not a partition of unity."""
    k = columns.stop - columns.start
    observed = np.zeros((k, counts.shape[1]))
    expected = np.zeros((k, counts.shape[1]))
    sums, n = np.zeros(k), 0
    arrays = (X, counts) if offset is None else (X, counts, offset)
    for part in parts(*arrays):
        rows, y = np.asarray(part[0], float), np.asarray(part[1], float)
        basis = rows[:, columns]
        if not _partition_of_unity(basis):
            return None
        observed += basis.T @ y
        if not taken and offset is None:  # a constant rate
            expected += np.outer(basis.sum(axis=0), np.exp(log_rate))
        else:
            log_mu = log_rate + sum(rows[:, c] @ w for c, w in taken)
            if offset is not None:
                log_mu = log_mu + np.asarray(part[2], float).reshape(len(y), -1)
            expected += basis.T @ np.exp(np.broadcast_to(log_mu, y.shape))
        sums += basis.sum(axis=0)
        n += len(y)
    return observed, expected, sums / max(n, 1)


def _partition_of_unity(basis: np.ndarray) -> bool:
    """Whether every value is >= 0 and every row sums to one (within
    :data:`ROUNDING_TOLERANCE`)."""
    return bool(basis.size and basis.min() >= -ROUNDING_TOLERANCE
                and np.max(np.abs(basis.sum(axis=1) - 1.0)) <= ROUNDING_TOLERANCE)


__all__ = ["tuning_curve_start", "PSEUDO_SPIKES", "ROUNDING_TOLERANCE"]
