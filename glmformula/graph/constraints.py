"""Identifiability: sum-to-zero constraints for terms that span the constant.

With an intercept, a term whose columns can add up to a constant (a full one-hot, a
partition-of-unity spline basis) makes the model unidentifiable. As mgcv does, such a term is
constrained so that its contribution averages zero over the training rows: its k weights are
written ``w = Z v`` with ``Z`` (k, k-1) spanning the null space of the column means, and the
fit estimates ``v``. Tables still report all k weights ``w`` in the original basis.

The fit applies this as an orthogonal rotation of the term's columns, in place, with the last
rotated column masked out, and rotates back afterwards: no copy of the design is needed.
"""

from __future__ import annotations

import numpy as np

# A term spans the constant when the least-squares fit of a column of ones by its columns
# leaves a relative residual below this.
_SPAN_TOLERANCE = 1e-6


def spans_constant(columns: np.ndarray) -> bool:
    """Whether a column of ones lies in the column space of ``columns`` (rows x k)."""
    if columns.shape[1] == 0 or columns.shape[0] == 0:
        return False
    ones = np.ones(columns.shape[0])
    coef, *_ = np.linalg.lstsq(columns.astype(float), ones, rcond=None)
    residual = ones - columns @ coef
    return float(residual @ residual) < _SPAN_TOLERANCE * columns.shape[0]


def sum_to_zero_rotation(columns: np.ndarray) -> np.ndarray:
    """An orthogonal ``Q`` (k, k) whose first k-1 columns ``Z`` span the weights whose
    contribution has zero mean over the rows; the last column is the constant direction,
    whose weight is fixed at 0."""
    means = columns.mean(axis=0)
    q, _ = np.linalg.qr(means[:, None], mode="complete")
    return np.concatenate([q[:, 1:], q[:, :1]], axis=1)


def find_constraints(storage: np.ndarray, valid: np.ndarray, term_storage: dict,
                     shared_terms: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Term text -> rotation ``Q`` for every shared term spanning the constant (valid rows)."""
    rows = np.flatnonzero(valid)
    constraints = {}
    for text in shared_terms:
        block = term_storage[text]
        columns = storage[rows, block]
        if columns.shape[1] > 1 and spans_constant(columns):
            constraints[text] = sum_to_zero_rotation(columns)
    return constraints


def term_moments(blocks, term_storage: dict, terms: tuple[str, ...]) -> dict:
    """Per term: (Gram X'X, column sums X'1, row count) over the valid rows of all blocks."""
    moments = {}
    for block in blocks:
        rows = block.valid
        for text in terms:
            X = block.storage[rows][:, term_storage[text]].astype(float)
            gram, sums, n = moments.get(text, (0.0, 0.0, 0))
            moments[text] = (gram + X.T @ X, sums + X.sum(axis=0), n + X.shape[0])
    return moments


def constraints_from_moments(moments: dict) -> dict[str, np.ndarray]:
    """:func:`find_constraints` from accumulated moments (blocked designs).

    The squared residual of the least-squares fit of a column of ones is
    ``n - s' G^+ s`` with ``G = X'X`` and ``s = X'1``.
    """
    constraints = {}
    for text, (gram, sums, n) in moments.items():
        if np.ndim(gram) < 2 or gram.shape[0] < 2 or n == 0:
            continue
        residual = n - sums @ np.linalg.pinv(gram, hermitian=True) @ sums
        if residual < _SPAN_TOLERANCE * n:
            q, _ = np.linalg.qr((sums / n)[:, None], mode="complete")
            constraints[text] = np.concatenate([q[:, 1:], q[:, :1]], axis=1)
    return constraints
