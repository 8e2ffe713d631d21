"""The fitting engine: one path from a design's rows to weights, log-likelihoods and
covariances, for every fit glmformula makes.

``gf.fit`` (in memory and blocked), the cross-validation folds of ``gf.compare`` and the
summary's likelihood-ratio refits all call :func:`fit_design` (a built design) or
:func:`fit_blocked` (a design rebuilt block by block, never whole). Both run the same steps:

1. refuse what cannot be fitted (no intercept);
2. find the identifiability constraints of terms that span the constant
   (:mod:`.identifiability`) and rotate those columns, masking each constant direction;
3. lay out the problem: which columns each unit reads, the regularizer's groups and the names
   warnings use (unit ids, column labels);
4. smoothness: the terms' roughness penalties as per-unit matrices, their strengths chosen by
   REML where ``smoothing="auto"`` (:mod:`.smoothing`);
   solve: the closed form for ``spikes ~ 1``; otherwise :func:`glmformula.backend.solve`,
   with units in groups on the columns they read (:mod:`.groups`) or shared out over devices
   and batches (:mod:`.sharding`), a fit with nothing to start from and no REML search
   beginning Newton at the units' tuning curves (:mod:`.starts`); backend errors become
   :class:`~glmformula.FitError`;
5. one pass over the rows for each unit's log-likelihood, and the covariances now or on first
   use (:mod:`.information`);
6. rotate the weights back to the original basis.

The engine returns plain values (:class:`EngineFit`); the results layer wraps them with the
model's :class:`~glmformula.graph.layout.DesignSpec` in a ``FitResult``.
"""

from __future__ import annotations

import contextlib

import attrs
import numpy as np

from .. import backend
from .._memory import aligned_zeros
from ..backend.reml import FIT_TOLERANCE, FOLD_TOLERANCE, SearchTolerance
from ..backend.solve import COLD_START_SOLVERS, DEFAULT_TOL, MAX_COLUMN_MAGNITUDE
from ..config import config
from ..errors import FitError, FormulaError, GlmformulaWarning, warn
from ..graph.design import DesignMatrix, Prepared
from ..graph.penalties import term_penalties
from ..terms.aliases import resolve_term
from . import identifiability as ident
from . import information, poisson, sharding, smoothing
from .covariance import CovarianceStack
from .families import family_name, get_family
from .groups import column_statistics, columns_first_copy, plan_groups, solve_in_groups
from .rows import select_rows, used_row_parts
from .starts import tuning_curve_start

#: Solver tolerance of a fit whose weights are only scored (``fit_design(reported=False)``: a
#: comparison's fits, on all rows and on each fold's training rows) when there is no REML
#: search, no penalty and the user set none. Newton's criterion ``c`` bounds the remaining
#: Newton step at ``c sqrt(spikes)`` standard errors of the weights (3e-3 at 1e-5 for 1e5
#: spikes). Without a penalty the log-likelihood is stationary at the optimum, so it is off by
#: only ~``c^2 spikes / 2`` nats (5e-6), and held-out scores by as little: on the real
#: head-direction recording every unit the data determine scored within 2e-6 bits/spike of
#: its score at 1e-6 (docs/performance_decisions.md, 'Unpenalised scored fits stop at 1e-5
#: (session 32)'). A penalised fit (:data:`PENALISED_SCORED_FIT_TOL`) and a reported one
#: (:data:`~glmformula.backend.solve.DEFAULT_TOL`) stop later; REML's searches have their own
#: (:data:`..backend.reml.FOLD_TOLERANCE`).
SCORED_FIT_TOL = 1e-5
#: :data:`SCORED_FIT_TOL` of a fit with a penalty (a Ridge, strengths fixed in the formula):
#: its log-likelihood is not stationary at the penalised optimum and moves at first order in
#: the weights' error (1.2e-5 nats, 1.8e-7 of the likelihood-ratio statistic, on the README
#: example with a Ridge; 2e-5 of it at 1e-5), so it stops ten times closer.
PENALISED_SCORED_FIT_TOL = 1e-6


def _smoothing_mode(value):
    """``smoothing=``: "auto", or None / "none" / False for no smoothness penalties."""
    if value is None or value is False or (isinstance(value, str) and value.lower() == "none"):
        return None
    if isinstance(value, str) and value.lower() == "auto":
        return "auto"
    raise FitError(f"smoothing={value!r} is not a smoothing mode",
                   hint='use smoothing="auto" (strengths chosen from the data, the default) or '
                        "smoothing=None (no smoothness penalties)")


@attrs.frozen
class FitOptions:
    """How to fit: penalty, solver and its tolerance, precision.

    Attributes
    ----------
    regularizer : Ridge, Lasso, ElasticNet, GroupLasso or None
        Strengths per term may name terms by canonical text or alias (``{"coupling": 1e-2}``).
    solver : str
        ``"auto"``, ``"newton"``, ``"lbfgs"`` or ``"proximal"``.
    dtype : str or None
        Compute precision (default: float64 on CPU, float32 on GPU).
    tol, max_iter : optional
        Convergence tolerance and iteration limit (default: the solver's).
    solver_options : dict
        Settings the solver class declares (e.g. ``{"history": 20}`` for L-BFGS); an unknown
        name is a :class:`~glmformula.FitError`.
    smoothing : "auto" or None
        ``"auto"``: every penalised term's strength is chosen per unit by REML
        (:mod:`.smoothing`); None: no penalty besides strengths fixed in the formula
        (``smooth=1e-3``) and the regularizer.
    select : bool
        Also penalise each term's null space, so a whole term can shrink to zero.
    family : str
        The observation family (:mod:`.families`): ``"poisson"`` (default), ``"bernoulli"``,
        ``"negative_binomial"``, ``"gamma"`` or ``"gaussian"``; an unknown name is a
        :class:`~glmformula.FitError` naming them.
    """

    regularizer: object = None
    solver: str = "auto"
    dtype: str | None = None
    tol: float | None = None
    max_iter: int | None = None
    solver_options: dict = attrs.field(factory=dict, converter=dict)
    smoothing: str | None = attrs.field(default="auto", converter=_smoothing_mode)
    select: bool = attrs.field(default=False, converter=bool)
    family: str = attrs.field(default="poisson", converter=family_name)

    def backend_options(self, formula) -> dict:
        """Keyword arguments of :func:`glmformula.backend.solve`."""
        options = {"regularizer": _resolve_strength_names(self.regularizer, formula),
                   "solver": self.solver, "dtype": self.dtype}
        if self.tol is not None:
            options["tol"] = self.tol
        if self.max_iter is not None:
            options["max_iter"] = self.max_iter
        if self.family != "poisson":
            options["family"] = self.family
        options.update(self.solver_options)
        return options

    @property
    def storage_dtype(self) -> np.dtype:
        """The design's dtype: float32 when fitting in float32, else float64."""
        return np.dtype("float32" if str(self.dtype) == "float32" else "float64")


