"""The one entry point :func:`solve`: a :class:`Problem` (rows in memory) or a
:class:`BlockedProblem` (rows in blocks, never all in memory) in, a :class:`Solution` out.

Two drivers run the same step rules: for rows in memory the whole Newton / L-BFGS loop is one
compiled ``lax.while_loop`` (no host round trip per iteration); for rows in blocks the loop
runs on the host and each pass sums compiled per-block kernels (:func:`run_blocked`).

Precision. Everything here runs inside ``jax.enable_x64(True)`` — a scoped,
thread-local context, never the global flag — so the backend can compute in
float64 without changing how the rest of a program uses JAX. The compute dtype
is float64 by default on CPU and float32 when JAX's default backend is a GPU;
``dtype=`` overrides it.

Compilation. Kernels take arrays only and are compiled ahead of time and
cached by shape (:func:`~glmformula.backend.problem.compiled_call`): refitting
new data of the same shapes never recompiles, and :class:`Solution` reports the
compile time of the call apart from the solve time.
"""

from __future__ import annotations

import time

import attrs
import jax
import jax.numpy as jnp
import numpy as np

from ..config import config
from ..errors import (
    PENALTY_ADVICE,
    ConvergenceWarning,
    NoSpikesWarning,
    RankDeficientWarning,
    SeparationWarning,
    warn,
)
from . import families
from . import problem as pb
from .families import FAMILIES, Obs
from .lbfgs import LBFGS, Curvature
from .newton import (
    MAX_ITER,
    NO_SPIKES,
    OK,
    STALLED,
    Newton,
    NewtonRule,
    RawResult,
    reads_columns_first,
    tolerance_floor,
)
from .problem import BlockedProblem, FitData, Problem
from .proximal import ProximalNewton, ProximalRule
from .regularizers import PenaltyArrays, Regularizer, resolve_penalty

__all__ = ["Solution", "solve", "choose_solver", "default_dtype", "ColumnRangeError"]

SOLVERS = {"newton": Newton, "lbfgs": LBFGS, "proximal": ProximalNewton}

#: largest magnitude of a column of X: Hessians sum squared columns over rows (partly in
#: float32 products), which overflow to NaN weights for columns near 1e19
MAX_COLUMN_MAGNITUDE = 1e15

#: a weight that moves the log-rate by more than this many nats over the range of
#: its column (rate factor e^20 ~ 5e8) is taken as a sign of separation
SEPARATION_NATS = 20.0


#: Default tolerance of :func:`solve` on Newton's criterion (nats).
DEFAULT_TOL = 1e-8


class ColumnRangeError(ValueError):
    """Columns of X too large for the solver (beyond :data:`MAX_COLUMN_MAGNITUDE`)."""

    def __init__(self, columns, largest: float):
        self.columns = [int(j) for j in columns]
        self.largest = largest
        super().__init__(f"columns {self.columns[:10]} of X reach {largest:.3g} in absolute value, "
                         f"beyond {MAX_COLUMN_MAGNITUDE:.0e}: the Hessians' sums of squared "
                         "columns would overflow; rescale those columns")


@attrs.frozen(eq=False)
class Solution:
    """A fitted population of Poisson GLMs.

    Attributes
    ----------
    weights : ndarray (P, U)
        Exactly 0 where a unit may not use a column (``column_mask``) and for
        columns that are all zero in the fitted rows (``excluded_columns``).
    intercept : ndarray (U,)
    converged : ndarray of bool (U,)
        Criterion <= tol. Units without spikes are never "converged" (no finite MLE).
    n_iter : ndarray of int (U,)
        Iterations in which the unit moved.
    grad_norm : ndarray (U,)
        Max-abs of the penalised gradient of the mean objective (for L1/group
        penalties: of the minimum-norm subgradient, i.e. the KKT residual).
    objective : ndarray (U,)
        Mean negative log-likelihood (without ``log y!``) + penalty.
    criterion : ndarray (U,)
        The scale-aware convergence measure: rate-weighted RMS change of the
        linear predictor (nats) a further Newton step would make.
    solver : str
        The solver that ran ("newton", "lbfgs" or "proximal"), or "reml" where the smoothness
        search's own weights were the answer (already at the penalised optimum to Newton's
        criterion, see :meth:`glmformula.fitting.smoothing.SmoothingFit.certified`).
    dtype : str
        Compute precision ("float64" or "float32"); arrays are returned in it.
    compile_seconds, solve_seconds : float
        Time spent compiling kernels in this call (0.0 when every kernel was
        already compiled for these shapes) and running them.
    status : tuple of str (U,)
        "converged", "max_iter", "stalled" (line search found no decrease: the
        limit of the precision) or "no_spikes".
    rank_deficient : ndarray of bool (U,)
    excluded_columns : tuple of int
        All-zero columns (in the fitted rows): weight fixed at 0.
    n_hessian_passes, n_matmul_passes : int
        Passes over the rows forming Hessians (X.T diag(d) X for all units) and
        forming X @ V or X.T @ R (all units at once): the dominant costs.
    tol : float
        The tolerance used (after raising it to the dtype's floor).
    family : str
        The observation family fitted (:data:`~glmformula.backend.families.FAMILIES`).
    dispersion : ndarray (U,) or None
        Per unit: the negative binomial dispersion ``a`` (maximum likelihood, variance
        ``mu + a mu^2``), or the scale of the gamma (``1 / shape``) and gaussian (variance,
        in the response's squared units) families, Pearson's chi-square over the residual
        degrees of freedom (as statsmodels' GLM); None for Poisson and Bernoulli.
    information : tuple of ndarray or None
        Asked for with ``solve(..., information=True)`` (rows in memory): per unit, the Fisher
        information sums at the answer (unit dispersion, without the penalty), float64, rows
        and columns the unit's fitted columns in order, then the intercept. What standard
        errors need, from the pass the solver's own Hessian kernel makes.
    preconditioner : Curvature or None
        L-BFGS's last preconditioner (Poisson, rows in memory, one solve of all units), for a warm
        start of the same problem on some of its rows (``solve(..., preconditioner=)``);
        None for the other solvers and where it would take more than
        :data:`PRECONDITIONER_KEEP_FRACTION` of ``gf.config.memory_limit``.
    """

    weights: np.ndarray
    intercept: np.ndarray
    converged: np.ndarray
    n_iter: np.ndarray
    grad_norm: np.ndarray
    objective: np.ndarray
    criterion: np.ndarray
    solver: str
    dtype: str
    compile_seconds: float
    solve_seconds: float
    status: tuple[str, ...] = ()
    rank_deficient: np.ndarray | None = None
    excluded_columns: tuple[int, ...] = ()
    n_hessian_passes: int = 0
    n_matmul_passes: int = 0
    tol: float = float("nan")
    family: str = "poisson"
    dispersion: np.ndarray | None = None
    information: tuple | None = None
    preconditioner: Curvature | None = None


