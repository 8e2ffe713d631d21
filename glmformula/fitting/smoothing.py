"""Smoothness penalties in the engine: per-unit penalty matrices from the terms' penalties, and
their strengths chosen by REML (:mod:`glmformula.backend.reml`) before the final fit.

The engine calls :func:`penalty_setup` once per design (the matrices in the solver's basis,
after the identifiability rotation) and :func:`choose_strengths` once per fit (per
cross-validation fold too: strengths are learned from the training rows only). The final fit
is the ordinary solve with ``Problem.penalty_matrix``, so every solver, the covariance (the
Bayesian posterior ``(H + S)^-1``) and the warnings work unchanged.

Strength units: the mean objective's, as ``Ridge`` (``0.5 * s * w' S w`` added to the mean
negative log-likelihood); mgcv's ``sp`` for the same penalty matrix is ``s * n`` (n rows).
"""

from __future__ import annotations

import threading

import attrs
import jax
import jax.numpy as jnp
import numpy as np

from .. import backend
from ..backend import problem as pb
from ..backend import reml
from ..backend.regularizers import resolve_penalty
from ..graph.penalties import PenaltyComponent
from .groups import _gather_columns
from .rows import select_rows
from .threads import map_on_threads

#: What ``smoothing=`` accepts.
MODES = ("auto", None)


@attrs.frozen(eq=False)
class PenaltySetup:
    """The penalties of one design, in the solver's (rotated) basis.

    Attributes
    ----------
    keys : tuple of str
        The strengths to choose (a term, or a margin / null space of one).
    key_terms : tuple of str
        The term of each key.
    S : ndarray (M, U, P, P)
        Penalty matrix of each key for each unit (zero where it does not apply).
    fixed : ndarray (U, P, P)
        Penalties with a strength fixed in the formula (``smooth=1e-3``), strength included
        (mean objective).
    """

    keys: tuple
    key_terms: tuple
    S: np.ndarray
    fixed: np.ndarray

    @property
    def empty(self) -> bool:
        return not self.keys and not np.any(self.fixed)


@attrs.frozen(eq=False)
class SmoothingSummary:
    """What a result keeps of the strength selection (see :class:`SmoothingFit`)."""

    keys: tuple
    key_terms: tuple
    strength: np.ndarray
    edf: dict
    total_edf: np.ndarray
    criterion: np.ndarray
    converged: np.ndarray
    n_outer: int = 0
    n_inner: int = 0


@attrs.frozen(eq=False)
class SmoothingFit:
    """Strengths chosen for one fit and what they imply.

    Attributes
    ----------
    keys, key_terms : tuple of str
        As :class:`PenaltySetup`.
    strength : ndarray (M, U)
        Chosen strengths (mean objective); NaN for a unit without that penalty or without
        spikes.
    edf : dict
        Term text -> ndarray (U,) effective degrees of freedom of the term per unit.
    total_edf : ndarray (U,)
        Effective degrees of freedom of each unit's model, intercept included.
    criterion : ndarray (U,)
        The REML criterion at the optimum (nats, constants dropped).
    converged : ndarray (U,) bool
    n_outer, n_inner : int
        Strength iterations and penalised Newton iterations.
    penalty_matrix : ndarray (U, P, P)
        The penalty of the final fit (solver's basis, mean objective).
    start : tuple
        (weights (P, U), intercepts (U,)) at the chosen strengths (solver's basis).
    objective, newton_criterion, grad_norm : ndarray (U,)
        At ``start``: the penalised mean objective, Newton's criterion (the rate-weighted RMS
        change of the linear predictor one more Newton step would make, nats) and the
        max-abs penalised gradient of the mean objective, as the solver reports them; NaN
        where REML did not certify its weights (see :meth:`certified`).
    excluded_columns : tuple of int
        Columns all zero in the fitted rows (weight 0).
    slope : ndarray (M, U) or None
        REML's extra slope at the answer (:attr:`.reml.RemlResult.slope`; NaN where none):
        where a fit warm-started from this one begins (``initial_slope``).
    """

    keys: tuple
    key_terms: tuple
    strength: np.ndarray
    edf: dict
    total_edf: np.ndarray
    criterion: np.ndarray
    converged: np.ndarray
    n_outer: int
    n_inner: int
    penalty_matrix: np.ndarray
    start: tuple
    objective: np.ndarray | None = None
    newton_criterion: np.ndarray | None = None
    grad_norm: np.ndarray | None = None
    excluded_columns: tuple = ()
    slope: np.ndarray | None = None

    def certified(self, tol: float) -> bool:
        """Whether ``start`` is the penalised fit to Newton's tolerance ``tol`` for every unit
        (REML converged, every unit has spikes): then no solver needs to confirm it."""
        return (self.newton_criterion is not None and bool(np.all(self.converged))
                and bool(np.all(self.newton_criterion <= tol)))

    def summary(self) -> SmoothingSummary:
        return SmoothingSummary(self.keys, self.key_terms, self.strength, self.edf,
                                self.total_edf, self.criterion, self.converged, self.n_outer,
                                self.n_inner)