@attrs.frozen(eq=False)
class FitDiagnostics:
    """How a fit went, per unit and overall.

    Attributes
    ----------
    converged, n_iter, grad_norm : ndarray (U,)
        Per unit: criterion met, iterations, max-abs penalised gradient.
    log_likelihood : ndarray (U,)
        Training log-likelihood (nats, with ``log y!``); NaN when not computed.
    n_rows : int
        Rows fitted.
    n_spikes : ndarray (U,)
        Spikes in them.
    solver, dtype : str
    constrained_terms : tuple of str
        Terms constrained to average zero over the training rows.
    dropped : dict
        Rows dropped from the grid: ``{"window": ..., "missing": ...}``.
    fit_seconds, compile_seconds : float
        Solver time and kernel compilation time (s).
    chunk_size : int or None
        Bins per block of a blocked fit; None in memory.
    status : tuple of str
        Per unit: "converged", "max_iter", "stalled" or "no_spikes".
    n_hessian_passes, n_matmul_passes : int
        Passes over the rows the solver made (Hessians; products with the design).
    """

    converged: np.ndarray
    n_iter: np.ndarray
    grad_norm: np.ndarray
    log_likelihood: np.ndarray
    n_rows: int
    n_spikes: np.ndarray
    solver: str
    dtype: str
    constrained_terms: tuple = ()
    dropped: dict = attrs.field(factory=dict)
    fit_seconds: float = float("nan")
    compile_seconds: float = float("nan")
    chunk_size: int | None = None
    status: tuple = ()
    n_hessian_passes: int = 0
    n_matmul_passes: int = 0


@attrs.frozen(eq=False)
class EngineFit:
    """What the engine returns.

    Attributes
    ----------
    weights : ndarray (P, U)
        Weights of the stored columns in the original basis (0 where a unit reads none).
    intercepts : ndarray (U,)
    covariance : CovarianceStack
        Covariance of (intercept, weights) per unit (computed now, or on first use).
    diagnostics : FitDiagnostics
    used : ndarray of bool (grid rows,)
        The rows fitted.
    column_means : ndarray (P,)
        Mean of each stored column (original basis) over the rows fitted.
    offset_mean : float
        Mean offset over the rows fitted (0 without one).
    smoothing : SmoothingFit or None
        The strengths chosen from the data (None when none were).
    family : str
        The observation family fitted.
    dispersion : ndarray (U,) or None
        Its fitted dispersion per unit (negative binomial ``a``; gamma and gaussian scale);
        None for Poisson and Bernoulli.
    preconditioner : backend.Curvature or None
        The solver's last preconditioner (L-BFGS on all units at once), in the solver's
        coordinates (the constraints' rotation): for fits of the same design on some of its
        rows (``fit_design(..., preconditioner=)``, a comparison's folds).
    """

    weights: np.ndarray
    intercepts: np.ndarray
    covariance: CovarianceStack
    diagnostics: FitDiagnostics
    used: np.ndarray
    column_means: np.ndarray
    offset_mean: float = 0.0
    smoothing: smoothing.SmoothingFit | None = None
    family: str = "poisson"
    dispersion: np.ndarray | None = None
    preconditioner: backend.Curvature | None = None


def _means(X: np.ndarray, offset, used: np.ndarray, rows_per_block: int = 16384,
           sums: np.ndarray | None = None):
    """Column means of ``X`` and the offset's mean over the ``used`` rows (summed in float64,
    as a blocked fit sums them; no copy of the design); ``sums``: the column sums, where a
    pass for other statistics already made them (:func:`.groups.column_statistics`)."""
    used = np.asarray(used, bool)
    n = max(int(np.count_nonzero(used)), 1)
    if sums is None:
        sums = _column_sums(X, used, rows_per_block)
    return sums / n, (0.0 if offset is None else float(offset[used].sum() / n))


def _column_sums(X: np.ndarray, used: np.ndarray, rows_per_block: int) -> np.ndarray:
    """Float64 sums of the columns of ``X`` over the rows ``used`` (bool), by numpy's
    reductions over :func:`.rows.used_row_parts` (whole runs in place, scattered rows a block
    at a time).

    Not a product with the row mask: that runs in multithreaded BLAS, which stalls when other
    processes want the cores (one unit, 1e5 x 50, on the 2-core machine: 5 ms against 1.8 ms,
    16 ms against 1.8 ms with two busy processes; docs/performance_decisions.md,
    'Identifiability moments with BLAS on one thread'), and reads the rows not used too.
    """
    sums = np.zeros(X.shape[1])
    for part in used_row_parts(X, used, rows_per_block):
        sums += np.add.reduce(part, axis=0, dtype=np.float64)
    return sums


