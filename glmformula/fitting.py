"""``gf.fit``: formula + data -> design -> Poisson GLM solve -> :class:`FitResult`.

The steps: bind and build the design (:mod:`glmformula.graph.design`), reparametrise terms
that span the constant (:mod:`glmformula.graph.constraints`), solve all units at once
(:mod:`glmformula.backend`), map weights and covariances back to the original basis and wrap
them in a :class:`~glmformula.results.FitResult`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import attrs
import numpy as np

from . import backend, blocked, information, sharding
from .backend.solve import MAX_COLUMN_MAGNITUDE
from .errors import FitError, FormulaError
from .graph.constraints import find_constraints
from .graph.design import DesignMatrix, Prepared, build, prepare
from .results.covariance import CovarianceStack
from .results.fit_result import FitResult
from .results.scores import poisson_log_likelihood


def fit(formula, data: Mapping, *, bin_size, epochs=None, regularizer=None, solver="auto",
        dtype=None, tol: float | None = None, max_iter: int | None = None,
        chunk_size: int | None = None) -> FitResult:
    """Fit a Poisson GLM (rate = exp(X w + b)) for every unit of the formula's response.

    Parameters
    ----------
    formula : str or Formula
        e.g. ``"spikes ~ cyclic(hd, 12) + history(8, log, window=100ms)"``.
    data : mapping
        Names -> pynapple objects.
    bin_size : float or str
        Seconds, or a quantity such as ``"10ms"``.
    epochs : IntervalSet or str, optional
        Epochs to fit (default: intersection of the time supports of what the formula uses).
    regularizer : Ridge, Lasso, ElasticNet, GroupLasso or None
        Penalty on the weights (never on the intercept). Groups are the formula's terms.
    solver : str
        ``"auto"`` (chosen from the problem's size), ``"newton"``, ``"lbfgs"`` or
        ``"proximal"``. The choice is reported as ``result.solver``.
    dtype : str, optional
        ``"float64"`` (default on CPU) or ``"float32"`` (default on GPU).
    chunk_size : int, optional
        Bins per block for a blocked fit, which never holds the whole design in memory (the
        design is built block by block and the solver accumulates over blocks). Default:
        in memory when the design fits in ``gf.config.memory_limit``, else blocked. The choice
        is reported as ``result.chunk_size`` (None: in memory).

    Returns
    -------
    FitResult
    """
    prepared = prepare(formula, data, bin_size=bin_size, epochs=epochs)
    storage_dtype = np.dtype(_storage_dtype(dtype))
    if chunk_size is None:
        chunk_size = blocked.auto_chunk_size(prepared, storage_dtype)
    if chunk_size:
        return blocked.fit_blocked(prepared, int(chunk_size), regularizer=regularizer,
                                   solver=solver, dtype=dtype, tol=tol, max_iter=max_iter)
    design = build(prepared, dtype=storage_dtype)
    return fit_design(design, regularizer=regularizer, solver=solver, dtype=dtype, tol=tol,
                      max_iter=max_iter)


def _storage_dtype(dtype) -> str:
    return "float32" if str(dtype) == "float32" else "float64"


def fit_design(design: DesignMatrix, *, regularizer=None, solver="auto", dtype=None,
               tol=None, max_iter=None, row_weight: np.ndarray | None = None,
               init=None, covariance: bool = True) -> FitResult:
    """Fit an already built design (used by cross-validation: ``row_weight`` selects rows;
    ``covariance=False`` skips the Fisher information where no standard errors are needed)."""
    plan = design.plan
    if not design.formula.intercept:
        raise FitError("fits without an intercept are not supported yet",
                       formula=str(design.formula),
                       hint="keep the intercept (remove '- 1' / '0 +'); design_matrix() builds "
                            "intercept-free designs")
    shared = tuple(t.text for t in plan.terms if t.role == "shared")
    constraints = find_constraints(design.storage, design.valid, plan.term_storage, shared) \
        if design.formula.intercept else {}
    weights = design.valid.astype(design.storage.dtype) if row_weight is None else \
        (design.valid & (row_weight > 0)).astype(design.storage.dtype)
    options = {k: v for k, v in {"tol": tol, "max_iter": max_iter}.items() if v is not None}
    if isinstance(init, FitResult):  # warm start from another fit of the same design
        init = (_rotation(constraints, plan).T @ init.weights, init.intercepts)
    if plan.n_storage == 0:
        return _fit_mean_rate(design, weights, regularizer)
    with _rotated(design, constraints) as (X, mask):
        problem = backend.Problem(X=X, y=design.counts, column_mask=mask, offset=design.offset,
                                  row_weight=weights, column_groups=_groups(plan))
        try:
            solution = sharding.solve_on_devices(problem, regularizer=regularizer,
                                                 solver=solver, dtype=dtype, init=init,
                                                 **options)
        except FormulaError:
            raise
        except backend.ColumnRangeError as err:
            raise column_range_error(err, plan, design.formula) from None
        except (ValueError, TypeError) as err:
            raise FitError(f"the fit could not run: {err}",
                           hint="check the regularizer and solver options") from None
        rows = information.rows_in_memory(problem.X, design.counts, design.offset, weights)
        loglik = information.log_likelihood(rows, solution.weights, solution.intercept,
                                            solution.dtype)
        mask[:, list(solution.excluded_columns)] = False
        P, U = solution.weights.shape
        if covariance:
            now = information.covariance_source(
                rows, solution.weights, solution.intercept, mask, regularizer, _groups(plan),
                solution.dtype, constraints, plan.term_storage)
            # computed later, from rebuilt blocks: the result does not keep the design alive
            rebuilt = information.rows_rebuilt(
                Prepared(design.formula, design.graph, plan),
                information.block_rows(P, design.storage.dtype.itemsize),
                design.storage.dtype, constraints, weights)
            later = attrs.evolve(now, rows=rebuilt)
            cov = information.covariance_stack(now, later, design.n_rows)
        else:
            cov = CovarianceStack.not_computed(
                U, P, "this fit was made without standard errors (covariance=False)")
    w = _rotation(constraints, plan) @ np.asarray(solution.weights, float)
    return FitResult.from_fit(design=design, weights=w, intercept=solution.intercept,
                              covariance=cov, solution=solution, log_likelihood=loglik,
                              row_weight=weights, regularizer=regularizer,
                              constraints=constraints)


def column_range_error(err, plan, formula) -> FitError:
    """The backend's refusal of huge columns, in terms of the design's column names."""
    names = [plan.storage_columns[j] for j in err.columns[:5]]
    return FitError(f"design column(s) {', '.join(repr(n) for n in names)} reach "
                    f"{err.largest:.3g} in absolute value, more than the "
                    f"{MAX_COLUMN_MAGNITUDE:.0e} a fit can use "
                    "(the solver sums squares of columns over rows)", formula=str(formula),
                    hint="rescale the covariate (e.g. scale(x), or other units)")


def _fit_mean_rate(design: DesignMatrix, weights: np.ndarray, regularizer) -> FitResult:
    """``spikes ~ 1``: the maximum-likelihood intercept is closed-form, log(total count /
    total exposure), with variance 1 / total expected count."""
    counts = design.counts.astype(float)
    exposure = np.exp(design.offset) if design.offset is not None else 1.0
    total = weights @ counts
    base = weights @ (np.ones(len(weights)) * exposure)
    with np.errstate(divide="ignore"):
        intercept = np.log(total / base)
    intercept = np.where(np.isfinite(intercept), intercept, np.log(1e-12))
    U = counts.shape[1]
    covariance = (1.0 / np.maximum(total, 1e-12)).reshape(U, 1, 1)
    expected = np.exp(intercept)[None, :] * (exposure if np.ndim(exposure) == 0
                                             else exposure[:, None])
    solution = backend.Solution(
        weights=np.zeros((0, U)), intercept=intercept, converged=np.ones(U, bool),
        n_iter=np.zeros(U, int), grad_norm=np.zeros(U), objective=np.zeros(U),
        criterion=np.zeros(U), solver="closed-form", dtype="float64", compile_seconds=0.0,
        solve_seconds=0.0)
    loglik = poisson_log_likelihood(counts, np.broadcast_to(expected, counts.shape), weights)
    return FitResult.from_fit(design=design, weights=np.zeros((0, U)), intercept=intercept,
                              covariance=covariance, solution=solution, log_likelihood=loglik,
                              row_weight=weights, regularizer=regularizer, constraints={})


def _groups(plan) -> tuple[str, ...]:
    groups = [""] * plan.n_storage
    for text, block in plan.term_storage.items():
        for j in range(block.start, block.stop):
            groups[j] = groups[j] or text
    return tuple(groups)


@contextlib.contextmanager
def _rotated(design: DesignMatrix, constraints: dict):
    """Rotate each constrained term's columns by its ``Q`` in place (masking the constant
    direction) for the duration of the solve, then rotate back."""
    plan = design.plan
    X = design.storage
    mask = plan.column_mask()
    for text, Q in constraints.items():
        block = plan.term_storage[text]
        X[:, block] = X[:, block] @ Q
        mask[:, block.stop - 1] = False
    try:
        yield X, mask
    finally:
        for text, Q in constraints.items():
            block = plan.term_storage[text]
            X[:, block] = X[:, block] @ Q.T


def _rotation(constraints, plan) -> np.ndarray:
    """The orthogonal (P, P) map from fitted (rotated) weights to the original basis."""
    T = np.eye(plan.n_storage)
    for text, Q in constraints.items():
        block = plan.term_storage[text]
        T[block, block] = Q
    return T


__all__ = ["fit", "fit_design"]
