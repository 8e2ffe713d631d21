"""Damped Newton (IRLS) for a population of Poisson GLMs, batched over units.

Each iteration forms the U Hessians from the shared design in one kernel
(:func:`~glmformula.backend.problem.hessian_sum`), factors them with a batched
Cholesky, and takes the Newton step with a backtracking (Armijo) line search
that costs no matrix product: ``eta`` is linear in the parameters, so trial
steps only re-evaluate ``exp``.

Convergence is scale-aware: a unit stops when ``sqrt(g' H^-1 g / ybar) <= tol``,
the root-mean-square change of the linear predictor (log-rate, nats) that the
next Newton step would make, weighted by the rate (``ybar`` = spikes per row).
It does not depend on the units of the columns, on T, or on the firing rate.
After a step the criterion is evaluated with the previous factorisation (the
Hessian barely changes near the optimum), which saves the last Hessian pass.

The helpers here (robust Cholesky, batched solves, backtracking) are shared by
the L-BFGS and proximal solvers.
"""

from __future__ import annotations

from typing import NamedTuple

import attrs
import jax
import jax.numpy as jnp
from jax import lax

from .families import is_poisson
from .problem import (
    FitData,
    compiled_call,
    curvature,
    curvature_sampling,
    fused_model_applies,
    hessian_strategy,
    loss_sum,
    penalised_hessian,
    penalty_value,
    poisson_model_sums,
    poisson_model_sums_columns,
    resum_units,
    rows_of,
    sampled_hessian,
    sampled_hessian_sum,
    smooth_objective,
    step_chunk,
    step_sums,
    with_tiles,
)

__all__ = ["Newton", "NewtonRule", "reads_columns_first", "second_order_loop", "RawResult",
           "robust_factor", "factor_solve", "backtrack", "line_search_pass", "initial_pass",
           "tolerance_floor"]

# status codes of RawResult.status
OK, MAX_ITER, STALLED, NO_SPIKES = 0, 1, 2, 3


class RawResult(NamedTuple):
    """What every in-memory solver returns (device arrays)."""

    W: jax.Array  # (P, U)
    b: jax.Array  # (U,)
    objective: jax.Array  # (U,)
    criterion: jax.Array  # (U,) scale-aware convergence measure (see module docs)
    grad_norm: jax.Array  # (U,) max-abs of the (penalised, masked) gradient / KKT residual
    converged: jax.Array  # (U,) bool
    n_iter: jax.Array  # (U,) int
    status: jax.Array  # (U,) int: OK, MAX_ITER, STALLED, NO_SPIKES
    rank_deficient: jax.Array  # (U,) bool
    n_hessian: jax.Array  # () Hessian passes over the rows
    n_matmul: jax.Array  # () passes of X @ V or X.T @ R (all units at once)
    # L-BFGS only: its last preconditioner, robust_factor's (inverse factor (U, P+1, P+1),
    # scaling (U, P+1)) of each unit's mean penalised Hessian near the answer
    preconditioner: tuple | None = None


def tolerance_floor(dtype) -> float:
    """Smallest criterion that rounding lets a solver certify in ``dtype``.

    Measured: float64 fits stall (line search sees no decrease) around 1e-12
    and float32 fits around 1e-5; asking for less is raised to these.
    """
    return 1e-5 if jnp.dtype(dtype) == jnp.float32 else 1e-12


def _rank_tol(dtype):
    # Pivot^2 of the correlation-scaled Hessian below eps^(2/3) (3.7e-11 in
    # float64, 2.4e-5 in float32) means a condition number past what the
    # Cholesky solve can resolve: treat the design as rank deficient.
    return float(jnp.finfo(dtype).eps) ** (2.0 / 3.0)


def cholesky(A):
    """Batched Cholesky factor (lower) in plain JAX ops: (U, n, n) → (U, n, n).

    Column by column (Crout), ``n`` steps of batched matrix-vector products; used
    on blocks of at most ``_LEAF`` columns by :func:`spd_inverse`. Where ``A`` is
    not positive definite the factor contains NaN (like LAPACK).
    """
    U, n, _ = A.shape
    idx = jnp.arange(n)

    def column(j, L):
        col = A[:, :, j] - jnp.einsum("uik,uk->ui", L, L[:, j, :])  # only columns < j of L are set
        ljj = jnp.sqrt(col[:, j])
        new = jnp.where(idx[None, :] > j, col / ljj[:, None],
                        jnp.where(idx[None, :] == j, ljj[:, None], 0.0))
        return L.at[:, :, j].set(new)

    return lax.fori_loop(0, n, column, jnp.zeros_like(A))


