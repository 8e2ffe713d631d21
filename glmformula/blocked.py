"""Fits that never hold the whole design in memory: the design is built in blocks of time
(:func:`glmformula.graph.design.iter_blocks`, filter windows read across block edges) and the
solver accumulates likelihood, gradient and Hessians block by block
(:func:`glmformula.backend.solve_blocked`). Same answer as the in-memory fit.
"""

from __future__ import annotations

import attrs
import numpy as np

from . import backend
from .config import config
from .errors import FitError
from .graph.constraints import constraints_from_moments, term_moments
from .graph.design import Prepared, iter_blocks

#: Target size of one block of the design (bytes): large enough for efficient BLAS calls,
#: small against memory.
BLOCK_BYTES = 64 * 1024**2


def design_bytes(prepared: Prepared, dtype) -> int:
    """Bytes the whole stored design would take in memory."""
    return prepared.graph.grid.n_rows * max(prepared.plan.n_storage, 1) * np.dtype(dtype).itemsize


def auto_chunk_size(prepared: Prepared, dtype) -> int | None:
    """None (in memory) when the design fits in ``config.memory_limit``, else a block size."""
    if prepared.plan.n_storage == 0 or design_bytes(prepared, dtype) <= config.memory_limit:
        return None
    row_bytes = prepared.plan.n_storage * np.dtype(dtype).itemsize
    return max(1024, BLOCK_BYTES // row_bytes)


def check_fits_in_memory(prepared: Prepared, dtype) -> None:
    """Refuse up front (with the size and the options) a design too large to build whole."""
    need = design_bytes(prepared, dtype)
    if need > config.memory_limit:
        grid, plan = prepared.graph.grid, prepared.plan
        raise FitError(
            f"the design would need {need / 1024**3:.1f} GiB ({grid.n_rows} bins x "
            f"{plan.n_storage} columns, {np.dtype(dtype).name}), more than the memory limit "
            f"of {config.memory_limit / 1024**3:.1f} GiB (gf.config.memory_limit)",
            formula=str(prepared.formula),
            hint="fit it with gf.fit(..., chunk_size=100_000) (blocked: it never builds the "
                 "whole design), use dtype=\"float32\", fewer units or a larger bin_size")


def fit_blocked(prepared: Prepared, chunk_size: int, *, regularizer=None, solver="auto",
                dtype=None, tol=None, max_iter=None):
    """Fit ``prepared`` block by block (see module docstring); returns a FitResult."""
    from .fitting import _groups, _restore, _rotation
    from .results.fit_result import FitResult
    from .results.scores import poisson_log_likelihood

    plan, graph = prepared.plan, prepared.graph
    storage_dtype = np.float32 if str(dtype) == "float32" else np.float64
    if chunk_size < max(plan.lead, 1):
        raise FitError(f"chunk_size={chunk_size} bins is shorter than the longest filter "
                       f"window ({plan.lead} bins)", hint="use a larger chunk_size")
    shared = tuple(t.text for t in plan.terms if t.role == "shared")

    def blocks():
        return iter_blocks(prepared, chunk_size, dtype=storage_dtype)

    constraints = {}
    if prepared.formula.intercept and shared:
        constraints = constraints_from_moments(term_moments(blocks(), plan.term_storage, shared))
    rotation = _rotation(constraints, plan)
    mask = plan.column_mask()
    for text in constraints:
        mask[:, plan.term_storage[text].stop - 1] = False

    def rotated(block):
        X = block.storage
        for text, Q in constraints.items():
            columns = plan.term_storage[text]
            X[:, columns] = X[:, columns] @ Q
        return X

    def problems():
        for block in blocks():
            yield backend.Problem(X=rotated(block), y=block.counts, offset=block.offset,
                                  row_weight=block.valid.astype(float))

    options = {k: v for k, v in {"tol": tol, "max_iter": max_iter}.items() if v is not None}
    solution = backend.solve_blocked(problems, plan.n_storage, len(plan.unit_ids),
                                     column_mask=mask, column_groups=_groups(plan),
                                     regularizer=regularizer, solver=solver, dtype=dtype,
                                     **options)
    weights_rot = np.asarray(solution.weights, float)
    loglik = np.zeros(len(plan.unit_ids))
    valid = np.zeros(graph.grid.n_rows, dtype=bool)
    dropped = {"window": 0, "missing": 0}
    for block in blocks():
        X = rotated(block)
        eta = X @ weights_rot + solution.intercept
        if block.offset is not None:
            eta = eta + block.offset[:, None]
        loglik += poisson_log_likelihood(block.counts, np.exp(np.clip(eta, -700, 700)),
                                         block.valid.astype(float))
        valid[block.start:block.stop] = block.valid
    window_ok = graph.grid.row_in_epoch >= plan.lead
    dropped = {"window": int((~window_ok).sum()), "missing": int((window_ok & ~valid).sum())}
    P, U = weights_rot.shape
    # Standard errors need the Fisher information, one more pass over the blocks.
    fisher = blocked_fisher(problems, solution, mask, regularizer, _groups(plan))
    w, cov = _restore(weights_rot, fisher, constraints, plan)
    summary = _DesignSummary(prepared, valid, dropped)
    result = FitResult.from_fit(design=summary, weights=w, intercept=solution.intercept,
                                covariance=cov, solution=solution, log_likelihood=loglik,
                                row_weight=valid.astype(float), regularizer=regularizer,
                                constraints=constraints)
    return attrs.evolve(result, chunk_size=chunk_size)


def blocked_fisher(problems, solution, mask, regularizer, groups) -> np.ndarray:
    """(U, P+1, P+1) inverse Fisher information accumulated over blocks (intercept last)."""
    information = None
    total = 0.0
    for problem in problems():
        eta = problem.X @ solution.weights + solution.intercept
        if problem.offset is not None:
            eta = eta + (problem.offset if problem.offset.ndim == 2 else problem.offset[:, None])
        rate = np.exp(np.clip(eta, -700, 700)) * problem.row_weight[:, None]
        Xi = np.concatenate([problem.X, np.ones((problem.X.shape[0], 1))], axis=1)
        block = np.einsum("tp,tu,tq->upq", Xi, rate, Xi, optimize=True)
        information = block if information is None else information + block
        total += problem.row_weight.sum()
    U, n = information.shape[0], information.shape[1]
    m = np.concatenate([mask, np.ones((U, 1), bool)], axis=1)
    if regularizer is not None:
        from .backend.regularizers import resolve_penalty
        penalty = resolve_penalty(regularizer, groups, mask)
        l2 = np.concatenate([penalty.l2, np.zeros((1, U))]).T * total
        information = information + np.einsum("up,pq->upq", l2, np.eye(n))
    cov = np.zeros_like(information)
    for u in range(U):
        keep = np.flatnonzero(m[u])
        cov[u][np.ix_(keep, keep)] = np.linalg.pinv(information[u][np.ix_(keep, keep)],
                                                    hermitian=True)
    return cov


class _DesignSummary:
    """What :meth:`FitResult.from_fit` reads from a design, without the design itself."""

    def __init__(self, prepared: Prepared, valid: np.ndarray, dropped: dict):
        self.formula = prepared.formula
        self.plan = prepared.plan
        self.graph = prepared.graph
        self.grid = prepared.graph.grid
        self.valid = valid
        self.dropped = dropped
        self.counts = prepared.graph.counts(prepared.plan.response, prepared.plan.unit_ids)