def penalty_setup(components: tuple[PenaltyComponent, ...], unit_ids: tuple, n_columns: int,
                  rotation: np.ndarray) -> PenaltySetup:
    """Per-unit penalty matrices of ``components`` in the basis ``w = rotation @ v``."""
    keys = tuple(dict.fromkeys(c.key for c in components if c.setting == "auto"))
    key_terms = tuple(next(c.term for c in components if c.key == k) for k in keys)
    U, P = len(unit_ids), n_columns
    S = np.zeros((len(keys), U, P, P))
    fixed = np.zeros((U, P, P))
    position = {k: m for m, k in enumerate(keys)}
    for component in components:
        cols = component.columns
        Q = rotation[np.ix_(cols, cols)]
        matrix = Q.T @ component.matrix @ Q
        ix = np.ix_(cols, cols)
        for u, unit in enumerate(unit_ids):
            if not component.applies_to(unit):
                continue
            if component.setting == "auto":
                S[position[component.key], u][ix] += matrix
            else:
                fixed[u][ix] += float(component.setting) * matrix
    return PenaltySetup(keys, key_terms, S, fixed)


def fixed_only(setup: PenaltySetup) -> np.ndarray | None:
    """The penalty matrix when no strength is chosen from the data (None: no penalty)."""
    return setup.fixed if np.any(setup.fixed) else None