#: A solve keeps L-BFGS's last preconditioner (``Solution.preconditioner``: U (P+1)^2 numbers)
#: where it takes at most this fraction of ``gf.config.memory_limit``.
PRECONDITIONER_KEEP_FRACTION = 1 / 16


def _kept_preconditioner(raw: RawResult, s: _Setup) -> Curvature | None:
    """``raw``'s preconditioner as a :class:`Curvature` on the host, where it is small enough
    (:data:`PRECONDITIONER_KEEP_FRACTION`)."""
    if raw.preconditioner is None:
        return None
    factor, scaling = raw.preconditioner
    if factor.size * factor.dtype.itemsize > PRECONDITIONER_KEEP_FRACTION * config.memory_limit:
        return None
    return Curvature(np.asarray(factor), np.asarray(scaling), s.mask.copy(),
                     np.asarray(s.penalty.l2, float).copy(), s.quad)


@attrs.frozen(eq=False)
class ColdStart:
    """A start made from the data's marginal statistics rather than an earlier fit (the units'
    tuning curves: :func:`glmformula.fitting.starts.tuning_curve_start`), for ``solve(...,
    init=)``. The solvers of :data:`COLD_START_SOLVERS` begin there; the others begin as
    without one (L-BFGS's first preconditioner is the Fisher information at its start, the
    design's Gram matrix shared by all units at a constant rate: from tuning curves the real
    coupled head-direction model took 24.6 iterations per cell instead of 20.6).

    Attributes
    ----------
    weights : ndarray (P, U)
    intercept : ndarray (U,)
    """

    weights: np.ndarray
    intercept: np.ndarray


#: Solvers that begin at a :class:`ColdStart`.
COLD_START_SOLVERS = ("newton",)


def start_part(init, columns=slice(None), units=slice(None)):
    """The part of a start (None, (weights, intercepts) or :class:`ColdStart`) for some of its
    columns and units, of the same kind (a problem's groups and batches of units)."""
    if init is None:
        return None
    weights, intercept = ((init.weights, init.intercept) if isinstance(init, ColdStart)
                          else init[:2])
    weights = np.asarray(weights)
    part = (weights[np.ix_(np.arange(weights.shape[0])[columns],
                           np.arange(weights.shape[1])[units])],
            np.asarray(intercept)[units])
    return ColdStart(*part) if isinstance(init, ColdStart) else part


# --------------------------------------------------------------------------- choices


def default_dtype() -> str:
    """float32 on GPU (float64 is much slower on most GPUs), float64 elsewhere.

    See docs/performance_decisions.md, 'float32 by default on GPU'.
    """
    return "float32" if jax.default_backend() == "gpu" else "float64"


def _resolve_dtype(dtype) -> str:
    name = default_dtype() if dtype is None else jnp.dtype(dtype).name
    if name not in ("float32", "float64"):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    return name


def choose_solver(n_rows: int, n_cols: int, n_units: int, penalty_kind: str) -> str:
    r"""The solver ``solver="auto"`` uses (reported as ``Solution.solver``).

    - L1 or group penalties → "proximal" (proximal Newton).
    - Otherwise "newton" while ``(P+1)^2 * U <= 1e4``, else "lbfgs".

    Why: a Newton iteration costs the U Hessians (``~T P^2 U`` flops), an L-BFGS
    iteration two products with the shared design (``4 T P U`` flops, memory
    bound for one unit). With the Fisher-information preconditioner L-BFGS
    needs only ~2x Newton's iterations, so it wins as soon as the Hessians
    are not negligible. The threshold is where warm fits of the two solvers
    cross; ``n_rows`` does not move it, since both solvers' costs are linear
    in T (measured: docs/performance_decisions.md, 'Solver choice').
    """
    if penalty_kind in ("l1", "group"):
        return "proximal"
    return "newton" if (n_cols + 1) ** 2 * n_units <= 1e4 else "lbfgs"


# --------------------------------------------------------------------------- preparation


@attrs.frozen(eq=False)
class _Setup:
    """Host-side results of the statistics pass, shared by in-memory and blocked fits."""

    mask: np.ndarray  # (U, P) bool, user mask & non-empty columns
    penalty: PenaltyArrays
    active: np.ndarray  # (U,) bool
    scale: np.ndarray  # (U,)
    b0: np.ndarray  # (U,)
    W0: np.ndarray  # (P, U)
    n: float
    excluded: tuple[int, ...]
    col_max: np.ndarray  # (P,)
    quad: np.ndarray | None = None  # (U, P, P) quadratic penalty (mean objective)


_NOT_FINITE = "the data contain NaN or infinite values (X, y, offset or row_weight)"


def _setup(stats, column_mask, column_groups, regularizer, init, n_cols, n_units,
           penalty_matrix=None) -> _Setup:
    n, spikes, off_mass, col_range, col_max, bad, negative = (np.asarray(x, dtype=float)
                                                              for x in stats)
    if bad:
        raise ValueError(_NOT_FINITE)
    if negative:
        raise ValueError("y must be non-negative spike counts and row_weight non-negative")
    n = float(n)
    if not n > 0:
        raise ValueError("all row weights are zero: nothing to fit")
    huge = np.flatnonzero(col_max > MAX_COLUMN_MAGNITUDE)
    if huge.size:
        raise ColumnRangeError(huge, float(col_max[huge].max()))
    nonempty = col_range > 0
    mask = (np.ones((n_units, n_cols), bool) if column_mask is None
            else np.asarray(column_mask, bool).copy())
    mask &= nonempty[None, :]
    penalty = resolve_penalty(regularizer, column_groups, mask)
    active = spikes > 0
    # No spikes: the MLE of the intercept is -inf. Use the value that predicts
    # half a spike over all fitted rows (the usual 0.5-count correction).
    with np.errstate(divide="ignore"):
        b0 = np.where(active, np.log(np.where(active, spikes, 0.5) / off_mass),
                      np.log(0.5 / off_mass))
    scale = np.where(active, spikes / n, 1.0)
    quad = None
    if penalty_matrix is not None and np.any(penalty_matrix):
        keep = mask.astype(float)  # a masked column's weight is 0: its penalty rows are too
        quad = penalty_matrix * keep[:, :, None] * keep[:, None, :]
    s = _Setup(mask, penalty, active, scale, b0, np.zeros((n_cols, n_units)), n,
               tuple(np.flatnonzero(~nonempty).tolist()), col_max, quad)
    return s if init is None else _started(s, init)


