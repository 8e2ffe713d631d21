"""Identifiability: sum-to-zero constraints for terms that span the constant.

With an intercept, a term whose columns can add up to a constant (a full one-hot, a
partition-of-unity spline basis) makes the model unidentifiable. As mgcv does, such a term is
constrained so that its contribution averages zero over the training rows: its k weights are
written ``w = Z v`` with ``Z`` (k, k-1) spanning the null space of the column means, and the
fit estimates ``v``. Tables still report all k weights ``w`` in the original basis.

Whether a term spans the constant, and its column means, come from the term's moments over the
training rows (Gram matrix ``X'X``, column sums ``X'1``, row count), accumulated block by block:
the same for in-memory and blocked fits, and no least-squares solve over the rows. Most terms
never need them: on a sample of the first block's rows a term that clearly does not span the
constant is ruled out (:func:`screen_terms`). The fit applies a constraint as an orthogonal
rotation ``Q`` of the term's columns with the last rotated column (the constant direction)
masked out; weights are rotated back afterwards.
"""

from __future__ import annotations

import numpy as np

from .._blas import one_blas_thread
from ..backend.problem import columns_first
from ..graph.rows import Rows

#: A term spans the constant when the least-squares fit of a column of ones by its columns
#: leaves a squared residual below this fraction of the number of rows.
SPAN_TOLERANCE = 1e-6

#: Rows of the first block (evenly spaced among those used) on which :func:`screen_terms`
#: fits the column of ones.
SCREEN_ROWS = 1024


def term_moments(rows: Rows, term_storage: dict, terms: tuple[str, ...]) -> dict:
    """Per term: (Gram ``X'X``, column sums ``X'1``, row count) over the used rows, float64."""
    moments, _, _ = _moments_pass(rows, {text: term_storage[text] for text in terms})
    return moments


def _moments_pass(rows: Rows, slices: dict, screen: bool = False):
    """One pass over ``rows``: the moments of the terms in ``slices`` (text -> slice of
    columns); with ``screen``, those of the terms :func:`screen_terms` keeps on the first
    block.

    Products run in numpy with BLAS held to one thread: multithreaded OpenBLAS took 1-2 s
    for a block's Gram matrix on the loaded 2-core machine; one thread takes 8 ms for 1e5
    rows x 50 columns (the backend's compiled kernel, which it replaces, took 21-36 ms and
    needed every block padded to one shape; see docs/performance_decisions.md,
    'Identifiability moments with BLAS on one thread').

    Returns
    -------
    moments : dict
        Term text -> (Gram (k, k), sums (k,), row count) of the terms not screened out.
    screened : dict
        Term text -> squared residual of its sample fit, for the terms screened out.
    n : int
        Rows used.
    """
    totals: dict = {}
    screened: dict = {}
    n = 0
    with one_blas_thread():
        for i, block in enumerate(rows()):
            used = block.row_weight > 0
            if i == 0:
                screened = screen_terms(block.X, used, slices) if screen else {}
                totals = {text: None for text in slices if text not in screened}
            n_block = int(np.count_nonzero(used))
            n += n_block
            if n_block == 0:
                continue
            everything = n_block == len(used)
            for text in totals:
                columns = block.X[:, slices[text]]  # a view; the rows used copied if not all
                columns = np.asarray(columns if everything else columns[used], np.float64)
                gram, sums = columns.T @ columns, np.ones(n_block) @ columns
                totals[text] = (gram, sums) if totals[text] is None else \
                    (totals[text][0] + gram, totals[text][1] + sums)
    moments = {text: (t[0], t[1], n) for text, t in totals.items() if t is not None}
    return moments, screened, n


def _squared_residual(gram: np.ndarray, sums: np.ndarray, n: int) -> float:
    """``n - s' G^+ s``: the squared residual of the least-squares fit of a column of ones
    by columns with Gram matrix ``G`` and column sums ``s`` over ``n`` rows (BLAS on one
    thread: on two, a 50 x 50 ``eigh`` took 18 ms under load instead of 0.2 ms)."""
    with one_blas_thread():
        return float(n - sums @ np.linalg.pinv(gram, hermitian=True) @ sums)