def choose_strengths(problem: backend.Problem, setup: PenaltySetup, groups: list | None,
                     unit_terms: tuple, *, regularizer=None, dtype: str | None = None,
                     exact: bool = True, initial_strength: np.ndarray | None = None,
                     start: tuple | None = None, family: str = "poisson",
                     theta: np.ndarray | None = None,
                     tolerance: reml.SearchTolerance = reml.FIT_TOLERANCE,
                     initial_slope: np.ndarray | None = None) -> SmoothingFit:
    """Choose every unit's strengths by REML on ``problem``'s rows (weighted by its
    ``row_weight``), in groups of units on their own columns when given.

    ``initial_strength`` (M, U), e.g. those of a fit on all rows when fitting a
    cross-validation fold, and ``start`` (weights (P, U), intercepts (U,), solver's basis) start
    the search there (fewer outer iterations); NaN entries start from the default.

    ``unit_terms``: per unit, term text -> the stored columns of that term the unit reads
    (:func:`unit_term_columns`), for the effective degrees of freedom per term.

    ``family``: the observation family (gamma and gaussian at their scale, estimated as REML
    goes; the negative binomial at the dispersion ``theta`` (U,), ``a`` per unit).

    ``tolerance``: where the search stops (:class:`.reml.SearchTolerance`;
    :data:`.reml.FOLD_TOLERANCE` for a cross-validation fold).

    ``initial_slope`` (M, U): with ``initial_strength`` and ``start``, REML's extra slope at
    that fit's answer (:attr:`SmoothingFit.slope`; NaN where none): a unit starting from
    that fit steers by it until its own is computed (one pass over the rows fewer).

    Returns the strengths, the effective degrees of freedom and the penalty matrix of the final
    fit.
    """
    U, P = problem.n_units, problem.n_cols
    M = len(setup.keys)
    rw = np.ones(problem.n_rows) if problem.row_weight is None else problem.row_weight
    n = float(rw.sum())
    mask = np.ones((U, P), bool) if problem.column_mask is None else problem.column_mask.copy()
    with_data, squares = _column_statistics(problem.X, rw)
    mask &= with_data[None, :]
    ridge = resolve_penalty(regularizer, problem.column_groups, mask).l2  # (P, U) mean scale
    spikes = rw @ np.abs(problem.y)  # the size of each unit's response (spikes for counts)
    b, curvature = _start(family, (rw @ problem.y) / n, n)
    strength = np.full((M, U), np.nan)
    total_edf = np.full(U, np.nan)
    criterion = np.full(U, np.nan)
    converged = np.ones(U, bool)
    edf_columns = np.zeros((U, P))
    W = np.zeros((P, U))
    objective, newton_criterion, grad_norm = (np.full(U, np.nan) for _ in range(3))
    slope = np.full((M, U), np.nan)
    n_outer = n_inner = 0
    name = "float64" if dtype is None else str(dtype)

    reuse = threading.local()  # each thread's design of its last group, refilled for its next
    # groups copy their own columns of a fold's training rows (.groups), not the whole design
    rows = select_rows(rw) if groups else None
    take = (lambda a: a) if rows is None else rows.take

    def choose_group(group):
        units, columns = group
        Xg = problem.X if len(columns) == P and rows is None else \
            _gather_columns(problem.X, columns, reuse, rows)
        keep = mask[np.ix_(units, columns)]
        p = len(columns) + 1
        Sg = np.zeros((M, len(units), p, p))
        Sg[:, :, :-1, :-1] = setup.S[np.ix_(np.arange(M), units, columns, columns)]
        fixed = np.zeros((len(units), p, p))
        fixed[:, :-1, :-1] = n * setup.fixed[np.ix_(units, columns, columns)]
        idx = np.arange(p - 1)
        fixed[:, idx, idx] += n * ridge[np.ix_(columns, units)].T
        keep_aug = np.r_[keep.T, np.ones((1, len(units)))].astype(float)  # (p, units)
        present = np.einsum("mupq,pu,qu->mu", np.abs(Sg), keep_aug, keep_aug) > 0
        offset = problem.offset
        if offset is not None and offset.ndim == 2 and offset.shape[1] > 1:
            offset = offset[:, units]
        with jax.enable_x64(True):
            dt = jnp.dtype(name)
            block = pb.block_from_arrays(Xg, take(problem.y[:, units]), take(offset), take(rw),
                                         dt, len(units),
                                         obs=pb.Obs(family, None if theta is None
                                                    else np.asarray(theta, float)[units]))
            gram_diag = squares[columns, None] * curvature[None, units]  # ~ diag H
            guess = rho0 = _initial_log_strengths(Sg[:, :, :-1, :-1], gram_diag, present)
            warm = False
            if initial_strength is not None:
                with np.errstate(divide="ignore"):
                    given = np.log(np.asarray(initial_strength, float)[:, units] * n)
                rho0 = np.where(np.isfinite(given), given, rho0)
                warm = start is not None and np.all(np.isfinite(given) | ~present, axis=0)
            beta0 = np.zeros((p, len(units)))
            beta0[-1] = b[units]
            if start is not None:
                beta0[:-1] = np.asarray(start[0], float)[np.ix_(columns, units)] * keep.T
                beta0[-1] = np.asarray(start[1], float)[units]
            # (select reads it for the warm units only)
            given_slope = None if initial_slope is None else \
                np.asarray(initial_slope, float)[:, units]
            result = reml.select(block, keep_aug, Sg, fixed, beta0, rho0, present=present,
                                 dtype=dt, exact=exact, center=guess, warm=warm,
                                 tolerance=tolerance, start_slope=given_slope)
        return units, columns, result

    # no response: nothing to learn a strength from
    todo = [(units[spikes[units] > 0], columns)
            for units, columns in (groups or [(np.arange(U), np.arange(P))])]
    todo = [(units, columns) for units, columns in todo if len(units)]
    widest = max((len(columns) for _, columns in todo), default=0)
    for units, columns, result in map_on_threads(
            choose_group, todo, (problem.n_rows if rows is None else rows.n) * widest
            * problem.X.itemsize if groups else 0):
        n_outer = max(n_outer, result.n_outer)
        n_inner += result.n_inner
        strength[:, units] = np.exp(result.log_strength) / n
        W[np.ix_(columns, units)] = result.beta[:-1]
        b[units] = result.beta[-1]
        edf_columns[np.ix_(units, columns)] = result.edf[:, :-1]
        total_edf[units] = result.edf.sum(axis=1)
        criterion[units] = result.criterion
        converged[units] = result.converged
        if result.slope is not None:
            slope[:, units] = result.slope
        # in the Poisson solver's terms (mean objective; its criterion's scale is the rate)
        if result.decrement is not None and family == "poisson":
            objective[units] = result.objective / n
            newton_criterion[units] = np.sqrt(np.maximum(result.decrement, 0.0)
                                              / spikes[units])
            grad_norm[units] = result.gradient_max / n
    penalty_matrix = setup.fixed.copy()
    for m in range(M):
        s = np.nan_to_num(strength[m])
        penalty_matrix += s[:, None, None] * setup.S[m]
    # units without spikes keep a strength: the typical one of the others (their weights are
    # 0 anyway; the covariance then has a proper prior)
    typical = np.nanmedian(np.where(np.isfinite(strength), strength, np.nan), axis=1) \
        if U and M and np.isfinite(strength).any() else np.zeros(M)
    for u in np.flatnonzero(spikes <= 0):
        for m in range(M):
            penalty_matrix[u] += np.nan_to_num(typical[m]) * setup.S[m, u]
    edf = {}
    for term in dict.fromkeys(setup.key_terms):
        # a unit's own columns of the term (history and coupling read one stored bank)
        per_unit = [edf_columns[u, unit_terms[u].get(term, [])].sum() for u in range(U)]
        edf[term] = np.where(np.isfinite(total_edf), per_unit, np.nan)
    return SmoothingFit(setup.keys, setup.key_terms, strength, edf, total_edf, criterion,
                        converged, n_outer, n_inner, penalty_matrix, (W, b), objective,
                        newton_criterion, grad_norm,
                        tuple(int(j) for j in np.flatnonzero(~with_data)), slope)