def _started(s: _Setup, init) -> _Setup:
    """``s`` beginning at ``init`` (a Solution, :class:`ColdStart` or (weights, intercepts)):
    weights only on the columns each unit reads, units without spikes at their own
    intercept."""
    n_cols, n_units = s.W0.shape
    Wi, bi = (init.weights, init.intercept) if isinstance(init, (Solution, ColdStart)) else init
    W0 = np.broadcast_to(np.asarray(Wi, float).reshape(n_cols, -1), (n_cols, n_units))
    b0 = np.where(s.active, np.broadcast_to(np.asarray(bi, float), (n_units,)), s.b0)
    return attrs.evolve(s, W0=W0 * s.mask.T * s.active[None, :], b0=b0)


def _fit_data(block: pb.Block, s: _Setup, dtype) -> FitData:
    a = lambda x: jnp.asarray(x, dtype)
    p = s.penalty
    return FitData(
        block, a(s.mask.T), a(p.l2), a(p.l1), a(p.group_matrix), a(p.group_strength),
        a(s.W0), a(s.b0), a(s.n), a(s.scale), jnp.asarray(s.active),
        None if s.quad is None else a(s.quad),
    )


# --------------------------------------------------------------------------- results and warnings

_STATUS = {0: "converged", MAX_ITER: "max_iter", STALLED: "stalled", NO_SPIKES: "no_spikes"}


@attrs.frozen
class _Names:
    """How warnings name units and columns (ids and column labels, or positions)."""

    units: tuple | None = None
    columns: tuple | None = None

    def unit_list(self, idx) -> list:
        idx = [int(i) for i in idx]
        return idx if self.units is None else [self.units[i] for i in idx]

    def of_units(self, idx) -> str:
        names = self.unit_list(idx)
        shown = ", ".join(map(str, names[:20]))
        return f"units {shown}" + (f", ... ({len(names)} units)" if len(names) > 20 else "")

    def of_columns(self, idx) -> str:
        idx = [int(i) for i in idx]
        if self.columns is None:  # positions; -1 is the intercept
            return f"columns {idx[:20]}" + (" (-1: the intercept)" if -1 in idx else "")
        names = ["the intercept" if i < 0 else repr(self.columns[i]) for i in idx[:8]]
        more = f", ... ({len(idx)} columns)" if len(idx) > 8 else ""
        return "columns " + ", ".join(names) + more


def _names(problem) -> _Names:
    return _Names(problem.unit_names, problem.column_names)


def _finish(raw: RawResult, s: _Setup, solver: str, dtype: str, tol: float, compile_s: float,
            run_s: float, max_iter: int, names: _Names, X: np.ndarray | None = None,
            family: str = "poisson", dispersion=None, information=None,
            preconditioner: Curvature | None = None) -> Solution:
    raw = jax.tree_util.tree_map(np.asarray, raw._replace(preconditioner=None))
    if X is not None and not np.all(np.isfinite(raw.objective)) and not np.all(np.isfinite(X)):
        # block_stats' range of the columns misses an isolated NaN (XLA's CPU maximum over
        # the rows skips it): the objective shows it, checked here where it is not finite
        raise ValueError(_NOT_FINITE)
    W = np.where(s.mask.T, raw.W, 0.0).astype(raw.W.dtype)
    status = tuple(_STATUS.get(int(c), "max_iter") if not conv else "converged"
                   for c, conv in zip(raw.status, raw.converged))
    sol = Solution(
        weights=W, intercept=raw.b, converged=raw.converged, n_iter=raw.n_iter,
        grad_norm=raw.grad_norm, objective=raw.objective, criterion=raw.criterion, solver=solver,
        dtype=dtype, compile_seconds=compile_s, solve_seconds=run_s, status=status,
        rank_deficient=raw.rank_deficient, excluded_columns=s.excluded,
        n_hessian_passes=int(raw.n_hessian), n_matmul_passes=int(raw.n_matmul),
        tol=tol, family=family,
        dispersion=None if dispersion is None else np.asarray(dispersion, float),
        information=None if information is None else _per_unit(information, s.mask),
        preconditioner=preconditioner,
    )
    _warn(sol, s, max_iter, names, X)
    return sol


def _information_sums(block: pb.Block, W, b, strategy: str):
    """Fisher information sums of every unit at ``(W, b)``, intercept last (U, P+1, P+1): one
    pass with the solvers' Hessian kernel."""
    if block.X is None:  # laid out columns first (Poisson: Fisher = observed information)
        return pb.poisson_model_sums_columns(block.Xt, block.Y, block.rw, block.offset, W, b,
                                             ("hessian",))[0]
    eta = pb.linear_predictor(block, W, b)
    return pb.hessian_sum(block.X, pb.fisher_curvature(eta, block.rw, block.obs), strategy)


def _information(block: pb.Block, raw: RawResult) -> tuple[np.ndarray, float]:
    """:func:`_information_sums` at a solver's answer, and its compile time."""
    P, U = raw.W.shape
    info, compile_s, _ = pb.compiled_call(_information_sums,
                                          {"strategy": pb.hessian_strategy(U, P)},
                                          block, raw.W, raw.b)
    return np.asarray(info, float), compile_s


def _per_unit(information: np.ndarray, mask: np.ndarray) -> tuple:
    """Each unit's rows and columns of (U, P+1, P+1) sums: its columns, then the intercept."""
    P = mask.shape[1]
    out = []
    for u, matrix in enumerate(information):
        keep = np.r_[np.flatnonzero(mask[u]), P]
        out.append(matrix[np.ix_(keep, keep)])
    return tuple(out)