def parameter_counts(unit_columns, constrained_terms, intercept: bool = True) -> np.ndarray:
    """Free parameters per unit: its columns, one fewer per constrained term, plus the
    intercept."""
    n = np.array([len(c) for c in unit_columns]) - len(constrained_terms)
    return n + int(intercept)


# -- the steps ---------------------------------------------------------------------------------
def check_fittable(formula) -> None:
    """Step 1: refuse what the engine cannot fit."""
    if not formula.intercept:
        raise FitError("fits without an intercept are not supported yet", formula=str(formula),
                       hint="keep the intercept (remove '- 1' / '0 +'); design_matrix() builds "
                            "intercept-free designs")


def design_constraints(design: DesignMatrix) -> dict:
    """Step 2 for a built design: constraints over its valid rows (they do not depend on a
    cross-validation fold, so comparisons compute them once per model)."""
    rows = information.rows_in_memory(design.storage, design.counts, design.offset,
                                      design.valid.astype(float))
    return ident.find_constraints(rows, design.plan)


def _layout(plan, constraints: dict, formula) -> dict:
    """Step 3: what the backend needs to know besides the rows."""
    mask = ident.mask_constant_directions(plan.column_mask(), constraints, plan.term_storage)
    return {"column_mask": mask, "column_groups": term_groups(plan),
            "unit_names": tuple(plan.unit_ids), "column_names": tuple(plan.storage_columns)}


def fitted_in_groups(design: DesignMatrix, constraints: dict, rows: np.ndarray) -> bool:
    """Whether :func:`fit_design` fits ``design``'s units in groups on their own columns
    (:func:`.groups.plan_groups`: each unit reads few of the stored columns, as ``history``
    without ``coupling``) on ``rows`` (a boolean mask of grid rows)."""
    return _unit_groups(_layout(design.plan, constraints, design.formula), rows) is not None


def _unit_groups(layout: dict, rows: np.ndarray) -> list | None:
    """:func:`.groups.plan_groups` of a layout's columns for the rows fitted (``rows``: their
    mask or weights, non-zero where fitted)."""
    return plan_groups(layout["column_mask"], int(np.count_nonzero(rows)))


def term_groups(plan) -> tuple[str, ...]:
    """The term each stored column belongs to (regularizer groups)."""
    groups = [""] * plan.n_storage
    for text, block in plan.term_storage.items():
        for j in range(block.start, block.stop):
            groups[j] = groups[j] or text
    return tuple(groups)


def _resolve_strength_names(regularizer, formula):
    """A regularizer whose per-term strengths name terms by alias, with canonical names."""
    strength = getattr(regularizer, "strength", None)
    if not isinstance(strength, dict) and not hasattr(strength, "items"):
        return regularizer
    resolved = {}
    for name, value in strength.items():
        resolved[resolve_term(formula, name)] = value
    return attrs.evolve(regularizer, strength=resolved)


@contextlib.contextmanager
def _backend_errors(plan, formula):
    """Step 4's error mapping: what the backend refuses, said in the formula's terms."""
    try:
        yield
    except FormulaError:
        raise
    except backend.ColumnRangeError as err:
        names = [plan.storage_columns[j] for j in err.columns[:5]]
        raise FitError(f"design column(s) {', '.join(repr(n) for n in names)} reach "
                       f"{err.largest:.3g} in absolute value, more than the "
                       f"{MAX_COLUMN_MAGNITUDE:.0e} a fit can use (the solver sums squares of "
                       "columns over rows)", formula=str(formula),
                       hint="rescale the covariate (e.g. scale(x), or other units)") from None
    except (ValueError, TypeError) as err:
        raise FitError(f"the fit could not run: {err}",
                       hint="check the regularizer and solver options") from None


@contextlib.contextmanager
def _rotated(X: np.ndarray, constraints: dict, term_storage: dict):
    """Step 2 in memory: the constrained terms' columns rotated in place for the duration
    (no copy of the design), rotated back afterwards."""
    ident.rotate_columns(X, constraints, term_storage)
    try:
        yield X
    finally:
        ident.rotate_columns(X, constraints, term_storage, back=True)


def _rotated_with_ranges(X: np.ndarray, constraints: dict, term_storage: dict,
                         column_max: np.ndarray) -> np.ndarray:
    """Step 2 on a copy of the used rows laid out columns first (the other rows zero): its
    constrained terms' columns rotated in place, and their ranges in ``column_max`` (the
    others' are unchanged) taken from the rotated columns, which are rows of ``X.T``."""
    ident.rotate_columns(X, constraints, term_storage)
    for text in constraints:
        rows = X.T[term_storage[text]]
        column_max[term_storage[text]] = np.maximum(rows.max(axis=1), -rows.min(axis=1))
    return X


def _fitted_rows(problem: backend.Problem, used: np.ndarray,
                 always: bool = False) -> backend.Problem:
    """``problem`` on the rows it fits only (:func:`.rows.select_rows`: the same sums), all
    stored columns copied, when enough rows are left out and the copy fits next to the design
    in ``gf.config.memory_limit`` (``always``: in any case); else ``problem``."""
    X = problem.X
    selection = select_rows(used, always)
    if selection is None or (not always and X.nbytes * (1.0 + selection.n / max(X.shape[0], 1))
                             > config.memory_limit):
        return problem
    compact = selection.copy_into(aligned_zeros((selection.n, X.shape[1]), X.dtype), X,
                                  np.arange(X.shape[1]))
    return attrs.evolve(problem, X=compact, y=selection.take(problem.y),
                        row_weight=selection.take(problem.row_weight),
                        offset=selection.take(problem.offset))