def triangular_inverse(L):
    """Inverse of batched lower-triangular matrices by forward substitution (plain JAX ops)."""
    U, n, _ = L.shape
    eye = jnp.eye(n, dtype=L.dtype)

    def row(i, X):
        r = (eye[i][None, :] - jnp.einsum("uk,ukm->um", L[:, i, :], X)) / L[:, i, i][:, None]
        return X.at[:, i, :].set(r)

    return lax.fori_loop(0, n, row, jnp.zeros_like(L))


_LEAF = 128


def _swap(M):
    return jnp.swapaxes(M, -1, -2)


def spd_inverse(C):
    """Inverses of batched symmetric positive definite matrices, and their Cholesky pivots.

    Why not ``jnp.linalg``: on CPU, jaxlib 0.10's batched LAPACK kernels (potrf,
    trsm, ...) hand the batch to XLA's intra-op thread pool and block waiting
    for it; when the executor runs as many such kernels concurrently as the
    pool has threads (2 on this machine), the process deadlocks (observed
    here: all pool threads in ``ParallelBatchMap``; known upstream, the parallel
    path is compiled out in later jaxlib). So this uses matrix products only:
    recursive 2x2 blocks (Schur complements) down to ``_LEAF`` columns, then a
    Cholesky in plain JAX. ``~n^3`` flops per matrix, nearly all in batched GEMMs
    (measured: docs/performance_decisions.md, 'Matrix inverses by batched
    products'). The pivots of the leaves are
    exactly the Cholesky pivots of ``C``: their minimum is the rank test.

    Returns
    -------
    inverse : (U, n, n) (NaN where C is not positive definite)
    pivots : (U, n) squared diagonal of the Cholesky factor of C
    """
    n = C.shape[-1]
    if n <= _LEAF:
        L = cholesky(C)
        Li = triangular_inverse(L)
        return jnp.einsum("uki,ukj->uij", Li, Li), jnp.diagonal(L, axis1=1, axis2=2) ** 2
    h = n // 2
    A, B, D = C[:, :h, :h], C[:, :h, h:], C[:, h:, h:]
    Ai, pa = spd_inverse(A)
    AiB = Ai @ B
    S = D - _swap(B) @ AiB
    Si, ps = spd_inverse(0.5 * (S + _swap(S)))
    X = AiB @ Si
    top = jnp.concatenate([Ai + X @ _swap(AiB), -X], axis=2)
    bottom = jnp.concatenate([-_swap(X), Si], axis=2)
    return jnp.concatenate([top, bottom], axis=1), jnp.concatenate([pa, ps], axis=1)


def robust_factor(H, rank_tol=None):
    """Batched inverses of the correlation-scaled matrices, with a jitter fallback.

    Parameters
    ----------
    H : (U, n, n) symmetric positive semi-definite
    rank_tol : float or scalar array, optional
        Smallest acceptable squared pivot of the scaled matrix (default: from
        ``H.dtype``; larger for a Hessian formed in lower precision).

    Returns
    -------
    Cinv : (U, n, n) inverse of ``S H S`` (+ jitter where needed), so ``H^-1 = S Cinv S``
    s : (U, n) the scaling ``S = diag(s) = diag(H)^-1/2``
    deficient : (U,) bool, True where H is (numerically) singular

    Notes
    -----
    Scaling to unit diagonal makes the rank test independent of column units.
    Where the plain inverse fails, ``sqrt(eps)`` is added to the diagonal: a
    Newton-type step only needs *a* positive definite matrix, the fixed point
    (gradient zero) is unchanged, so the fit stays exact where it is identified
    and finite along null directions. The inverse is formed once so that every
    later solve is one batched matrix-vector product.
    """
    dtype = H.dtype
    n = H.shape[-1]
    d = jnp.diagonal(H, axis1=1, axis2=2)
    s = jnp.where(d > 0, lax.rsqrt(jnp.where(d > 0, d, 1.0)), 1.0)
    C = H * s[:, :, None] * s[:, None, :]
    eye = jnp.eye(n, dtype=dtype)
    rank_tol = _rank_tol(dtype) if rank_tol is None else rank_tol
    # sqrt(eps) for the default tolerance eps^(2/3); scales with a larger one
    jitter = jnp.asarray(rank_tol, dtype) ** 0.75

    # At most two inversions (the second only for deficient units, with jitter).
    # A while loop rather than a second call keeps one copy of the inversion in
    # the compiled program (it is the largest part of it).
    def body(st):
        k, delta, _, _ = st
        Cinv, piv = spd_inverse(C + delta[:, None, None] * eye)
        bad = ~jnp.all(jnp.isfinite(Cinv), axis=(1, 2)) | (
            jnp.min(jnp.where(jnp.isfinite(piv), piv, 0.0), axis=1) < rank_tol
        )
        deficient = jnp.where(k == 0, bad, st[3])
        return k + 1, jnp.where(deficient, jitter, 0.0).astype(dtype), Cinv, deficient

    def cond(st):
        k, _, _, deficient = st
        return (k == 0) | ((k == 1) & jnp.any(deficient))

    U = H.shape[0]
    init = (0, jnp.zeros(U, dtype), jnp.zeros_like(C), jnp.zeros(U, bool))
    _, _, Cinv, deficient = lax.while_loop(cond, body, init)
    return Cinv, s, deficient


