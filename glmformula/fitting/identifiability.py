"""Identifiability: sum-to-zero constraints for terms that span the constant.

With an intercept, a term whose columns can add up to a constant (a full one-hot, a
partition-of-unity spline basis) makes the model unidentifiable. As mgcv does, such a term is
constrained so that its contribution averages zero over the training rows: its k weights are
written ``w = Z v`` with ``Z`` (k, k-1) spanning the null space of the column means, and the
fit estimates ``v``. Tables still report all k weights ``w`` in the original basis.

Whether a term spans the constant, and its column means, come from the term's moments over the
training rows (Gram matrix ``X'X``, column sums ``X'1``, row count), accumulated block by block:
the same for in-memory and blocked fits, and no least-squares solve over the rows. The fit
applies a constraint as an orthogonal rotation ``Q`` of the term's columns with the last
rotated column (the constant direction) masked out; weights are rotated back afterwards.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..backend import problem as pb
from ..graph.rows import Rows

#: A term spans the constant when the least-squares fit of a column of ones by its columns
#: leaves a squared residual below this fraction of the number of rows.
SPAN_TOLERANCE = 1e-6


def term_moments(rows: Rows, term_storage: dict, terms: tuple[str, ...]) -> dict:
    """Per term: (Gram ``X'X``, column sums ``X'1``, row count) over the used rows.

    The Gram matrix of the terms' columns is summed by the backend's compiled kernel in
    float64 (faster than numpy's ``X.T @ X`` on small multi-threaded BLAS pools; see
    docs/performance_decisions.md, 'Identifiability moments by the backend's kernel').
    """
    slices = {text: term_storage[text] for text in terms}
    totals: dict = {text: None for text in slices}
    size = None
    with jax.enable_x64(True):
        for block in rows():
            size = block.X.shape[0] if size is None else size
            padded = block.padded(size)
            rw = jnp.asarray((padded.row_weight > 0).astype(float))
            for text, sl in slices.items():
                # each term's own Gram (the blocks between terms are never needed); a term
                # that is every column is read in place
                columns = padded.X if (sl.start, sl.stop) == (0, padded.X.shape[1]) else \
                    np.ascontiguousarray(padded.X[:, sl])
                gram, _, _ = pb.compiled_call(pb.gram_sum, {},
                                              pb.to_device(columns, jnp.float64), rw)
                gram = np.asarray(gram)
                totals[text] = gram if totals[text] is None else totals[text] + gram
    return {text: (g[:-1, :-1], g[:-1, -1], int(round(g[-1, -1]))) for text, g in totals.items()}


def sum_to_zero_rotation(means: np.ndarray) -> np.ndarray:
    """An orthogonal ``Q`` (k, k) whose first k-1 columns span the weights whose contribution
    has zero mean (orthogonal to the column ``means``); the last column is the constant
    direction, whose weight is fixed at 0."""
    q, _ = np.linalg.qr(np.asarray(means, float)[:, None], mode="complete")
    return np.concatenate([q[:, 1:], q[:, :1]], axis=1)


def constraints_from_moments(moments: dict) -> dict[str, np.ndarray]:
    """Term text -> rotation ``Q`` for every term whose columns span the constant.

    The squared residual of the least-squares fit of a column of ones is ``n - s' G^+ s``
    with ``G = X'X`` and ``s = X'1``.
    """
    constraints = {}
    for text, (gram, sums, n) in moments.items():
        if np.ndim(gram) < 2 or gram.shape[0] < 2 or n == 0:
            continue
        residual = n - sums @ np.linalg.pinv(gram, hermitian=True) @ sums
        if residual < SPAN_TOLERANCE * n:
            constraints[text] = sum_to_zero_rotation(sums / n)
    return constraints


def find_constraints(rows: Rows, plan) -> dict[str, np.ndarray]:
    """The constraints of a design's shared terms (those every unit reads) over its rows."""
    shared = tuple(t.text for t in plan.terms if t.role == "shared")
    if not shared or plan.n_storage == 0:
        return {}
    return constraints_from_moments(term_moments(rows, plan.term_storage, shared))


def rotation(constraints: dict, term_storage: dict, n_columns: int) -> np.ndarray:
    """The orthogonal (P, P) map from fitted (rotated) weights to the original basis."""
    T = np.eye(n_columns)
    for text, Q in constraints.items():
        block = term_storage[text]
        T[block, block] = Q
    return T


def rotate_columns(X: np.ndarray, constraints: dict, term_storage: dict,
                   back: bool = False) -> np.ndarray:
    """Rotate each constrained term's columns of ``X`` in place (``X Q``; ``X Q'`` if
    ``back``) and return ``X``."""
    for text, Q in constraints.items():
        block = term_storage[text]
        X[:, block] = X[:, block] @ (Q.T if back else Q)
    return X


def mask_constant_directions(mask: np.ndarray, constraints: dict, term_storage: dict):
    """``mask`` (U, P) with the constant direction of every constrained term left out."""
    for text in constraints:
        mask[:, term_storage[text].stop - 1] = False
    return mask


__all__ = ["term_moments", "constraints_from_moments", "find_constraints", "rotation",
           "rotate_columns", "mask_constant_directions", "sum_to_zero_rotation",
           "SPAN_TOLERANCE"]