def _null_columns(X: np.ndarray, mask_u: np.ndarray) -> list[int]:
    """Columns carrying the (numerical) null space of [X, 1] restricted to a unit's columns."""
    cols = np.flatnonzero(mask_u)
    A = np.concatenate([X[:, cols], np.ones((X.shape[0], 1))], axis=1)
    G = A.T @ A
    d = np.sqrt(np.maximum(np.diag(G), 1e-300))
    lam, V = np.linalg.eigh(G / d[:, None] / d[None, :])
    null = V[:, lam < lam.max() * 1e-9]
    if null.shape[1] == 0:
        null = V[:, :1]
    involved = np.flatnonzero(np.abs(null).max(axis=1) > 1e-3)
    return [int(cols[i]) if i < cols.size else -1 for i in involved]


def _warn(sol: Solution, s: _Setup, max_iter: int, names: _Names, X) -> None:
    no_spikes = np.flatnonzero(~s.active)
    if no_spikes.size:
        warn(
            f"{names.of_units(no_spikes)} have no spikes in the fitted rows: their intercept has "
            "no finite maximum-likelihood value (it tends to -inf); it was set to predict half a "
            "spike over the fitted rows and the weights to 0. A Ridge does not change this (the "
            "intercept is unpenalised); drop these units or fit them on rows where they fire.",
            NoSpikesWarning, units=names.unit_list(no_spikes),
        )
    with np.errstate(invalid="ignore", over="ignore"):
        reach = np.abs(sol.weights) * s.col_max[:, None]
    if sol.family == "gaussian":  # identity link: weights are in the response's units
        reach = np.zeros_like(reach)
    separated = np.flatnonzero(s.active & (reach.max(axis=0) > SEPARATION_NATS))
    if separated.size:
        cols = sorted({int(j) for u in separated
                       for j in np.flatnonzero(reach[:, u] > SEPARATION_NATS)})
        warn(
            f"{names.of_units(separated)} have weights that change the log-rate by more than "
            f"{SEPARATION_NATS:g} nats ({names.of_columns(cols)}): the data (nearly) separate, "
            "e.g. a feature active only where the unit never fires, and the unpenalised MLE is "
            "infinite. The returned weights are finite but arbitrary along that direction "
            "(where the solver stopped), and so are the held-out scores of these units; a "
            f"penalty makes them unique: {PENALTY_ADVICE}.",
            SeparationWarning, units=names.unit_list(separated),
        )
    deficient = np.flatnonzero(sol.rank_deficient & s.active)
    if deficient.size:
        detail = ""
        if X is not None:
            first = names.unit_list(deficient[:1])[0]
            detail = (f" For unit {first} the dependent ones are "
                      f"{names.of_columns(_null_columns(X, s.mask[deficient[0]]))}.")
        warn(
            f"the design is (numerically) rank deficient for {names.of_units(deficient)}: some "
            f"weights are not identified.{detail} The fit stayed finite (a jitter was added to the "
            "Hessian) but those weights are arbitrary; remove the redundant columns or add a Ridge "
            "penalty (e.g. gf.Ridge(1e-3)), which makes the answer unique (smoothing='auto', the "
            "default, penalises only a basis term's roughness, which can leave a redundancy).",
            RankDeficientWarning, units=names.unit_list(deficient),
        )
    failed = np.flatnonzero(s.active & ~sol.converged)
    if failed.size:
        causes = []
        if any(sol.status[u] == "max_iter" for u in failed):
            causes.append(f"the iteration limit (max_iter={max_iter}) was reached: raise max_iter")
        if any(sol.status[u] == "stalled" for u in failed):
            causes.append(
                "the line search found no decrease before the criterion met tol: rounding limits "
                "the precision "
                + ("(use dtype='float64')" if sol.dtype == "float32" else "(loosen tol)")
            )
        if np.intersect1d(failed, separated).size:
            causes.append(f"separation (see SeparationWarning): {PENALTY_ADVICE}")
        if np.intersect1d(failed, deficient).size:
            causes.append("a rank-deficient design: remove the redundant columns or add a Ridge "
                          "penalty (e.g. gf.Ridge(1e-3))")
        worst = float(np.max(sol.criterion[failed]))
        warn(
            f"{sol.solver} did not converge for {names.of_units(failed)} (largest criterion "
            f"{worst:.3g} > tol "
            f"{sol.tol:.3g}). Likely cause: {'; '.join(causes) or 'slow convergence'}.",
            ConvergenceWarning, units=names.unit_list(failed),
        )


# --------------------------------------------------------------------------- in memory


def _make_solver(solver: str, penalty: PenaltyArrays, n_rows, n_cols, n_units, tol, max_iter,
                 **options):
    name = choose_solver(n_rows, n_cols, n_units, penalty.kind) if solver == "auto" else solver
    if name not in SOLVERS:
        raise ValueError(f"solver must be 'auto' or one of {sorted(SOLVERS)}, got {solver!r}")
    if not penalty.smooth and name != "proximal":
        raise ValueError(f"solver {name!r} cannot handle an L1/group penalty; "
                         "use solver='proximal' or 'auto'")
    cls = SOLVERS[name]
    kwargs = dict(tol=tol)
    if max_iter is not None:
        kwargs["max_iter"] = int(max_iter)
    known = set(attrs.fields_dict(cls)) - {"tol", "max_iter"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for solver {name!r}; it takes "
                         f"{sorted(known) or 'no options'} besides tol and max_iter")
    kwargs.update(options)
    return cls(**kwargs)