def screen_terms(X: np.ndarray, used: np.ndarray, slices: dict) -> dict:
    """The terms that do not span the constant on a sample of rows of ``X``: text -> squared
    residual of the least-squares fit of a column of ones by the term's columns over
    :data:`SCREEN_ROWS` evenly spaced ``used`` rows, for the terms where it is at least
    :data:`SPAN_TOLERANCE` times the rows of ``X``.

    Over a subset of the rows that residual is at most what it is over all rows, so such a
    term leaves at least the tolerance's share of all rows unexplained whenever the rows
    used in all are not more than those of ``X`` (:func:`find_constraints` checks it once
    their count is known). The fit is by SVD (``lstsq``): it truncates singular values, not
    their squares as the pseudo-inverse of a Gram matrix does, so what it rules out the
    moments over all rows rule out too.
    """
    index = np.flatnonzero(used)
    if len(index) > SCREEN_ROWS:
        index = index[np.linspace(0, len(index) - 1, SCREEN_ROWS).round().astype(np.int64)]
    ones = np.ones(len(index))
    screened = {}
    with one_blas_thread():
        for text, sl in slices.items():
            sample = np.asarray(X[index, sl], np.float64)
            if sample.size == 0:
                continue
            weights = np.linalg.lstsq(sample, ones, rcond=None)[0]
            residual = ones - sample @ weights
            squared = float(residual @ residual)
            if squared >= SPAN_TOLERANCE * X.shape[0]:
                screened[text] = squared
    return screened


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
        if _squared_residual(gram, sums, n) < SPAN_TOLERANCE * n:
            constraints[text] = sum_to_zero_rotation(sums / n)
    return constraints


def find_constraints(rows: Rows, plan) -> dict[str, np.ndarray]:
    """The constraints of a design's shared terms (those every unit reads) over its rows.

    One pass: terms of one column are left out, as :func:`constraints_from_moments` leaves
    them (constrained, they would keep no weight), and terms screened out on the first block
    (:func:`screen_terms`) need no moments; a term screened out whose sample
    residual turns out below the tolerance of all the rows used (more rows than the first
    block's: a long blocked fit) gets its moments in a second pass.
    """
    shared = tuple(t.text for t in plan.terms if t.role == "shared")
    if not shared or plan.n_storage == 0:
        return {}
    slices = {text: plan.term_storage[text] for text in shared
              if plan.term_storage[text].stop - plan.term_storage[text].start >= 2}
    if not slices:
        return {}
    moments, screened, n = _moments_pass(rows, slices, screen=True)
    late = tuple(text for text, squared in screened.items() if squared < SPAN_TOLERANCE * n)
    if late:
        moments.update(term_moments(rows, plan.term_storage, late))
    return constraints_from_moments({text: moments[text] for text in slices if text in moments})


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
    ``back``) and return ``X``.

    A block of :data:`ROTATION_ROWS` rows at a time: the product of all rows at once copies
    the term's strided columns out and back through memory (real head-direction design,
    226k x 268, a 12-column term: 66 ms in the fit against 14-20 ms in blocks). A design laid
    out columns first is rotated as its transpose (``Q' X'``: the term's columns are rows of
    it)."""
    transposed = columns_first(X)
    for text, Q in constraints.items():
        block = term_storage[text]
        M = Q.T if back else Q
        for start in range(0, X.shape[0], ROTATION_ROWS):
            rows = slice(start, start + ROTATION_ROWS)
            if transposed:
                X.T[block, rows] = M.T @ X.T[block, rows]
            else:
                X[rows, block] = X[rows, block] @ M
    return X


#: Rows per block of :func:`rotate_columns` (a 12-column term's block: 96 kB).
ROTATION_ROWS = 1024


def mask_constant_directions(mask: np.ndarray, constraints: dict, term_storage: dict):
    """``mask`` (U, P) with the constant direction of every constrained term left out."""
    for text in constraints:
        mask[:, term_storage[text].stop - 1] = False
    return mask


__all__ = ["term_moments", "constraints_from_moments", "find_constraints", "screen_terms",
           "rotation", "rotate_columns", "mask_constant_directions", "sum_to_zero_rotation",
           "SPAN_TOLERANCE", "SCREEN_ROWS"]