def _column_statistics(X: np.ndarray, row_weight: np.ndarray,
                       chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Which columns of ``X`` are non-zero on some row of positive weight (P,) and the
    weighted sums of their squares (P,), in one pass over chunks of rows squared into one
    reused buffer: no copy of the whole design (``X * X`` of the real coupled design is 0.5
    GB: ~1 s) and no copy of the rows of positive weight (5x faster than selecting them:
    0.2 -> 0.03-0.05 s on a fold of the real history model's 268 columns).

    Row weights are non-negative, so a column's weighted sum of squares is positive exactly
    where it is non-zero on a row of positive weight; only the other columns (empty, or whose
    squares underflow: values below ~1e-154) are looked at again, in one pass."""
    squares = np.zeros(X.shape[1])
    buffer = np.empty((min(chunk, X.shape[0]), X.shape[1]))
    for start in range(0, X.shape[0], chunk):
        rows = X[start:start + chunk]
        square = buffer[:len(rows)]
        np.multiply(rows, rows, out=square)
        squares += row_weight[start:start + chunk] @ square
    seen = squares > 0
    unseen = np.flatnonzero(~seen)  # empty, or squares that underflow: one more pass on them
    if unseen.size:
        weighted = row_weight > 0
        for start in range(0, X.shape[0], chunk):
            rows = X[start:start + chunk, unseen] != 0
            seen[unseen] |= (rows & weighted[start:start + chunk, None]).any(axis=0)
    return seen, squares


def unit_term_columns(plan) -> tuple:
    """Per unit, term text -> the stored columns of that term it reads."""
    out = []
    for columns, labels in zip(plan.unit_columns, plan.unit_labels):
        terms: dict = {}
        for column, (term, _) in zip(columns, labels):
            terms.setdefault(term, []).append(int(column))
        out.append({t: np.asarray(c, dtype=int) for t, c in terms.items()})
    return tuple(out)


def _start(family: str, mean: np.ndarray, n: float) -> tuple[np.ndarray, np.ndarray]:
    """Per unit, the intercept of the constant model (the link of the mean response ``mean``
    (U,) over ``n`` rows, spikes per bin for counts) and the loss's curvature there (per row,
    at unit scale)."""
    if family == "gaussian":
        return mean.copy(), np.ones_like(mean)
    if family == "bernoulli":
        m = np.clip(mean, 1e-6, 1 - 1e-6)
        return np.log(m / (1 - m)), m * (1 - m)
    if family == "gamma":
        return np.log(np.maximum(mean, 1e-300)), np.ones_like(mean)
    m = np.maximum(mean, 0.5 / n)  # Poisson: at least half a spike over the rows
    return np.log(m), m


def _initial_log_strengths(S: np.ndarray, gram_diag: np.ndarray, present: np.ndarray):
    """Starting log-strengths (sum scale): penalty and data of comparable size on the
    penalised columns (the diagonal of the Hessian approximated by the mean rate times the
    Gram diagonal)."""
    M, U = present.shape
    rho = np.zeros((M, U))
    for m in range(M):
        for u in range(U):
            d = np.diagonal(S[m, u])
            on = d > 0
            if on.any():
                rho[m, u] = np.log(max(gram_diag[on, u].sum(), 1e-8) / d[on].sum())
    return rho


__all__ = ["MODES", "PenaltySetup", "SmoothingFit", "SmoothingSummary", "penalty_setup",
           "choose_strengths", "fixed_only", "unit_term_columns"]