def factor_solve(Cinv, s, g):
    """Solve ``H x = g`` for every unit given :func:`robust_factor` output; g, x: (n, U)."""
    return (s * jnp.einsum("uij,uj->ui", Cinv, s * g.T)).T


def backtrack(f_at, f0, slope, magnitude, go, c=1e-4, max_halvings=40, first=None,
              n_terms: int = 1):
    """Armijo backtracking for all units at once, from a unit step.

    Parameters
    ----------
    f_at : callable (U,) steps → (U,) objective values
    f0, slope : (U,) objective and directional derivative at step 0 (slope < 0)
    magnitude : (U,) size of the terms summed in the objective (their mean when the
        objective is a mean over ``n_terms`` rows); the test allows
        ``64 eps * magnitude * sqrt(n_terms)`` of rounding (a sum of n terms in floating
        point is off by ~sqrt(n) roundings), so that near the optimum, where the decrease is
        below rounding, full steps are still taken. Without the ``sqrt(n)``, a unit of the
        real coupled model (0.007 spikes per bin, 226,358 rows, a strongly penalised term)
        backtracked to steps of 1e-5 at a criterion of ~1e-6 and never reached 1e-8: the
        decrease left, 4e-15, was the size of the noise of its objective
        (docs/performance_decisions.md, 'REML on wide shared designs: sampled float32
        curvature').
    go : (U,) bool, units that step
    first : (U,), optional
        ``f_at(1)`` if already known.

    Returns
    -------
    a : (U,) accepted steps (0 where no step was acceptable)
    ok : (U,) bool
    """
    eps = jnp.finfo(f0.dtype).eps
    slack = 64 * eps * magnitude * float(n_terms) ** 0.5

    def accept(a, fa):
        return ~go | (fa <= f0 + c * a * slope + slack)

    a = jnp.ones_like(f0)
    fa = f_at(a) if first is None else first
    ok = accept(a, fa)

    def cond(st):
        a, ok, k = st
        return jnp.any(~ok) & (k < max_halvings)

    def body(st):
        a, ok, k = st
        a = jnp.where(ok, a, 0.5 * a)
        return a, accept(a, f_at(a)), k + 1

    a, ok, _ = lax.while_loop(cond, body, (a, ok, 0))
    return jnp.where(ok & go, a, 0.0), ok


def initial_pass(data: FitData, W, b, chunk: int, formed: bool = False):
    """``eta`` and :func:`smooth_objective` at the starting point, in one pass over X (a step
    from weights 0). ``formed``: the linear predictor is formed in every pass, not stored
    (:func:`formed_sums`); ``eta`` is then a (1, U) placeholder."""
    if formed:
        loss, g, mag = formed_sums(data, W, b, ("loss", "grad", "magnitude"))
        return _no_predictor(W), _objective_of(data, W, loss, g, mag)
    blk = data.block
    base = jnp.broadcast_to(b[None, :] + blk.offset, (blk.X.shape[0], W.shape[1]))
    xi, sums = step_sums(blk.X, blk.Y, blk.rw, base, W, jnp.zeros_like(b), chunk, blk.obs, blk.Xt)
    eta = base + xi
    return eta, smooth_objective(data, eta, W, sums)


def _step_objective(data: FitData, loss_sum_, Wa, nonsmooth):
    """A line search's objective at weights ``Wa`` from its loss sum: the mean loss, the smooth
    penalty and ``nonsmooth(Wa)``."""
    return loss_sum_ / data.n + penalty_value(data, Wa) + nonsmooth(Wa)