def mean_rate(counts: np.ndarray, offset: np.ndarray | None, row_weight: np.ndarray):
    """Step 4 for ``spikes ~ 1``: the maximum-likelihood intercept is closed-form,
    log(total count / total exposure), with variance 1 / total count.

    Returns
    -------
    intercept : ndarray (U,)
    covariance : ndarray (U, 1, 1)
    solution : backend.Solution
    """
    counts = np.asarray(counts, float)
    exposure = np.ones(len(row_weight)) if offset is None else np.exp(offset)
    total = row_weight @ counts
    with np.errstate(divide="ignore"):
        intercept = np.log(total / (row_weight @ exposure))
    intercept = np.where(np.isfinite(intercept), intercept, np.log(1e-12))
    U = counts.shape[1]
    solution = backend.Solution(
        weights=np.zeros((0, U)), intercept=intercept, converged=np.ones(U, bool),
        n_iter=np.zeros(U, int), grad_norm=np.zeros(U), objective=np.zeros(U),
        criterion=np.zeros(U), solver="closed-form", dtype="float64", compile_seconds=0.0,
        solve_seconds=0.0, status=("converged",) * U)
    return intercept, (1.0 / np.maximum(total, 1e-12)).reshape(U, 1, 1), solution


def _spikes(counts: np.ndarray, used: np.ndarray) -> np.ndarray:
    """Spikes per unit in the ``used`` rows, NaN counts ignored: :func:`_column_sums` (no copy
    of the rows; ``np.nansum(counts[used])`` copied them twice, 29 ms on the real recording's
    226k x 32 counts against 6 ms), the NaN-ignoring sum only where one is NaN."""
    sums = _column_sums(counts, np.asarray(used, bool), 16384)
    if not np.all(np.isfinite(sums)):
        sums = np.nansum(counts[used], axis=0)
    return np.asarray(sums, float)


def _diagnostics(solution, log_likelihood, used, counts, constraints, dropped,
                 chunk_size=None) -> FitDiagnostics:
    U = counts.shape[1]
    return FitDiagnostics(
        converged=np.asarray(solution.converged, bool).reshape(-1),
        n_iter=np.broadcast_to(np.asarray(solution.n_iter), (U,)).copy(),
        grad_norm=np.asarray(solution.grad_norm, float).reshape(-1),
        log_likelihood=np.asarray(log_likelihood, float), n_rows=int(used.sum()),
        n_spikes=_spikes(counts, used),
        solver=str(solution.solver), dtype=str(solution.dtype),
        constrained_terms=tuple(constraints), dropped=dict(dropped),
        fit_seconds=float(solution.solve_seconds),
        compile_seconds=float(solution.compile_seconds), chunk_size=chunk_size,
        status=tuple(solution.status), n_hessian_passes=int(solution.n_hessian_passes),
        n_matmul_passes=int(solution.n_matmul_passes))


