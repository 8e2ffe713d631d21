"""Fits that never hold the whole design in memory: the design is built in blocks of time
(:func:`glmformula.graph.design.iter_blocks`, filter windows read across block edges) and the
solver accumulates likelihood, gradient and Hessians block by block
(:func:`glmformula.backend.solve_blocked`). Same answer as the in-memory fit.
"""

from __future__ import annotations

import attrs
import numpy as np

from . import backend, information
from .config import config
from .errors import FitError
from .graph.constraints import constraints_from_moments
from .graph.design import Prepared, iter_blocks


def design_bytes(prepared: Prepared, dtype) -> int:
    """Bytes the whole stored design would take in memory."""
    return prepared.graph.grid.n_rows * max(prepared.plan.n_storage, 1) * np.dtype(dtype).itemsize


def auto_chunk_size(prepared: Prepared, dtype) -> int | None:
    """None (in memory) when the design fits in ``config.memory_limit``, else a block size."""
    if prepared.plan.n_storage == 0 or design_bytes(prepared, dtype) <= config.memory_limit:
        return None
    return information.block_rows(prepared.plan.n_storage, np.dtype(dtype).itemsize)


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
    from .fitting import _groups, _rotation, column_range_error
    from .results.fit_result import FitResult

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
        constraints = constraints_from_moments(_term_moments(blocks(), plan.term_storage,
                                                             shared))
    mask = plan.column_mask()
    for text in constraints:
        mask[:, plan.term_storage[text].stop - 1] = False

    def rotated(block):
        X = block.storage
        for text, Q in constraints.items():
            columns = plan.term_storage[text]
            X[:, columns] = X[:, columns] @ Q
        return X

    def with_blocks():
        for block in blocks():
            yield backend.Problem(X=rotated(block), y=block.counts, offset=block.offset,
                                  row_weight=block.valid.astype(float)), block

    def problems():
        return (problem for problem, _ in with_blocks())

    options = {k: v for k, v in {"tol": tol, "max_iter": max_iter}.items() if v is not None}
    try:
        solution = backend.solve_blocked(problems, plan.n_storage, len(plan.unit_ids),
                                         column_mask=mask, column_groups=_groups(plan),
                                         regularizer=regularizer, solver=solver, dtype=dtype,
                                         **options)
    except backend.ColumnRangeError as err:
        raise column_range_error(err, plan, prepared.formula) from None
    # One pass for the log-likelihood (and which rows were valid); the covariance is computed
    # in another when cheap, else on first use (glmformula.information).
    rows = information.rows_rebuilt(prepared, chunk_size, storage_dtype, constraints)
    valid = np.zeros(graph.grid.n_rows, dtype=bool)

    def rows_noting_valid():
        for block in rows():
            valid[block.start:block.start + len(block.X)] = block.row_weight > 0
            yield block

    loglik = information.log_likelihood(rows_noting_valid, solution.weights,
                                        solution.intercept, solution.dtype)
    mask[:, list(solution.excluded_columns)] = False
    source = information.covariance_source(
        rows, solution.weights, solution.intercept, mask, regularizer, _groups(plan),
        solution.dtype, constraints, plan.term_storage)
    cov = information.covariance_stack(source, source, int(valid.sum()))
    window_ok = graph.grid.row_in_epoch >= plan.lead
    dropped = {"window": int((~window_ok).sum()), "missing": int((window_ok & ~valid).sum())}
    w = _rotation(constraints, plan) @ np.asarray(solution.weights, float)
    summary = _DesignSummary(prepared, valid, dropped)
    result = FitResult.from_fit(design=summary, weights=w, intercept=solution.intercept,
                                covariance=cov, solution=solution, log_likelihood=loglik,
                                row_weight=valid.astype(float), regularizer=regularizer,
                                constraints=constraints)
    return attrs.evolve(result, chunk_size=chunk_size)


def _term_moments(blocks, term_storage: dict, terms: tuple[str, ...]) -> dict:
    """Per term: (Gram X'X, column sums X'1, row count) over the valid rows of all blocks
    (as :func:`glmformula.graph.constraints.term_moments`).

    The Gram matrix of the terms' columns is summed by the backend's kernel (XLA) in float64:
    numpy's ``X.T @ X`` (OpenBLAS syrk, 2 threads) took 1-2 s per block of 84k rows x 40
    columns on a loaded 2-core machine, 20-70x the time of the same product in XLA.
    """
    import jax
    import jax.numpy as jnp

    from .backend import problem as pb

    slices = {text: term_storage[text] for text in terms}
    columns = np.concatenate([np.arange(sl.start, sl.stop) for sl in slices.values()])
    total, rows = None, None
    with jax.enable_x64(True):
        for block in blocks:
            X = np.ascontiguousarray(block.storage[:, columns], dtype=float)
            rw = block.valid.astype(float)
            rows = X.shape[0] if rows is None else rows
            if X.shape[0] < rows:  # pad to the first block's shape: compile once
                pad = rows - X.shape[0]
                X = np.concatenate([X, np.zeros((pad, X.shape[1]))])
                rw = np.concatenate([rw, np.zeros(pad)])
            gram, _, _ = pb.compiled_call(pb.gram_sum, {}, jnp.asarray(X), jnp.asarray(rw))
            gram = np.asarray(gram)
            total = gram if total is None else total + gram
    moments, start = {}, 0
    for text, sl in slices.items():
        k = sl.stop - sl.start
        part = slice(start, start + k)
        moments[text] = (total[part, part], total[part, -1], int(round(total[-1, -1])))
        start += k
    return moments


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