def line_search_pass(data: FitData, chunk: int, eta, W, dW, db, f0, slope, magnitude, go,
                     nonsmooth=lambda W: 0.0):
    """Armijo line search along ``(dW, db)`` from ``eta`` and the smooth objective where it
    lands, with one pass over X when every stepping unit takes the full step.

    The pass (:func:`~glmformula.backend.problem.step_sums`) gives the step's change of the
    linear predictor ``xi`` (trial steps then cost no product) AND the loss and gradient after
    a full step, which near the optimum (and mostly before) is the step taken; otherwise the
    gradient is formed again at the accepted point (a second pass, for the backtracked units
    only where they are few: :func:`~glmformula.backend.problem.resum_units`).

    Returns
    -------
    a (U,), ok (U,), eta at the new point, (f, grad, magnitude) there (:func:`smooth_objective`;
    ``nonsmooth`` not included), and the number of passes over X (1 or 2).
    """
    blk = data.block
    xi, sums = step_sums(blk.X, blk.Y, blk.rw, eta, dW, db, chunk, blk.obs, blk.Xt)

    def f_at(a):
        return _step_objective(data, loss_sum(eta + a[None, :] * xi, blk.Y, blk.rw, blk.obs),
                               W + a * dW, nonsmooth)

    a, ok = backtrack(f_at, f0, slope, magnitude, go,
                      first=_step_objective(data, sums[0], W + dW, nonsmooth),
                      n_terms=blk.X.shape[0])
    W_new = W + a * dW
    eta_new = eta + a[None, :] * xi
    # units that did not step have xi = 0, those that took the full step are where the pass
    # summed: their sums hold; the others' are formed again where they stopped
    backtracked = go & (a != 1.0)
    full = ~jnp.any(backtracked)
    out = lax.cond(full, lambda: smooth_objective(data, eta_new, W_new, sums),
                   lambda: smooth_objective(data, eta_new, W_new,
                                            resum_units(blk, eta_new, sums, backtracked)))
    return a, ok, eta_new, out, 1 + (~full).astype(jnp.int32)


def formed_sums(data: FitData, W, b, sums: tuple, compute=None, every: int = 1):
    """:func:`~glmformula.backend.problem.poisson_model_sums` of ``data``'s rows at ``(W,
    b)``, the linear predictor formed in each row chunk from the weights instead of stored;
    from every ``every``-th row only, times ``every`` (an estimate of the sum over all rows,
    as :func:`~glmformula.backend.problem.sampled_hessian_sum`'s)."""
    blk = data.block
    take = (lambda a: a) if every == 1 else (lambda a: a[::every])  # noqa: E731
    if blk.X is None:  # the design laid out columns first
        out = poisson_model_sums_columns(blk.Xt if every == 1 else blk.Xt[:, ::every],
                                         take(blk.Y), take(blk.rw), take(blk.offset), W, b,
                                         sums, compute)
    else:
        out = poisson_model_sums(take(blk.X), take(blk.Y), take(blk.rw), take(blk.offset), W,
                                 b, sums, compute)
    return out if every == 1 else tuple(every * a for a in out)


def _objective_of(data: FitData, W, loss, g, mag):
    """:func:`smooth_objective` from :func:`formed_sums`' loss, gradient and magnitude."""
    P = W.shape[0]
    return smooth_objective(data, None, W, (loss, g[:P], g[P], mag))


def _no_predictor(W):
    """The stored linear predictor's placeholder where it is formed in every pass."""
    return jnp.zeros((1, W.shape[1]), W.dtype)