# -- the two row sources -----------------------------------------------------------------------
def fit_design(design: DesignMatrix, options: FitOptions = FitOptions(), *,
               row_weight: np.ndarray | None = None, init=None, covariance: bool = True,
               log_likelihood: bool = True, constraints: dict | None = None,
               group_units: bool = True, private_rows: bool = False,
               fold: bool = False, reported: bool = True,
               preconditioner: backend.Curvature | None = None) -> EngineFit:
    """Fit a built design.

    Parameters
    ----------
    design : DesignMatrix
    options : FitOptions
    row_weight : ndarray (grid rows,), optional
        Rows to fit within the design's valid ones (> 0), e.g. a cross-validation fold's
        training rows. Default: every valid row.
    init : (weights (P, U), intercepts (U,)[, smoothing strengths[, REML slope]]), optional
        Warm start, in the original basis (e.g. the weights of a fit on all rows, and its
        chosen smoothness strengths: a fold's search then starts there). The strengths are
        an array (M, U) in this design's penalty order, or a dict penalty key -> (U,) (a
        nested model's; keys it lacks start from the default). With an array, the fit's
        REML slope at its answer (``SmoothingFit.slope``, (M, U)) may follow: the
        search steers by it until it has its own.
    covariance, log_likelihood : bool
        Whether to compute standard errors (now or on first use) and the training
        log-likelihood (cross-validation needs neither).
    constraints : dict, optional
        Precomputed :func:`design_constraints` (default: found here).
    group_units : bool
        Solve units in groups on the columns they read when that is cheaper (same optimum).
    private_rows : bool
        Fit a copy of the used rows and leave ``design`` untouched (default: its constrained
        columns are rotated in place for the duration of the fit, then back): for fits of
        one design on several threads at once (a comparison's folds), which must not see each
        other's rotation.
    fold : bool
        A cross-validation fold's fit, only scored on held-out rows: REML's strengths to
        mgcv's own tolerance, with the weights at the precision of the model they are chosen
        on (:data:`..backend.reml.FOLD_TOLERANCE`).
    reported : bool
        Whether the weights reach the user. False for fits that are only scored (a
        comparison's): without a REML search they stop at :func:`scored_tolerance` unless
        ``options.tol`` is set.
    preconditioner : backend.Curvature, optional
        ``EngineFit.preconditioner`` of a fit of this design with the same ``constraints``
        on more rows, whose answer is ``init`` (a comparison's fit on all rows, for a fold):
        a warm L-BFGS start begins with it (see :func:`glmformula.backend.solve`).
    """
    plan, formula = design.plan, design.formula
    check_fittable(formula)
    used = design.valid if row_weight is None else design.valid & (np.asarray(row_weight) > 0)
    weights_of_rows = used.astype(design.storage.dtype)
    U = len(plan.unit_ids)
    family = get_family(options.family)
    family.check_response(design.counts, used, plan.unit_ids, design.grid.centers,
                          plan.response, str(formula))
    if plan.n_storage == 0 and family.name != "poisson":
        return _intercept_only(design, options, used, weights_of_rows)
    if plan.n_storage == 0:
        intercept, cov, solution = mean_rate(design.counts, design.offset, weights_of_rows)
        ll = poisson.log_likelihood(design.counts, poisson.expected_counts(
            np.broadcast_to(intercept, design.counts.shape) + (
                0.0 if design.offset is None else design.offset[:, None])), weights_of_rows)
        return EngineFit(np.zeros((0, U)), intercept, CovarianceStack.from_dense(cov),
                         _diagnostics(solution, ll, used, design.counts, {}, design.dropped),
                         used, *_means(design.storage, design.offset, used))
    if constraints is None:
        constraints = design_constraints(design)
    layout = _layout(plan, constraints, formula)
    solver_options = options.backend_options(formula)
    T = ident.rotation(constraints, plan.term_storage, plan.n_storage)
    start = None if init is None else (T.T @ np.asarray(init[0], float), np.asarray(init[1]))
    setup = _penalty_setup(plan, design.graph, options, T)
    groups = _unit_groups(layout, used) if group_units else None
    solver = solver_options["solver"]
    if solver == "auto":  # each group's few columns: Newton
        solver = "newton" if groups is not None else backend.choose_solver(
            design.n_rows, plan.n_storage, U, "none")
    if start is None and _starts_at_tuning_curves(family.name, setup, solver):
        start = _tuning_curve_start(information.rows_in_memory(
            design.storage, design.counts, design.offset, weights_of_rows), constraints,
            plan.term_storage, T)
    smooth_fit = None
    # Newton's groups read their columns from a copy of the used rows laid out columns first
    # (not REML's, which read rows)
    source = None if groups is None or (setup is not None and setup.keys) else \
        columns_first_copy(design.storage, solver_options)
    in_place = contextlib.nullcontext(design.storage) if private_rows or source is not None \
        else _rotated(design.storage, constraints, plan.term_storage)
    with in_place as X:
        problem = backend.Problem(X=X, y=design.counts, offset=design.offset,
                                  row_weight=weights_of_rows, **layout)
        column_sums = None
        counts, offset, fitted_weights = design.counts, design.offset, weights_of_rows
        if source is not None:
            # one pass over the design for the copy, the means and the groups' column ranges;
            # the copy's columns rotated, never the design's (private to this fit)
            column_sums, column_max = column_statistics(X, used, copy_to=source)
            X = _rotated_with_ranges(source, constraints, plan.term_storage, column_max)
            problem = attrs.evolve(problem, X=X, column_max=column_max)
        elif groups is None or private_rows:
            # groups of units copy their own columns of the fitted rows (.groups)
            problem = _fitted_rows(problem, used, always=private_rows)
            if private_rows:  # the copy's columns rotated, never the design's
                X = ident.rotate_columns(problem.X, constraints, plan.term_storage)
                counts, offset, fitted_weights = problem.y, problem.offset, problem.row_weight
        else:  # one pass over the rotated design for the groups' column ranges and the means
            column_sums, column_max = column_statistics(X, used)
            problem = attrs.evolve(problem, column_max=column_max)
            column_sums = ident.rotate_columns(column_sums[None, :], constraints,
                                               plan.term_storage, back=True)[0]
        with _backend_errors(plan, formula):
            if setup is not None and setup.keys:
                smooth_fit = _choose_strengths(
                    problem, setup, groups, plan, solver_options, options, init, start,
                    FOLD_TOLERANCE if fold else FIT_TOLERANCE)
                start = smooth_fit.start
                if solver_options["solver"] == "auto":
                    # REML ends at the penalised optimum, refined to Newton's criterion
                    # (reml.polish): Newton's first Hessian confirms it, formed as REML formed
                    # its own (sampled float32 on a wide design: 2.4 s against 7.6 s for the
                    # exact one on a fold of the real coupled model; L-BFGS would start its
                    # curvature afresh; lazy Newton took two Hessians, 10.9 s)
                    solver_options = {**solver_options, "solver": "newton", "lazy": False,
                                      "sampled_curvature": True}
            if setup is not None:
                problem = attrs.evolve(problem, penalty_matrix=smooth_fit.penalty_matrix
                                       if smooth_fit is not None else setup.fixed)
            # standard errors computed with the fit need the information at the answer: the
            # solver forms it with its own Hessian kernel (on a group's columns), one pass
            eager = covariance and information.computed_with_fit(layout["column_mask"],
                                                                 design.n_rows)
            if not eager and _reml_is_final(smooth_fit, options, solver_options):
                solution = _reml_solution(smooth_fit, solver_options)
            else:
                if not reported and smooth_fit is None and options.tol is None:
                    solver_options = {**solver_options, "tol": scored_tolerance(
                        solver_options, problem)}
                solution = _solve(problem, groups, start,
                                  {**solver_options, "information": eager,
                                   "preconditioner": preconditioner})
        rows = information.rows_in_memory(X, counts, offset, fitted_weights)
        if not log_likelihood:
            ll = np.full(U, np.nan)
        elif _objective_is_likelihood(solution, problem, solver_options, family.name):
            ll = poisson.log_likelihood_from_objective(solution.objective, counts,
                                                       fitted_weights)
        else:
            ll = information.log_likelihood(rows, solution.weights, solution.intercept,
                                            solution.dtype, family.name, solution.dispersion)
        cov = _covariance(solution, layout, solver_options, constraints, plan, design.n_rows, rows,
                          later=lambda: information.rows_rebuilt(
                              Prepared(formula, design.graph, plan),
                              information.block_rows(plan.n_storage,
                                                     design.storage.dtype.itemsize),
                              design.storage.dtype, constraints, weights_of_rows),
                          penalty_matrix=problem.penalty_matrix) \
            if covariance else None
    weights = T @ np.asarray(solution.weights, float)
    if cov is None:
        cov = CovarianceStack.not_computed(
            U, plan.n_storage, "this fit was made without standard errors (covariance=False)")
    return EngineFit(weights, np.asarray(solution.intercept, float), cov,
                     _diagnostics(solution, ll, used, design.counts, constraints, design.dropped),
                     used, *_means(design.storage, design.offset, used, sums=column_sums),
                     smoothing=smooth_fit,
                     family=family.name, dispersion=solution.dispersion,
                     preconditioner=solution.preconditioner)


