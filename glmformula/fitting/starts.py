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
(docs/performance_decisions.md, 'Cold starts from tuning curves'). In-memory and blocked
fits compute the same start. REML's search (``smoothing="auto"``) keeps its own cold start
(see :func:`glmformula.fitting.engine.fit_design`). L-BFGS is not started here:
its first preconditioner is the Fisher information at the start, which at a constant rate is the
design's Gram matrix shared by all units; from this start the real coupled model took 24.6
iterations per cell instead of 20.6.
"""

from __future__ import annotations

import numpy as np

from .._blas import one_blas_thread
from ..graph.rows import Rows

#: Spikes added to each basis function's observed and expected counts (a zero count's log
#: is -inf).
PSEUDO_SPIKES = 0.5

#: How far a row's sum may stray from one, and a value below zero (float32 storage rounds
#: splines at ~1e-7; a fit's rotation of the columns and back leaves ~1e-16).
ROUNDING_TOLERANCE = 1e-4


def tuning_curve_start(rows: Rows, constraints: dict, term_storage: dict):
    """Weights (P, U) and intercepts (U,) in the original basis for a cold Newton start, or
    None where no term qualifies.

    Parameters
    ----------
    rows : Rows
        The design's rows, block by block (:mod:`glmformula.graph.rows`: in memory or
        rebuilt), columns in the original basis; rows of weight 0 are left out.
    constraints : dict
        Term text -> its sum-to-zero rotation (:func:`.identifiability.find_constraints`):
        the terms that span the constant, the only candidates.
    term_storage : dict
        Term text -> slice of the stored columns.

    Returns
    -------
    (weights, intercepts) or None
        Each qualifying term's weights centred so that its contribution averages zero over
        the used rows (the constraint's own parametrisation, so the rotation keeps them
        exactly), the intercepts absorbing the centring.

    Notes
    -----
    One pass over the rows per candidate term; the first also counts the spikes and the
    exposure. Only the used rows of a block's term columns and counts are copied (a fresh
    copy of all the counts, 226k x 32 in float64, cost 0.5-0.8 s of page faults on the
    2-core machine).
    """
    W = None
    intercept = log_rate = None
    taken: list = []  # (columns, weights before centring) of the terms taken so far
    for text in constraints:
        columns = term_storage[text]
        found = _term_sums(rows, columns, taken, log_rate)
        if found is None:
            return None  # no rows
        observed, expected, means, partition, totals = found
        if log_rate is None:  # the first pass: expected holds B' exposure
            spikes, exposure, n_cols = totals
            rate = spikes / np.maximum(exposure, 1e-300)
            log_rate = np.log(np.where(rate > 0, rate, 1.0))
            intercept = log_rate.copy()
            expected = expected * rate
            W = np.zeros((n_cols, len(rate)))
        if not partition:
            continue
        w = np.log((observed + PSEUDO_SPIKES) / (expected + PSEUDO_SPIKES))
        w[:, rate == 0] = 0.0
        # centred as the constraint parametrises the term (column means . w = 0); a
        # partition of unity's column means add up to one, so the shift is a constant
        shift = means @ w
        W[columns] = w - shift
        intercept = intercept + shift
        taken.append((columns, w))
    return None if not taken else (W, intercept)


def _term_sums(rows: Rows, columns: slice, taken: list, log_rate: np.ndarray | None):
    """One pass over the used rows for a term's columns ``B``.

    Returns None where no row is used, else: observed spikes ``B' y`` (k, U); expected
    spikes ``B' mu`` (k, U) under the terms ``taken`` before it, or, on the first pass
    (``log_rate`` None), ``B' exposure`` (k, 1 or U); column means (k,); whether ``B`` is a
    partition of unity; and (spikes (U,), exposure (1 or U,), number of columns) of the first
    pass (None after).
    """
    observed = expected = None
    sums, n, partition = 0.0, 0, True
    spikes = exposure = 0.0
    n_cols = None
    with one_blas_thread():
        for block in rows():
            used = block.row_weight > 0
            if not used.any():
                continue
            n_cols = block.X.shape[1]
            every = bool(used.all())
            pick = (lambda a: a) if every else (lambda a: a[used])
            y = np.asarray(pick(block.counts), float)
            basis = np.asarray(pick(block.X[:, columns]), float)
            offset = None if block.offset is None else np.asarray(pick(block.offset), float)
            partition = partition and _partition_of_unity(basis)
            log_exposure = 0.0 if offset is None else offset.reshape(len(y), -1)
            column_sums = basis.sum(axis=0)
            if log_rate is None:
                spikes = spikes + np.add.reduce(y, axis=0)
                if offset is None:  # the exposure is the row count
                    exposure = exposure + len(y)
                    part_expected = column_sums[:, None]
                else:
                    exposed = np.exp(log_exposure)
                    exposure = exposure + exposed.sum(axis=0)
                    part_expected = basis.T @ exposed
            else:
                log_mu = log_rate + log_exposure + sum(
                    np.asarray(pick(block.X[:, c]), float) @ w for c, w in taken)
                part_expected = basis.T @ np.exp(np.broadcast_to(log_mu, y.shape))
            part_observed = basis.T @ y
            observed = part_observed if observed is None else observed + part_observed
            expected = part_expected if expected is None else expected + part_expected
            sums = sums + column_sums
            n += len(y)
    if n == 0:
        return None
    totals = (np.atleast_1d(spikes), np.atleast_1d(exposure), n_cols) if log_rate is None \
        else None
    return observed, expected, sums / n, partition, totals


def _partition_of_unity(basis: np.ndarray) -> bool:
    """Whether every value is >= 0 and every row sums to one (within
    :data:`ROUNDING_TOLERANCE`)."""
    return bool(basis.size and basis.min() >= -ROUNDING_TOLERANCE
                and np.max(np.abs(basis.sum(axis=1) - 1.0)) <= ROUNDING_TOLERANCE)


__all__ = ["tuning_curve_start", "PSEUDO_SPIKES", "ROUNDING_TOLERANCE"]