def solve(
    problem: Problem | BlockedProblem,
    *,
    regularizer: Regularizer | None = None,
    solver: str = "auto",
    tol: float = DEFAULT_TOL,
    max_iter: int | None = None,
    dtype=None,
    init=None,
    family: str = "poisson",
    dispersion=None,
    information: bool = False,
    preconditioner: Curvature | None = None,
    **options,
) -> Solution:
    """Fit a Poisson GLM (or another observation family's) per unit on a shared design.

    Parameters
    ----------
    problem : Problem or BlockedProblem
        Rows in memory, or in blocks (then ``solver`` may be "newton" or "proximal": both
        need one pass for value, gradient and Hessians and one for the line search; "auto"
        picks between them). The answers agree to the tolerance.
    regularizer : Ridge, Lasso, ElasticNet, GroupLasso, optional
    solver : {"auto", "newton", "lbfgs", "proximal"}
        "auto" follows :func:`choose_solver`; the choice is ``Solution.solver``.
    tol : float
        Tolerance on the scale-aware criterion: the rate-weighted RMS change of
        the linear predictor (log-rate, nats) that one more Newton step would
        make. Raised to the dtype's floor (1e-12 float64, 1e-5 float32).
    max_iter : int, optional
        Solver iteration limit (default: the solver's own).
    dtype : {"float64", "float32"}, optional
        Default float64 on CPU, float32 on GPU.
    init : Solution or (weights (P, U), intercept (U,)), optional
        Warm start (default: weights 0, intercept at the mean rate).
    family : {"poisson", "bernoulli", "negative_binomial", "gamma", "gaussian"}
        The observation family (link: log, logit, log, log, identity; losses in
        :mod:`~glmformula.backend.families`). ``y`` must then be counts >= 0, 0/1, counts
        >= 0, values > 0 or any finite values.
    dispersion : array (U,) or float, optional
        Negative binomial only: a fixed dispersion ``a``. Default: estimated per unit by
        maximum likelihood, alternating fits of the weights at fixed ``a`` with a safeguarded
        Newton iteration on ``log a`` at fixed weights until ``log a`` moves by less than
        1e-9 (the joint maximum of the likelihood; ``Solution.dispersion``).
    information : bool
        Also return the Fisher information sums at the answer (``Solution.information``;
        one more pass; rows in memory only, ignored for rows in blocks).
    preconditioner : Curvature, optional
        ``Solution.preconditioner`` of an L-BFGS fit of this problem on other rows (e.g. all
        rows, for a cross-validation fold): a warm L-BFGS start begins with it where it fits
        (:meth:`Curvature.fits`: the same columns and penalty); ignored otherwise.
    **options
        Solver settings declared by the solver class, e.g. ``history=`` for L-BFGS; an
        unknown name is an error.

    Returns
    -------
    Solution

    Warns
    -----
    ConvergenceWarning, NoSpikesWarning, SeparationWarning, RankDeficientWarning
        Naming units and columns by ``problem.unit_names`` / ``column_names``.
    """
    if family != "poisson":
        return _solve_family(problem, family, dispersion, regularizer=regularizer,
                             solver=solver, tol=tol, max_iter=max_iter, dtype=dtype, init=init,
                             information=information, **options)
    if isinstance(problem, BlockedProblem):
        return _solve_blocked(problem, regularizer=regularizer, solver=solver, tol=tol,
                              max_iter=max_iter, dtype=dtype, init=init, **options)
    name = _resolve_dtype(dtype)
    with jax.enable_x64(True):
        dt = jnp.dtype(name)
        t0 = time.perf_counter()
        transposed = pb.columns_first(problem.X)
        block = pb.block_from_arrays(problem.X, problem.y, problem.offset, problem.row_weight, dt,
                                     problem.n_units, transposed=transposed)
        stats, c0 = _block_stats(block, problem.column_max)
        cold = isinstance(init, ColdStart)
        s = _setup(stats, problem.column_mask, problem.column_groups, regularizer,
                   None if cold else init, problem.n_cols, problem.n_units,
                   problem.penalty_matrix)
        algo = _make_solver(solver, s.penalty, problem.n_rows, problem.n_cols, problem.n_units, tol,
                            max_iter, **options)
        if transposed and not reads_columns_first(algo):  # every other solver reads rows
            block = block._replace(X=pb.to_device(np.ascontiguousarray(problem.X), dt), Xt=None)
        if cold and algo.name in COLD_START_SOLVERS:
            s = _started(s, init)
        data = _fit_data(block, s, dt)
        if (isinstance(algo, LBFGS) and preconditioner is not None
                and preconditioner.fits(s.mask, s.penalty.l2, s.quad)):
            data = data._replace(preconditioner=(jnp.asarray(preconditioner.factor, dt),
                                                 jnp.asarray(preconditioner.scaling, dt)))
        raw, c1, _ = algo.run(data)
        # kept or let go now: a large population's factors are not held through the
        # information pass
        kept = _kept_preconditioner(raw, s)
        raw = raw._replace(preconditioner=None)
        info, c2 = _information(block, raw) if information else (None, 0.0)
        wall = time.perf_counter() - t0
    eff_tol = max(tol, _floor(name))
    return _finish(raw, s, algo.name, name, eff_tol, c0 + c1 + c2, wall - c0 - c1 - c2,
                   algo.max_iter, _names(problem), problem.X, information=info,
                   preconditioner=kept)


def _block_stats(block: pb.Block, column_max: np.ndarray | None):
    """:func:`~.problem.block_stats` and its compile seconds; with ``column_max`` known
    (:attr:`~.problem.Problem.column_max`) without reading ``X`` (a group of units' columns:
    6-16 ms a group of the real history model's 226k rows, a fifth of its solver calls'
    work besides the loops), that array checked for non-finite values in its place."""
    stats, compile_s, _ = pb.compiled_call(pb.block_stats, {"columns": column_max is None},
                                           block)
    if column_max is None:
        return stats, compile_s
    n, spikes, off_mass, _, _, bad, negative = stats
    bad = np.asarray(bad) | ~np.all(np.isfinite(column_max))
    return (n, spikes, off_mass, column_max, column_max, bad, negative), compile_s


def _floor(dtype_name: str) -> float:
    return tolerance_floor(jnp.dtype(dtype_name))


# --------------------------------------------------------------------------- blocked


def _solve_blocked(problem: BlockedProblem, *, regularizer=None, solver="auto", tol=1e-8,
                   max_iter=None, dtype=None, init=None, **options) -> Solution:
    """:func:`solve` for rows in blocks (see :func:`run_blocked`)."""
    name = _resolve_dtype(dtype)
    n_cols, n_units = problem.n_cols, problem.n_units
    with jax.enable_x64(True):
        dt = jnp.dtype(name)
        t0 = time.perf_counter()
        reader = _BlockReader(problem.blocks, dt, n_cols, n_units)
        stats = reader.stats()
        cold = isinstance(init, ColdStart)
        s = _setup(stats, problem.column_mask, problem.column_groups, regularizer,
                   None if cold else init, n_cols, n_units, problem.penalty_matrix)
        if solver == "auto":
            solver = "newton" if s.penalty.smooth else "proximal"
        algo = _make_solver(solver, s.penalty, 0, n_cols, n_units, tol, max_iter, **options)
        if algo.name not in ("newton", "proximal"):
            raise ValueError(f"rows in blocks are fitted with solver 'newton' or 'proximal', "
                             f"not {algo.name!r}")
        if cold and algo.name in COLD_START_SOLVERS:
            s = _started(s, init)
        raw = run_blocked(reader, s, algo, dt)
        wall = time.perf_counter() - t0
    eff_tol = max(tol, _floor(name))
    return _finish(raw, s, algo.name, name, eff_tol, reader.compile_seconds,
                   wall - reader.compile_seconds, algo.max_iter, _names(problem))