def _starts_at_tuning_curves(family: str, setup, solver: str) -> bool:
    """Whether a fit with no start of its own begins at the tuning curves: Poisson fits
    without a REML search whose solver (``solver``, as resolved) takes a cold start
    (:data:`~glmformula.backend.solve.COLD_START_SOLVERS`: not L-BFGS, whose start would
    cost a pass for nothing). REML has its own cold start (the optimum of the model at rates
    ``y + 0.1``, with a trust region on the strengths while the weights come from it); from the
    tuning curves its searches took fewer iterations on the real recording but stopped
    elsewhere within their tolerance, and the trust region no longer applied
    (docs/performance_decisions.md, 'Cold starts from tuning curves')."""
    return (family == "poisson" and (setup is None or not setup.keys)
            and solver in COLD_START_SOLVERS)


def _tuning_curve_start(rows, constraints: dict, term_storage: dict, T: np.ndarray):
    """A cold Newton start from the units' tuning curves over the terms that span the
    constant (:func:`.starts.tuning_curve_start`; ``rows`` unrotated), in the fitted (rotated)
    basis; None where no term is a partition of unity."""
    found = tuning_curve_start(rows, constraints, term_storage)
    return None if found is None else backend.ColdStart(T.T @ found[0], found[1])


def _reml_is_final(smooth_fit, options: FitOptions, solver_options: dict) -> bool:
    """Whether REML's weights are the fit: the solver left to ``"auto"``, no penalty outside
    REML's quadratic ones (a ridge at most), and the weights certified to the solver's
    tolerance. Newton's confirming fit would form one Hessian there and take no step (on a
    fold of the real coupled head-direction model: 2.3 s of 27 s)."""
    regularizer = solver_options.get("regularizer")
    return (smooth_fit is not None and options.solver == "auto"
            and (regularizer is None or isinstance(regularizer, backend.Ridge))
            and smooth_fit.certified(solver_options.get("tol", DEFAULT_TOL)))


def _reml_solution(smooth_fit, solver_options: dict) -> backend.Solution:
    """The solver's report of REML's certified weights (:func:`_reml_is_final`): converged,
    no iteration, no pass over the rows."""
    W, b = smooth_fit.start
    U = W.shape[1]
    return backend.Solution(
        weights=np.asarray(W, float), intercept=np.asarray(b, float),
        converged=np.ones(U, bool), n_iter=np.zeros(U, int), grad_norm=smooth_fit.grad_norm,
        objective=smooth_fit.objective, criterion=smooth_fit.newton_criterion, solver="reml",
        dtype=str(solver_options.get("dtype") or "float64"), compile_seconds=0.0,
        solve_seconds=0.0, status=("converged",) * U, rank_deficient=np.zeros(U, bool),
        excluded_columns=smooth_fit.excluded_columns, n_hessian_passes=0, n_matmul_passes=0,
        tol=solver_options.get("tol", DEFAULT_TOL))


def _penalised(solver_options: dict, problem) -> bool:
    """Whether a fit's objective has a penalty (a regularizer or a quadratic penalty)."""
    return solver_options.get("regularizer") is not None or problem.penalty_matrix is not None


def scored_tolerance(solver_options: dict, problem) -> float:
    """The tolerance of a fit that is only scored: :data:`SCORED_FIT_TOL` without a penalty,
    :data:`PENALISED_SCORED_FIT_TOL` with one."""
    return PENALISED_SCORED_FIT_TOL if _penalised(solver_options, problem) else SCORED_FIT_TOL


def _objective_is_likelihood(solution, problem, solver_options: dict, family: str) -> bool:
    """Whether the solver's objective is the training log-likelihood (less ``log y!``) to
    rounding: a float64 Poisson fit without any penalty whose units all converged (so no
    linear predictor reached the solver's overflow cap, where its loss continues ``exp`` by a
    polynomial)."""
    return (family == "poisson" and solution.dtype == "float64"
            and not _penalised(solver_options, problem)
            and bool(np.all(np.asarray(solution.converged)
                            | (np.asarray(solution.status) == "no_spikes"))))


def _intercept_only(design: DesignMatrix, options: FitOptions, used: np.ndarray,
                    weights_of_rows: np.ndarray) -> EngineFit:
    """Step 4 for ``y ~ 1`` in a family other than Poisson: the backend on one empty column
    (the intercept alone, with the family's dispersion), variance ``scale / sum_t w_t
    fisher_t``."""
    family = get_family(options.family)
    plan = design.plan
    U = len(plan.unit_ids)
    problem = backend.Problem(X=np.zeros((design.counts.shape[0], 1)), y=design.counts,
                              offset=design.offset, row_weight=weights_of_rows,
                              unit_names=tuple(plan.unit_ids))
    solver_options = options.backend_options(design.formula)
    with _backend_errors(plan, design.formula):
        solution = backend.solve(problem, **solver_options)
    intercept = np.asarray(solution.intercept, float)
    eta = np.broadcast_to(intercept, design.counts.shape) + (
        0.0 if design.offset is None else design.offset[:, None])
    mu = family.mean(eta)
    dispersion = solution.dispersion
    w = np.asarray(weights_of_rows, float)
    ll = family.log_likelihood(design.counts, mu, w,
                               None if family.name == "gaussian" else dispersion)
    information_ = w @ family.fisher_weight(mu, dispersion)
    variance = family.scale(dispersion) / np.maximum(information_, 1e-300)
    solution = attrs.evolve(solution, weights=np.zeros((0, U)))
    return EngineFit(np.zeros((0, U)), intercept,
                     CovarianceStack.from_dense(np.asarray(variance, float).reshape(U, 1, 1)),
                     _diagnostics(solution, ll, used, design.counts, {}, design.dropped),
                     used, *_means(design.storage, design.offset, used), family=family.name,
                     dispersion=dispersion)