def formed_line_search_pass(data: FitData, W, b, dW, db, f0, slope, magnitude, go,
                            nonsmooth=lambda W: 0.0):
    """:func:`line_search_pass` with the linear predictor formed from the weights in each
    pass (:func:`formed_sums`) instead of read from a stored (T, U) array: on a narrow
    design shared by many units the stored predictor, the step's change of it and the counts
    are most of what a pass reads (on the real head-direction model, 226,358 rows x 12
    columns x 32 units, 33-37 ms for the loss and gradient formed against 86 ms for
    :func:`~glmformula.backend.problem.step_sums`; docs/performance_decisions.md, 'Newton
    forms the linear predictor on narrow population designs'). A trial step shorter than
    the full one costs a loss-only pass. Returns as :func:`line_search_pass` (``eta`` a
    placeholder; the passes include the trials')."""
    loss, g, mag = formed_sums(data, W + dW, b + db, ("loss", "grad", "magnitude"))

    def f_at(a):
        return _step_objective(data, formed_sums(data, W + a * dW, b + a * db, ("loss",))[0],
                               W + a * dW, nonsmooth)

    a, ok = backtrack(f_at, f0, slope, magnitude, go,
                      first=_step_objective(data, loss, W + dW, nonsmooth),
                      n_terms=rows_of(data.block))
    W_new, b_new = W + a * dW, b + a * db
    backtracked = go & (a != 1.0)
    full = ~jnp.any(backtracked)
    trials = jnp.max(jnp.where(backtracked, jnp.round(-jnp.log2(jnp.where(a > 0, a, 2.0 ** -40))),
                               0.0)).astype(jnp.int32)
    loss, g, mag = lax.cond(full, lambda: (loss, g, mag), lambda: formed_sums(
        data, W_new, b_new, ("loss", "grad", "magnitude")))
    return (a, ok, _no_predictor(W), _objective_of(data, W_new, loss, g, mag),
            1 + trials + (~full).astype(jnp.int32))


class _State(NamedTuple):
    W: jax.Array
    b: jax.Array
    eta: jax.Array
    f: jax.Array
    g: jax.Array
    mag: jax.Array
    it: jax.Array
    done: jax.Array
    n_iter: jax.Array
    crit: jax.Array
    status: jax.Array
    deficient: jax.Array
    # lazy Hessians (Newton rule only): the last factorisation and how it was made
    Cinv: jax.Array  # (U, P+1, P+1), or a (1, 1, 1) placeholder
    s: jax.Array  # (U, P+1)
    exact: jax.Array  # () bool: a factorisation of a full-precision Hessian exists
    ratio: jax.Array  # () largest crit(new) / crit(old) of the last iteration
    n_hess: jax.Array  # () Hessian passes
    n_pass: jax.Array  # () passes over X for products with it (a fused step pass is one)
    need64: jax.Array  # () bool: fresh Hessians in full precision from now on
    kept_low: jax.Array  # () bool: the kept factorisation is of a float32 Hessian
    screen: jax.Array  # (U,) bool: a float32 factorisation looked singular


@attrs.frozen
class NewtonRule:
    """The Newton step: what :func:`second_order_loop` does with a Hessian (no non-smooth
    penalty)."""

    #: the loop may reuse factorisations and form early Hessians in float32
    lazy: bool = True

    def nonsmooth(self, data: FitData, W):
        return jnp.zeros(W.shape[1], W.dtype)

    def factor(self, H, rank_tol=None):
        """(aux, deficient) for :meth:`solve`."""
        Cinv, s, deficient = robust_factor(H, rank_tol)
        return (Cinv, s), deficient

    def solve(self, data: FitData, aux, g, W):
        """Step (P+1, U), model slope (U,) and criterion (U,) from a factorisation."""
        step = -factor_solve(*aux, g)
        slope = jnp.sum(g * step, axis=0)
        return step, slope, jnp.sqrt(jnp.maximum(-slope, 0.0) / data.scale)

    def direction(self, data: FitData, H, g, W, b):
        """Returns step (P+1, U), model decrease slope (U,), criterion here (U,), aux, deficient."""
        aux, deficient = self.factor(H)
        step, slope, crit = self.solve(data, aux, g, W)
        return step, slope, crit, aux, deficient

    def criterion(self, data: FitData, aux, g, W):
        return jnp.sqrt(jnp.maximum(jnp.sum(g * factor_solve(*aux, g), axis=0), 0.0) / data.scale)

    def grad_norm(self, data: FitData, g, W):
        return jnp.max(jnp.abs(g), axis=0)