class _BlockReader:
    """Runs a kernel over every row block and sums the results (one pass over the data)."""

    def __init__(self, blocks, dtype, n_cols: int, n_units: int):
        self.blocks, self.dtype, self.n_cols, self.n_units = blocks, dtype, n_cols, n_units
        self.rows: int | None = None
        self.compile_seconds = 0.0
        self.passes = 0
        self.obs = None  # the rows' observation family (None: Poisson)

    def _device_blocks(self):
        for p in self.blocks():
            X = np.asarray(p.X)
            y = np.asarray(p.counts)
            y = y[:, None] if y.ndim == 1 else y
            T = X.shape[0]
            if X.shape[1] != self.n_cols or y.shape != (T, self.n_units):
                raise ValueError(f"block shapes X {X.shape}, y {y.shape} do not match "
                                 f"n_cols={self.n_cols}, n_units={self.n_units}")
            if self.rows is None:
                self.rows = T
            if T > self.rows:
                raise ValueError(f"block of {T} rows after a first block of {self.rows}: "
                                 "blocks must not grow")
            off, rw = p.offset, p.row_weight
            if rw is None:
                rw = np.ones(T)
            if T < self.rows:
                # pad to the fixed block shape so the kernels compile once; weight 0 rows add
                # nothing
                pad = self.rows - T
                X = np.concatenate([X, np.zeros((pad, X.shape[1]), X.dtype)])
                y = np.concatenate([y, np.zeros((pad, y.shape[1]), y.dtype)])
                rw = np.concatenate([rw, np.zeros(pad)])
                if off is not None:
                    off = np.concatenate([off, np.zeros((pad,) + off.shape[1:], off.dtype)])
            yield pb.block_from_arrays(X, y, off, rw, self.dtype, self.n_units, self.obs)

    def sum(self, fn, static, *args, combine=None):
        total = None
        for block in self._device_blocks():
            out, c, _ = pb.compiled_call(fn, static, block, *args)
            self.compile_seconds += c
            if total is None:
                total = out
            else:
                total = (combine(total, out) if combine
                         else jax.tree_util.tree_map(jnp.add, total, out))
        if total is None:
            raise ValueError("blocks() yielded no blocks")
        self.passes += 1
        return total

    def stats(self):
        def combine(a, b):
            return (*[x + y for x, y in zip(a[:4], b[:4])],
                    *[jnp.maximum(x, y) for x, y in zip(a[4:], b[4:])])

        return self.sum(pb.block_stats, {}, combine=combine)

    def moments(self):
        def combine(a, b):
            return (a[0] + b[0], a[1] + b[1], jnp.minimum(a[2], b[2]), jnp.maximum(a[3], b[3]),
                    jnp.minimum(a[4], b[4]))

        return self.sum(pb.block_moments, {}, combine=combine)

    def call(self, fn, static, *args):
        out, c, _ = pb.compiled_call(fn, static, *args)
        self.compile_seconds += c
        return out


def _assemble(data: FitData, sums, W, *, rule):
    """Block sums → mean objective (incl. penalty), masked gradient, penalised Hessians."""
    loss, gw, gb, mag, Hsum = sums
    inv_n = 1.0 / data.n
    ridge = pb.penalty_value(data, W)
    h = rule.nonsmooth(data, W)
    gw = (gw * inv_n + pb.penalty_gradient(data, W)) * data.mask
    g = jnp.concatenate([gw, (gb * inv_n)[None, :]], axis=0) * data.active[None, :]
    return loss * inv_n + ridge + h, g, mag * inv_n + ridge + h, pb.penalised_hessian(data, Hsum)


def _direction(data: FitData, H, g, W, b, *, rule):
    step, slope, crit, _, deficient = rule.direction(data, H, g, W, b)
    return step, slope, crit, deficient, rule.grad_norm(data, g, W)


def _line_objective(data: FitData, loss_k, W, dW, steps, *, rule):
    """Objective at W + a dW for the K steps from the line-search pass's loss sums (K, U)."""
    Wk = W[None] + steps[:, None, :] * dW[None]
    ridge = jax.vmap(lambda w: pb.penalty_value(data, w))(Wk)
    h = jax.vmap(lambda w: rule.nonsmooth(data, w))(Wk)
    return loss_k / data.n + ridge + h