def _solve(problem, groups, start, solver_options):
    """Step 4's solve: units in groups on their own columns, or over devices."""
    if groups is None:
        return sharding.solve_on_devices(problem, init=start, **solver_options)
    return solve_in_groups(problem, groups, start, **solver_options)


#: Rounds of (strengths at a dispersion, dispersion at those strengths) for the negative
#: binomial family, and the change of ``log a`` (all units) that ends them.
NB_ROUNDS, NB_SETTLED = 4, 1e-3


def _choose_strengths(problem, setup, groups, plan, solver_options, options: FitOptions, init,
                      start, tolerance: SearchTolerance) -> smoothing.SmoothingFit:
    """Step 4's smoothing strengths by REML (:mod:`.smoothing`). The negative binomial
    dispersion ``a`` is estimated with the weights, so its strengths alternate with it: REML
    at a dispersion, the dispersion of the fit at those strengths, until ``log a`` settles
    (the first dispersion from the fit at the Poisson likelihood's strengths)."""
    def choose(family, initial, begin, theta=None, slope=None):
        return smoothing.choose_strengths(
            problem, setup, groups, smoothing.unit_term_columns(plan),
            regularizer=solver_options["regularizer"], dtype=options.dtype,
            initial_strength=initial, start=begin, family=family, theta=theta,
            tolerance=tolerance, initial_slope=slope)

    initial = None if init is None or len(init) < 3 else init[2]
    # the extra slope at the starting fit's answer (same keys: a fit of the same model)
    slope = None if init is None or len(init) < 4 or isinstance(initial, dict) else init[3]
    if isinstance(initial, dict):  # by penalty key (another model's): NaN where it has none
        U = problem.n_units
        initial = np.array([np.broadcast_to(np.asarray(initial.get(key, np.nan), float), (U,))
                            for key in setup.keys]).reshape(len(setup.keys), U)
    if options.family != "negative_binomial":
        return choose(options.family, initial, start, slope=slope)
    fit = choose("poisson", initial, start)
    log_a = None
    for _ in range(NB_ROUNDS):
        solution = _solve(attrs.evolve(problem, penalty_matrix=fit.penalty_matrix), groups,
                          fit.start, solver_options)
        new = np.log(np.nan_to_num(np.asarray(solution.dispersion, float), nan=1.0))
        if log_a is not None and np.max(np.abs(new - log_a), initial=0.0) <= NB_SETTLED:
            break
        log_a = new
        fit = choose("negative_binomial", fit.strength, (solution.weights, solution.intercept),
                     theta=np.exp(log_a))
    return fit


def _penalty_setup(plan, graph, options: FitOptions, rotation) -> smoothing.PenaltySetup | None:
    """The design's smoothness penalties in the solver's basis; None when there are none."""
    components = term_penalties(plan, graph, select=options.select)
    if options.smoothing is None:
        components = tuple(c for c in components if c.setting != "auto")
    if not components:
        return None
    setup = smoothing.penalty_setup(components, tuple(plan.unit_ids), plan.n_storage, rotation)
    return None if setup.empty else setup


def _covariance(solution, layout, solver_options, constraints, plan, n_rows, rows, later,
                penalty_matrix=None):
    """Step 5's covariances: computed now from ``rows`` when cheap, else on first use from
    the rows ``later()`` rebuilds (so the result does not keep the design alive)."""
    mask = layout["column_mask"].copy()
    mask[:, list(solution.excluded_columns)] = False
    now = information.covariance_source(
        rows, solution.weights, solution.intercept, mask, solver_options["regularizer"],
        layout["column_groups"],
        solution.dtype, constraints, plan.term_storage, unit_names=layout["unit_names"],
        penalty_matrix=penalty_matrix, family=getattr(solution, "family", "poisson"),
        dispersion=getattr(solution, "dispersion", None),
        information=getattr(solution, "information", None))
    return information.covariance_stack(now, attrs.evolve(now, rows=later()), n_rows)


def auto_chunk_size(prepared: Prepared, dtype) -> int | None:
    """None (in memory) when the design fits in ``config.memory_limit``, else a block size."""
    if prepared.plan.n_storage == 0 or design_bytes(prepared, dtype) <= config.memory_limit:
        return None
    return information.block_rows(prepared.plan.n_storage, np.dtype(dtype).itemsize)


def design_bytes(prepared: Prepared, dtype) -> int:
    """Bytes the whole stored design would take in memory."""
    return prepared.graph.grid.n_rows * max(prepared.plan.n_storage, 1) * np.dtype(dtype).itemsize


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