#: Lazy Newton (rule.lazy, float64 fits). Fresh Hessians are formed with float32
#: products (sums over row chunks in float64; faster than float64 products); the
#: gradient stays exact, so the fixed point is unchanged and only the path differs (a
#: step from a Hessian with relative error ~1e-6 still contracts by ~1e-6 x its
#: condition number). Hessians go to float64 for the rest of the fit when a float32
#: factorisation looks singular (the rank test then needs float64) or when a step
#: contracted the criterion by less than POOR_CONTRACTION although every unit was
#: within MIXED_ABOVE nats of its optimum (ill-conditioned: float32 no longer helps).
#: Once all criteria are below REUSE_BELOW and the last iteration contracted them by at
#: least REUSE_CONTRACTION, the last factorisation is reused (a chord step) instead of a
#: new Hessian pass. Same optimum, fewer and cheaper Hessian passes (measured:
#: docs/performance_decisions.md, 'Lazy Newton: float32 Hessians and chord steps').
MIXED_ABOVE, POOR_CONTRACTION = 1e-2, 0.5
REUSE_BELOW, REUSE_CONTRACTION = 1e-3, 0.25
#: ... and only while chord steps, which converge linearly at about the last contraction,
#: would reach ``tol`` within this many: a unit of the real head-direction recording took 7
#: chord steps at a contraction of 0.24 where two fresh (float32) Hessians end the fit
#: (docs/performance_decisions.md, 'Newton: honest chord steps, sampled early Hessians').
CHORD_STEPS = 3
#: Far from the optimum (criterion above MIXED_ABOVE), lazy Newton's float32 Hessians come from
#: about this many rows (every ``n_rows // EARLY_CURVATURE_ROWS``-th; all rows below twice it):
#: there the step's direction matters more than its curvature's last digits, and the line
#: search keeps every step a descent.
EARLY_CURVATURE_ROWS = 20_000