def run_blocked(reader: _BlockReader, s: _Setup, algo, dt, n_steps: int = 8,
                c: float = 1e-4) -> RawResult:
    """Newton / proximal Newton driven from the host, two passes over the blocks per iteration.

    Pass 1 sums value, gradient and Hessians at the current point; pass 2 sums
    the loss at ``n_steps`` trial steps ``1, 1/2, ...`` at once (eta is linear in
    the step, so one pass serves all of them). The step rules are the same
    compiled functions the in-memory solvers use.
    """
    P, U = s.W0.shape
    data = _fit_data(None, s, dt)
    rule = NewtonRule() if algo.name == "newton" else ProximalRule(algo.max_inner)
    strategy = pb.hessian_strategy(U, P)
    tol = max(algo.tol, tolerance_floor(dt))
    eps = float(jnp.finfo(dt).eps)
    W, b = data.W0, data.b0
    active = np.asarray(s.active)
    done = ~active
    n_iter = np.zeros(U, np.int32)
    status = np.where(active, OK, NO_SPIKES)
    deficient_any = np.zeros(U, bool)
    crit = np.full(U, np.inf)
    n_hess = 0
    for _ in range(algo.max_iter + 1):
        sums = reader.sum(pb.block_value_grad_hessian, dict(strategy=strategy), W, b)
        n_hess += 1
        f, g, mag, H = reader.call(_assemble, dict(rule=rule), data, sums, W)
        step, slope, crit_now, deficient, gnorm = reader.call(_direction, dict(rule=rule), data, H,
                                                              g, W, b)
        crit = np.where(done & ~active, crit, np.asarray(crit_now))
        deficient_any |= np.asarray(deficient) & active
        done = done | (crit <= tol)
        if done.all() or n_hess > algo.max_iter:
            break
        go = ~done
        step = jnp.where(jnp.asarray(go)[None, :], step, 0.0)
        dW, db = step[:P], step[P]
        # rounding of sums over all rows, as newton.backtrack allows
        f_np, slope_np = np.asarray(f), np.asarray(slope)
        slack = 64 * eps * np.asarray(mag) * float(s.n) ** 0.5
        a = np.zeros(U)
        pending = go.copy()
        for first in range(0, 40, n_steps):
            steps = jnp.asarray(np.repeat(0.5 ** np.arange(first, first + n_steps)[:, None], U, 1),
                                dt)
            loss_k = reader.sum(pb.block_line_values, {}, W, b, dW, db, steps)
            fk = np.asarray(reader.call(_line_objective, dict(rule=rule), data, loss_k, W, dW,
                                        steps, ))
            steps_np = np.asarray(steps)
            ok = fk <= f_np[None] + c * steps_np * slope_np[None] + slack[None]
            first_ok = np.argmax(ok, axis=0)
            found = pending & ok.any(axis=0)
            a = np.where(found, steps_np[first_ok, np.arange(U)], a)
            pending &= ~found
            if not pending.any():
                break
        stalled = pending
        status = np.where(stalled, STALLED, status)
        done = done | stalled
        n_iter += go & ~stalled
        a_dev = jnp.asarray(a, dt)
        W = W + a_dev * dW
        b = b + a_dev * db
    converged = active & (crit <= tol)
    status = np.where(active & ~converged & (status == OK), MAX_ITER, status)
    return RawResult(W, b, f, jnp.asarray(crit), gnorm, jnp.asarray(converged), jnp.asarray(n_iter),
                     jnp.asarray(status), jnp.asarray(deficient_any), jnp.asarray(n_hess),
                     jnp.asarray(reader.passes))


# --------------------------------------------------------------------------- other families

#: Outer iterations of a negative binomial fit with its dispersion estimated (weights at fixed
#: dispersion, then the dispersion at fixed weights) and the change of ``log a`` (all units)
#: that ends them (float64; 1e-4 in float32, which rounds finer changes away).
NB_MAX_OUTER, NB_TOL = 100, 1e-9


def _family_setup(stats, moments, family: str, alpha, column_mask, column_groups, regularizer,
                  init, n_cols, n_units, penalty_matrix) -> _Setup:
    """:func:`_setup` for a family other than Poisson: its checks of ``y``, the units it fits
    (all for the continuous families), its starting intercept and the scale of the
    convergence criterion (the Fisher weight at the mean; the variance of ``y`` for the
    gaussian, so that the criterion is in units of the response's spread)."""
    y2, off_sum, y_min, y_max, rw_min = (np.asarray(x, dtype=float) for x in moments)
    if rw_min < 0:
        raise ValueError("row_weight must be non-negative")
    if family in ("bernoulli", "negative_binomial") and np.any(y_min < 0):
        raise ValueError(f"the {family} family needs counts y >= 0")
    if family == "bernoulli" and np.any(y_max > 1):
        raise ValueError("the bernoulli family needs y in {0, 1} (spike / no spike per bin)")
    if family == "gamma" and np.any(y_min <= 0):
        bad = np.flatnonzero(y_min <= 0).tolist()
        raise ValueError(f"the gamma family needs y > 0; units {bad[:10]} have values <= 0")
    patched = tuple(stats[:6]) + (np.asarray(False),)  # y and row weights checked here
    s = _setup(patched, column_mask, column_groups, regularizer, init, n_cols, n_units,
               penalty_matrix)
    n = s.n
    spikes = np.asarray(stats[1], float)
    m = spikes / n
    counts = family in ("bernoulli", "negative_binomial")
    active = spikes > 0 if counts else np.ones(n_units, bool)
    if family == "bernoulli":
        p = np.clip(np.where(active, m, 0.5 / n), 1e-12, 1 - 1e-12)
        b0 = np.log(p / (1 - p)) - off_sum / n
        scale = np.where(active, p * (1 - p), 1.0)
    elif family == "negative_binomial":
        b0 = s.b0
        scale = np.where(active, m / (1.0 + np.asarray(alpha, float) * m), 1.0)
    elif family == "gamma":
        b0, scale = s.b0, np.ones(n_units)
    else:  # gaussian
        b0 = (spikes - off_sum) / n
        var = y2 / n - m * m
        scale = np.where(var > 0, var, 1.0)
    s = attrs.evolve(s, active=active, b0=np.asarray(b0, float), W0=np.zeros((n_cols, n_units)),
                     scale=np.asarray(scale, float))
    return s if init is None else _started(s, init)