def fit_blocked(prepared: Prepared, chunk_size: int,
                options: FitOptions = FitOptions()) -> EngineFit:
    """Fit a design rebuilt block by block by the feature graph (it never exists whole); the
    solver accumulates over the blocks (:class:`glmformula.backend.BlockedProblem`). Same
    answer as :func:`fit_design`."""
    plan, graph, formula = prepared.plan, prepared.graph, prepared.formula
    check_fittable(formula)
    if chunk_size < max(plan.lead, 1):
        raise FitError(f"chunk_size={chunk_size} bins is shorter than the longest filter "
                       f"window ({plan.lead} bins)", hint="use a larger chunk_size")
    dtype = options.storage_dtype
    plain = information.rows_rebuilt(prepared, chunk_size, dtype, {})
    constraints = ident.find_constraints(plain, plan)
    layout = _layout(plan, constraints, formula)
    rows = information.rows_rebuilt(prepared, chunk_size, dtype, constraints)
    T = ident.rotation(constraints, plan.term_storage, plan.n_storage)
    setup = _penalty_setup(plan, graph, options, T)
    # as in memory: Newton begins at the units' tuning curves
    blocked_solver = "newton" if options.solver == "auto" else options.solver
    start = _tuning_curve_start(plain, constraints, plan.term_storage, T) \
        if _starts_at_tuning_curves(options.family, setup, blocked_solver) else None
    smooth_fit, penalty = None, None if setup is None else setup.fixed
    if setup is not None and setup.keys:
        with _backend_errors(plan, formula):
            smooth_fit = _strengths_from_sample(rows, graph.grid.n_rows, chunk_size, plan,
                                                layout, setup, options)
        penalty = smooth_fit.penalty_matrix
    problem = backend.BlockedProblem(rows, plan.n_storage, len(plan.unit_ids), **layout,
                                     penalty_matrix=penalty)
    solver_options = options.backend_options(formula)
    with _backend_errors(plan, formula):
        solution = backend.solve(problem, init=start, **solver_options)
    valid = np.zeros(graph.grid.n_rows, dtype=bool)
    sums = {"columns": np.zeros(plan.n_storage), "offset": 0.0}

    def rows_noting_valid():  # the log-likelihood pass also records the rows and the means
        for block in rows():
            valid[block.start:block.stop] = block.valid
            sums["columns"] += np.add.reduce(block.X[block.valid], axis=0, dtype=np.float64)
            if block.offset is not None:
                sums["offset"] += float(np.sum(block.offset[block.valid]))
            yield block

    ll = information.log_likelihood(rows_noting_valid, solution.weights, solution.intercept,
                                    solution.dtype, options.family, solution.dispersion)
    # the blocks are rebuilt on every pass: the same rows serve now and later
    cov = _covariance(solution, layout, solver_options, constraints, plan, int(valid.sum()),
                      rows, later=lambda: rows, penalty_matrix=problem.penalty_matrix)
    window_ok = graph.grid.row_in_epoch >= plan.lead
    dropped = {"window": int((~window_ok).sum()), "missing": int((window_ok & ~valid).sum())}
    counts = graph.counts(plan.response, plan.unit_ids)
    n = max(int(valid.sum()), 1)
    return EngineFit(T @ np.asarray(solution.weights, float),
                     np.asarray(solution.intercept, float), cov,
                     _diagnostics(solution, ll, valid, counts, constraints, dropped, chunk_size),
                     valid, T @ (sums["columns"] / n), sums["offset"] / n,
                     family=options.family, dispersion=solution.dispersion,
                     smoothing=smooth_fit)


def _sample_family(options: FitOptions) -> str:
    """The family whose likelihood chooses a blocked fit's strengths: its own, but the
    Poisson one for the negative binomial (its dispersion is not known before the fit)."""
    if options.family != "negative_binomial":
        return options.family
    warn("a blocked negative binomial fit chooses its smoothing strengths under the Poisson "
         "likelihood (the dispersion is estimated afterwards); in memory they alternate with "
         "the dispersion", GlmformulaWarning)
    return "poisson"


def _strengths_from_sample(rows, n_grid_rows: int, chunk_size: int, plan, layout, setup,
                           options: FitOptions) -> smoothing.SmoothingFit:
    """Smoothness strengths of a blocked fit, chosen by REML on blocks spread evenly over the
    recording that together fit in half of ``gf.config.memory_limit``.

    A strength in the scale of sums (mgcv's ``sp``: the prior precision of the weights) does
    not depend on the number of rows, so the sample's is used for all rows (the mean-objective
    strength is divided by the larger row count); its edf are those of the sample's fit.
    """
    n_blocks = -(-n_grid_rows // chunk_size)
    row_bytes = (plan.n_storage + len(plan.unit_ids) + 2) * options.storage_dtype.itemsize
    keep = max(1, int(config.memory_limit // 2 // max(chunk_size * row_bytes, 1)))
    every = max(1, -(-n_blocks // keep))
    parts, total = [], 0.0
    for i, block in enumerate(rows()):
        total += float(np.sum(block.row_weight))
        if i % every == 0:
            parts.append(block)
    offset = None if parts[0].offset is None else np.concatenate([b.offset for b in parts])
    sample = backend.Problem(X=np.concatenate([b.X for b in parts]),
                             y=np.concatenate([b.counts for b in parts]).astype(float),
                             offset=offset,
                             row_weight=np.concatenate([b.row_weight for b in parts]), **layout)
    fit = smoothing.choose_strengths(sample, setup,
                                     _unit_groups(layout, sample.row_weight),
                                     smoothing.unit_term_columns(plan), dtype=options.dtype,
                                     regularizer=options.backend_options(plan.formula)[
                                         "regularizer"], family=_sample_family(options))
    scale = float(np.sum(sample.row_weight)) / max(total, 1.0)
    strength = fit.strength * scale
    penalty = setup.fixed.copy()
    for m in range(len(setup.keys)):
        penalty += np.nan_to_num(strength[m])[:, None, None] * setup.S[m]
    return attrs.evolve(fit, strength=strength, penalty_matrix=penalty, start=None)


__all__ = ["FitOptions", "FitDiagnostics", "EngineFit", "fit_design", "fit_blocked",
           "design_constraints", "check_fittable", "parameter_counts", "term_groups",
           "mean_rate", "auto_chunk_size", "check_fits_in_memory", "design_bytes"]