def early_curvature_stride(n_rows: int) -> int:
    """Row stride of lazy Newton's early Hessians (:data:`EARLY_CURVATURE_ROWS`)."""
    return max(1, int(n_rows) // EARLY_CURVATURE_ROWS)


def second_order_loop(data: FitData, tol, max_iter, *, strategy: str, rule,
                      stride: int = 1, early_stride: int = 1, formed: bool = False) -> RawResult:
    """Newton-type iterations on all units in memory (pure; jit with ``strategy``, ``rule`` static).

    ``stride`` > 1: every Hessian from every ``stride``-th row in float32 (an estimate, see
    :func:`~glmformula.backend.problem.sampled_hessian_sum`; gradients stay exact).
    ``early_stride`` > 1 (lazy rules): the float32 Hessians of iterations still more than
    :data:`MIXED_ABOVE` nats from the optimum from every ``early_stride``-th row.
    ``formed`` (Poisson, column-pair Hessians, no tiles): every pass forms the linear
    predictor from the weights (:func:`formed_sums`, :func:`formed_line_search_pass`)
    instead of storing it.

    ``rule`` turns (Hessian, gradient, parameters) into a step: :class:`NewtonRule`
    here, the proximal Newton rule in :mod:`~glmformula.backend.proximal`. The
    loop owns the rest: Hessians, line search on ``eta`` (no matrix product per
    trial step), bookkeeping and stopping.
    """
    blk = data.block
    P, U = data.W0.shape
    dtype = data.W0.dtype
    lazy = getattr(rule, "lazy", False)
    mixed = lazy and dtype == jnp.float64
    W = data.W0 * data.mask
    b = data.b0
    chunk = step_chunk(P, jnp.dtype(dtype).itemsize)
    eta, (f, g, mag) = initial_pass(data, W, b, chunk, formed)
    h = rule.nonsmooth(data, W)
    inf = jnp.full((U,), jnp.inf, f.dtype)
    n = P + 1 if lazy else 1
    st = _State(W, b, eta, f + h, g, mag + h, jnp.array(0), ~data.active,
                jnp.zeros(U, jnp.int32), inf,
                jnp.where(data.active, OK, NO_SPIKES).astype(jnp.int32), jnp.zeros(U, bool),
                jnp.zeros((U if lazy else 1, n, n), dtype), jnp.ones((U if lazy else 1, n), dtype),
                jnp.array(False), jnp.array(jnp.inf, dtype), jnp.array(0), jnp.array(1),
                jnp.array(not mixed), jnp.array(False), jnp.zeros(U, bool))

    def hessian(st, compute=None, every=stride):
        if formed:  # stride 1: the sampled rows are lazy Newton's early ones
            return penalised_hessian(data, formed_sums(data, st.W, st.b, ("hessian",), compute,
                                                       every)[0])
        D = curvature(st.eta, blk.rw, blk.Y, blk.obs)
        if every != stride:  # lazy Newton's early Hessians: a plain row sample
            return penalised_hessian(data, sampled_hessian_sum(blk.X, D, strategy, every,
                                                               compute))
        return penalised_hessian(data, sampled_hessian(
            data, D, strategy, stride, jnp.float32 if stride > 1 else compute))

    def lazy_direction(st):
        # one global choice per iteration (the Hessian pass serves all units)
        worst = jnp.max(jnp.where(st.done, 0.0, st.crit))
        # linear convergence at the last contraction must reach tol within CHORD_STEPS
        reuse = (st.it > 0) & (worst <= REUSE_BELOW) & (st.ratio <= REUSE_CONTRACTION) \
            & (CHORD_STEPS * jnp.log(st.ratio) <= jnp.log(tol / worst)) \
            & ~(st.kept_low & st.need64)

        def low(st):
            def all_rows():
                return rule.factor(hessian(st, jnp.float32), _rank_tol(jnp.float32))

            def sampled():  # far from the optimum a row sample shapes the step as well
                aux, _ = rule.factor(hessian(st, jnp.float32, early_stride),
                                     _rank_tol(jnp.float32))
                return aux, jnp.zeros(U, bool)  # a sample's rank says nothing of the design's

            aux, flagged = (lax.cond(worst > MIXED_ABOVE, sampled, all_rows)
                            if early_stride > 1 else all_rows())
            # a float32 factorisation decides no rank: it only asks for a float64 one
            return aux, jnp.zeros(U, bool), flagged, jnp.array(True)

        def full(st):
            aux, deficient = rule.factor(hessian(st))
            return aux, deficient, jnp.zeros(U, bool), jnp.array(False)

        def fresh(st):
            return lax.cond(st.need64, full, low, st) if mixed else full(st)

        def kept(st):
            return (st.Cinv, st.s), jnp.zeros(U, bool), jnp.zeros(U, bool), st.kept_low

        aux, deficient, flagged, is_low = lax.cond(reuse, kept, fresh, st)
        step, slope, crit = rule.solve(data, aux, st.g, st.W)
        fresh_low = ~reuse & is_low
        return (step, slope, crit, aux, deficient, st.exact | (~reuse & ~is_low),
                st.n_hess + (~reuse).astype(jnp.int32), flagged, is_low, fresh_low, worst)

    def cond(st):
        return (st.it < max_iter) & jnp.any(~st.done)

    def body(st):
        if lazy:
            (step, slope, crit, aux, deficient, exact, n_hess, flagged, kept_low, fresh_low,
             worst) = lazy_direction(st)
        else:
            step, slope, crit, aux, deficient = rule.direction(data, hessian(st), st.g, st.W, st.b)
            exact, n_hess = st.exact, st.n_hess + 1
            flagged, kept_low, fresh_low, worst = st.screen, st.kept_low, jnp.array(False), 0.0
        done = st.done | (crit <= tol)
        go = ~done
        step = jnp.where(go[None, :], step, 0.0)
        dW, db = step[:P], step[P]
        nonsmooth = lambda Wa: rule.nonsmooth(data, Wa)  # noqa: E731
        if formed:
            a, ok, eta, (f, g, mag), passes = formed_line_search_pass(
                data, st.W, st.b, dW, db, st.f, jnp.where(go, slope, 0.0), st.mag, go, nonsmooth)
        else:
            a, ok, eta, (f, g, mag), passes = line_search_pass(
                data, chunk, st.eta, st.W, dW, db, st.f, jnp.where(go, slope, 0.0), st.mag, go,
                nonsmooth)
        W = st.W + a * dW
        b = st.b + a * db
        h = rule.nonsmooth(data, W)
        # criterion at the new point with this iteration's Hessian: near the
        # optimum the Hessian barely changes, and this saves a final Hessian pass
        new_crit = rule.criterion(data, aux, g, W)
        stalled = go & ~ok
        ratio = jnp.max(jnp.where(go, new_crit / jnp.maximum(jnp.where(go, crit, 1.0), 1e-300),
                                  0.0))
        crit = jnp.where(go, new_crit, jnp.where(st.done, st.crit, crit))
        kept = (aux[0], aux[1]) if lazy else (st.Cinv, st.s)
        return _State(
            W, b, eta, f + h, g, mag + h, st.it + 1,
            done | stalled | (go & (new_crit <= tol)),
            st.n_iter + go.astype(jnp.int32),
            crit,
            jnp.where(stalled, STALLED, st.status),
            st.deficient | (deficient & data.active),
            kept[0], kept[1], exact, ratio.astype(dtype), n_hess,
            st.n_pass + passes,
            st.need64 | jnp.any(flagged & go)
            | (fresh_low & (ratio > POOR_CONTRACTION) & (worst <= MIXED_ABOVE)),
            kept_low, st.screen | (flagged & data.active),
        )

    st = lax.while_loop(cond, body, st)
    # A float32 factorisation looked singular and the fit ended before a float64 one was
    # made: decide the rank from one (at the solution) now.
    recheck = (jnp.any(st.screen) & ~st.exact) if mixed else jnp.array(False)
    deficient = lax.cond(recheck, lambda st: rule.factor(hessian(st))[1] & data.active,
                         lambda st: st.deficient, st) if mixed else st.deficient
    converged = data.active & (st.crit <= tol)
    status = jnp.where(data.active & ~converged & (st.status == OK), MAX_ITER, st.status)
    return RawResult(
        st.W, st.b, st.f, st.crit, rule.grad_norm(data, st.g, st.W), converged, st.n_iter,
        status, deficient, st.n_hess + recheck.astype(jnp.int32), st.n_pass,
    )


def reads_columns_first(solver, obs=None) -> bool:
    """Whether ``solver`` fits a design laid out columns first
    (:func:`~glmformula.backend.problem.columns_first`) without a row-major copy: Newton on
    the Poisson family, whose passes then form the linear predictor
    (:func:`~glmformula.backend.problem.poisson_model_sums_columns`); not with sampled
    curvature (its tiles are of the row-major design)."""
    return (isinstance(solver, Newton) and not (solver.sampled_curvature and not solver.lazy)
            and (obs is None or is_poisson(obs)))


#: Newton on many units of a narrow shared Poisson design forms the linear predictor in every
#: pass instead of storing it (``second_order_loop(formed=True)``, where
#: :func:`~glmformula.backend.problem.fused_model_applies`); False: always stored (a switch
#: for measurements).
FORMED_PREDICTOR = True


@attrs.frozen
class Newton:
    """Damped Newton/IRLS with Cholesky solves and Armijo backtracking.

    Parameters
    ----------
    tol : float
        Convergence tolerance on the rate-weighted RMS Newton step of the linear
        predictor (nats); raised to :func:`tolerance_floor` of the dtype.
    max_iter : int
        Maximum Newton iterations (each: one Hessian pass, two matrix products).
    lazy : bool
        Form early Hessians in float32 and reuse factorisations near the optimum (see
        :data:`MIXED_ABOVE`). False: a float64 Hessian every iteration, as after REML, whose
        answer is already the optimum: one exact step certifies it, where a float32 Hessian of
        a strongly penalised (ill-conditioned) problem can leave the criterion above ``tol``.
    sampled_curvature : bool
        On a wide design (:func:`~glmformula.backend.problem.curvature_sampling`), form each
        Hessian in float32 from every ``curvature_stride(rows)``-th row. The gradient stays
        exact, so the answer does not change; the criterion is estimated within the sample's
        error. For confirming an answer that REML has already refined to the criterion, with
        the Hessians it used (standard errors come from their own exact pass). Only with
        ``lazy=False`` (lazy Newton chooses its own Hessians).

    Notes
    -----
    Cost per iteration ~ ``U * T * P^2 / 2`` flops (the Hessians); best for
    small/medium ``P`` or one unit (see :func:`~glmformula.backend.solve.choose_solver`).
    """

    tol: float = 1e-8
    max_iter: int = 100
    lazy: bool = True
    sampled_curvature: bool = False
    name = "newton"

    def run(self, data: FitData):
        """Fit all units; returns ``(RawResult, compile_seconds, run_seconds)``."""
        P, U = data.W0.shape
        dtype = data.W0.dtype
        tol = jnp.asarray(max(self.tol, tolerance_floor(dtype)), dtype)
        static = dict(strategy=hessian_strategy(U, P), rule=NewtonRule(lazy=self.lazy))
        if self.lazy:
            static["early_stride"] = early_curvature_stride(rows_of(data.block))
        if data.block.X is None:  # laid out columns first: only the formed passes read it
            if not reads_columns_first(self, data.block.obs):
                raise ValueError("a design laid out columns first is read by Poisson Newton "
                                 "without sampled curvature only")
            static["formed"] = True
        else:
            if self.sampled_curvature and not self.lazy:
                static["stride"] = curvature_sampling(data.block.X.shape[0], U, P + 1)["stride"]
                data = with_tiles(data, static["stride"])
            static["formed"] = bool(FORMED_PREDICTOR and "stride" not in static
                                    and data.tiles is None
                                    and fused_model_applies(data.block.obs, static["strategy"], U))
        return compiled_call(second_order_loop, static, data, tol,
                             jnp.asarray(self.max_iter, jnp.int32))