def _solve_family(problem, family: str, dispersion, *, regularizer=None, solver="auto",
                  tol=1e-8, max_iter=None, dtype=None, init=None, information=False,
                  **options) -> Solution:
    """:func:`solve` for the families other than Poisson (rows in memory or in blocks): the
    same solvers with the family's loss (:mod:`.families`); the negative binomial dispersion
    by alternation (see :func:`solve`); the gamma and gaussian scale, after the fit, as
    Pearson's chi-square over ``n - p`` (``p``: the unit's free parameters)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; families: {', '.join(FAMILIES)}")
    name = _resolve_dtype(dtype)
    blocked = isinstance(problem, BlockedProblem)
    n_cols, n_units = problem.n_cols, problem.n_units
    penalty_matrix = getattr(problem, "penalty_matrix", None)
    estimate = family == "negative_binomial" and dispersion is None
    alpha = None
    if family == "negative_binomial" and not estimate:
        alpha = np.broadcast_to(np.asarray(dispersion, float), (n_units,)).copy()
        if not np.all(np.isfinite(alpha) & (alpha > 0)):
            raise ValueError(f"the negative binomial dispersion must be positive, got {alpha}")
    with jax.enable_x64(True):
        dt = jnp.dtype(name)
        t0 = time.perf_counter()
        compile_s = 0.0
        if blocked:
            reader = _BlockReader(problem.blocks, dt, n_cols, n_units)
            stats, moments = reader.stats(), reader.moments()
        else:
            block = pb.block_from_arrays(problem.X, problem.y, problem.offset,
                                         problem.row_weight, dt, n_units)
            stats, c0 = _block_stats(block, problem.column_max)
            moments, c1, _ = pb.compiled_call(pb.block_moments, {}, block)
            compile_s += c0 + c1
        algo = None

        def run(fam_name, a, start):
            nonlocal algo, compile_s, solver
            if fam_name == "poisson":
                s = _setup(stats, problem.column_mask, problem.column_groups, regularizer,
                           start, n_cols, n_units, penalty_matrix)
            else:
                s = _family_setup(stats, moments, fam_name, a, problem.column_mask,
                                  problem.column_groups, regularizer, start, n_cols, n_units,
                                  penalty_matrix)
            if algo is None:
                if blocked and solver == "auto":
                    solver = "newton" if s.penalty.smooth else "proximal"
                algo = _make_solver(solver, s.penalty, problem.n_rows, n_cols, n_units, tol,
                                    max_iter, **options)
                if blocked and algo.name not in ("newton", "proximal"):
                    raise ValueError(f"rows in blocks are fitted with solver 'newton' or "
                                     f"'proximal', not {algo.name!r}")
            obs = Obs(fam_name, None if a is None else jnp.asarray(a, dt))
            if blocked:
                reader.obs = obs
                return run_blocked(reader, s, algo, dt), s
            raw, c, _ = algo.run(_fit_data(block._replace(obs=obs), s, dt))
            compile_s += c
            return raw, s

        if not estimate:
            raw, s = run(family, alpha, init)
        else:
            raw, s = run("poisson", None, init)  # the Poisson fit: a start for the weights
            survival = jnp.asarray(_nb_counts(problem), dt)
            nb_tol = NB_TOL if dt == jnp.float64 else 1e-4
            k_fit = np.zeros(n_units)
            work = (raw.n_iter, raw.n_hessian, raw.n_matmul)  # over all the fits made
            for outer in range(NB_MAX_OUTER):
                k_new = _nb_log_alpha(reader if blocked else block, blocked, raw, k_fit,
                                      s.active, dt, survival)
                if isinstance(k_new, tuple):
                    k_new, c = k_new
                    compile_s += c
                moved = float(np.max(np.abs(k_new - k_fit)[s.active], initial=0.0))
                if outer > 0 and moved <= nb_tol:
                    break
                k_fit = k_new
                raw, s = run(family, np.exp(k_fit), (raw.W, raw.b))
                work = tuple(a + b for a, b in zip(work, (raw.n_iter, raw.n_hessian,
                                                          raw.n_matmul)))
            else:
                moving = np.flatnonzero(s.active & (np.abs(k_new - k_fit) > nb_tol))
                warn(f"the negative binomial dispersion did not settle in {NB_MAX_OUTER} "
                     f"alternations for {_names(problem).of_units(moving)} (log a still moves "
                     f"by {moved:.3g})", ConvergenceWarning,
                     units=_names(problem).unit_list(moving))
            alpha = np.where(s.active, np.exp(k_fit), np.nan)
            raw = raw._replace(n_iter=work[0], n_hessian=work[1], n_matmul=work[2])
        dispersion_out = alpha
        if family in ("gamma", "gaussian"):
            if blocked:
                pearson = reader.sum(pb.block_pearson, {}, raw.W, raw.b)
            else:
                pearson, c, _ = pb.compiled_call(pb.block_pearson, {},
                                                 block._replace(obs=Obs(family)), raw.W, raw.b)
                compile_s += c
            df = s.n - (s.mask.sum(axis=1) + 1)
            with np.errstate(divide="ignore", invalid="ignore"):
                dispersion_out = np.where(df > 0, np.asarray(pearson, float) / df, np.nan)
        info = None
        if information and not blocked:
            theta = None if alpha is None else jnp.asarray(
                np.nan_to_num(np.broadcast_to(np.asarray(alpha, float), (n_units,)), nan=1.0), dt)
            info, c = _information(block._replace(obs=Obs(family, theta)), raw)
            compile_s += c
        wall = time.perf_counter() - t0
    if blocked:
        compile_s = reader.compile_seconds
    eff_tol = max(tol, _floor(name))
    return _finish(raw, s, algo.name, name, eff_tol, compile_s, wall - compile_s,
                   algo.max_iter, _names(problem), None if blocked else problem.X,
                   family=family, dispersion=dispersion_out, information=info)


def _nb_counts(problem) -> np.ndarray:
    """:func:`~glmformula.backend.families.nb_survival` of the problem's counts (whole numbers
    are required: a negative binomial models counts); rows in blocks are read once more."""
    def parts():
        if not isinstance(problem, BlockedProblem):
            yield problem.y, problem.row_weight
            return
        for p in problem.blocks():
            yield np.asarray(p.counts, float), p.row_weight

    def checked():
        for y, w in parts():
            y = np.asarray(y, float)
            used = np.ones(len(y), bool) if w is None else np.asarray(w) > 0
            if np.any(y[used] != np.round(y[used])):
                raise ValueError("the negative_binomial family needs whole counts y")
            yield y, w

    return families.nb_survival(checked())


def _nb_log_alpha(source, blocked: bool, raw, log_alpha, active, dt, survival):
    """The maximum-likelihood ``log a`` per unit at the weights of ``raw`` (U,): in memory
    one compiled search (returns it with the compile time), in blocks one pass over the rows
    per Newton step."""
    W, b = raw.W, raw.b
    k = jnp.asarray(log_alpha, dt)
    act = jnp.asarray(active)
    if not blocked:
        out, c, _ = pb.compiled_call(pb.nb_dispersion, {}, source, W, b, k, act, survival)
        return np.asarray(out, float), c
    U = k.shape[0]
    lo, hi = jnp.full(U, -jnp.inf, dt), jnp.full(U, jnp.inf, dt)
    for _ in range(families.NB_INNER_MAX):
        lk, lkk = source.sum(pb.block_nb_score, {}, W, b, k)
        ck, ckk = families.nb_score_counts(k, survival)
        lk, lkk = lk + ck, lkk + ckk
        k, lo, hi, step = families.nb_iteration(k, lk, lkk, lo, hi, act)
        if not bool(jnp.any(act & (step > families.nb_inner_tol(dt)))):
            break
    return np.asarray(k, float)
