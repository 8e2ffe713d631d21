"""Smoothing strengths chosen by restricted marginal likelihood (REML), all units at once.

Each unit's weights ``beta`` (its columns and the intercept, last) carry a quadratic penalty
``0.5 * beta' S(rho) beta`` with ``S(rho) = sum_m exp(rho_m) S_m + S_fixed``: one strength per
smooth term (or tensor-product margin) and unit. As mgcv's ``method="REML"`` does for a Poisson
GLM (Wood 2011), the strengths minimise the Laplace approximation of the negative restricted
marginal likelihood

    V(rho) = L(beta_hat) + 0.5 beta_hat' S beta_hat + 0.5 log|A| - 0.5 log|S|_+,

where ``L`` is the summed negative log-likelihood (without ``log y!``), ``beta_hat(rho)`` the
penalised fit, ``A = H + S`` its penalised Hessian and ``|S|_+`` the product of the non-zero
eigenvalues of ``S`` (constants dropped). Everything is in the scale of sums over rows (mgcv's
``sp`` = ``exp(rho)``); the engine divides by the row count for the mean objective.

The outer iteration is Newton's method on ``rho`` with the exact gradient (including the change
of ``H`` with ``beta_hat``, which mgcv's Laplace REML has and the Fellner-Schall / PQL updates
drop) and the Hessian of the terms at fixed ``H`` (exact for a Gaussian response; close for
Poisson), a step length limit and a backtracking search on ``V`` per unit. The inner fits are
penalised Newton iterations, warm-started. Both are compiled JAX kernels over all units of a
problem; the loop between them runs on the host (a few tens of calls).
"""

from __future__ import annotations

from typing import NamedTuple

import attrs
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from . import problem as pb

#: Largest change of a log-strength in one outer step.
MAX_STEP = 5.0
#: Log-strengths stay within this distance of their starting values.
RHO_RANGE = 15.0
#: Converged when every |dV/drho| is below this (nats per unit change of log-strength). Tight,
#: so that the answer does not depend on where the search started (a cross-validation fold
#: starts from the strengths of the fit on all rows; Newton's last steps are cheap).
GRADIENT_TOL = 1e-6


class RemlData(NamedTuple):
    """Device arrays of one REML problem (a pytree)."""

    block: pb.Block
    mask: jax.Array        # (p, U) 1.0 where unit u uses coordinate j (intercept last: 1)
    S: jax.Array           # (M, U, p, p) penalty matrix of each strength, per unit
    fixed: jax.Array       # (U, p, p) penalties with a fixed strength (sum scale)
    scale: jax.Array       # (U,) spikes per unit: the size of the loss, for tolerances


def _total_penalty(data: RemlData, lam):
    return jnp.einsum("mu,mupq->upq", lam, data.S) + data.fixed


def _masked(data: RemlData, A):
    m = data.mask.T
    A = A * m[:, :, None] * m[:, None, :]
    idx = jnp.arange(A.shape[-1])
    return A.at[:, idx, idx].add(1.0 - m)


def _value_grad(data: RemlData, beta, Sl):
    blk = data.block
    P = beta.shape[0] - 1
    eta = blk.X @ beta[:P] + beta[P][None, :] + blk.offset
    loss, gw, gb, _ = pb.value_grad_sums(blk.X, blk.Y, blk.rw, eta)
    Sb = jnp.einsum("upq,qu->pu", Sl, beta)
    grad = (jnp.concatenate([gw, gb[None, :]], axis=0) + Sb) * data.mask
    return loss + 0.5 * jnp.sum(beta * Sb, axis=0), grad, eta


def _penalised_hessian(data: RemlData, eta, Sl, strategy: str):
    H = pb.hessian_sum(data.block.X, pb.curvature(eta, data.block.rw), strategy)
    return _masked(data, H + Sl)


def penalised_fit(data: RemlData, lam, beta0, *, strategy: str, max_iter: int = 100,
                  tol: float = 1e-10, refresh: int = 4):
    """Penalised Newton fit of every unit at strengths ``lam`` (M, U), from ``beta0`` (p, U).

    The Hessian is formed every ``refresh`` iterations and reused in between (Newton-chord
    steps: a gradient pass each, where a Hessian costs ``p`` times more for wide designs); the
    outer iteration warm-starts from the last fit, where the old Hessian is nearly right. It is
    formed once more at the answer, for the REML criterion.

    Returns
    -------
    beta (p, U), f (U,) penalised objective, A (U, p, p) penalised Hessian at ``beta``,
    iterations, converged (U,)
    """
    Sl = _total_penalty(data, lam)
    blk = data.block
    P = beta0.shape[0] - 1
    f0, g0, eta0 = _value_grad(data, beta0, Sl)
    A0 = _penalised_hessian(data, eta0, Sl, strategy)
    steps = 0.5 ** jnp.arange(12, dtype=beta0.dtype)

    def direction(g, A):
        return -jax.vmap(lambda a, v: jax.scipy.linalg.cho_solve(
            (jnp.linalg.cholesky(a), True), v))(A, g.T).T

    def cond(st):
        beta, f, g, A, eta, it, done = st
        return (it < max_iter) & ~jnp.all(done)

    def body(st):
        beta, f, g, A, eta, it, done = st
        d = direction(g, A) * (~done)[None, :]
        slope = jnp.sum(g * d, axis=0)
        xi = blk.X @ d[:P] + d[P][None, :]
        Sd, Sb = jnp.einsum("upq,qu->pu", Sl, d), jnp.einsum("upq,qu->pu", Sl, beta)
        dSd, bSd = jnp.sum(d * Sd, axis=0), jnp.sum(beta * Sd, axis=0)
        bSb = jnp.sum(beta * Sb, axis=0)
        def accepted(trial):  # Armijo test of the steps ``trial`` (K,): (K, U)
            losses = pb.loss_sums_along(eta, xi, blk.Y, blk.rw,
                                        trial[:, None] * jnp.ones_like(f))
            f_try = losses + 0.5 * (bSb + 2 * trial[:, None] * bSd
                                    + trial[:, None] ** 2 * dSd)
            return f_try <= f[None, :] + 1e-4 * trial[:, None] * slope[None, :] \
                + 1e-12 * data.scale

        # the full step first (one pass over the rows; Newton's step is nearly always taken),
        # the whole ladder of shorter ones only when some unit refuses it
        full = accepted(steps[:1])[0] | done
        ok = lax.cond(jnp.all(full), lambda: jnp.broadcast_to(full, (steps.shape[0],) +
                                                               full.shape),
                      lambda: accepted(steps))
        first = jnp.argmax(ok, axis=0)
        a = jnp.where(jnp.any(ok, axis=0), steps[first], 0.0) * (~done)
        beta = beta + a[None, :] * d
        f_new, g_new, eta_new = _value_grad(data, beta, Sl)
        A_new = lax.cond(it % refresh == refresh - 1,
                         lambda: _penalised_hessian(data, eta_new, Sl, strategy), lambda: A)
        decrement = -slope  # g' A^-1 g at the old point
        now_done = done | (decrement <= tol * (1.0 + data.scale)) | (a == 0.0)
        return beta, f_new, g_new, A_new, eta_new, it + 1, now_done

    done0 = jnp.zeros(f0.shape, bool)
    beta, f, g, A, eta, it, done = lax.while_loop(
        cond, body, (beta0, f0, g0, A0, eta0, jnp.asarray(0), done0))
    A = _penalised_hessian(data, eta, Sl, strategy)
    # one more convergence check at the final point with its own Hessian
    d = direction(g, A)
    converged = -jnp.sum(g * d, axis=0) <= 1e3 * tol * (1.0 + data.scale)
    return beta, f, A, it, converged


@attrs.frozen(eq=False)
class HostPenalties:
    """The penalty arrays on the host (numpy): the small dense algebra of the outer iteration
    (log-determinants, traces, inverses over p x p per unit) runs there. Batched LAPACK calls
    and 4-d contractions inside compiled kernels were seen to wedge XLA's CPU thread pool
    (a known XLA issue), and these sizes gain nothing from compilation."""

    S: np.ndarray      # (M, U, p, p)
    fixed: np.ndarray  # (U, p, p)
    basis: np.ndarray  # (U, p, p)
    null: np.ndarray   # (U, p)
    mask: np.ndarray   # (p, U)

    def total(self, lam: np.ndarray) -> np.ndarray:
        return np.einsum("mu,mupq->upq", lam, self.S) + self.fixed

    def basis_form(self, matrix: np.ndarray) -> np.ndarray:
        """``E' matrix E`` per unit with the null-space directions set to the identity."""
        B = np.einsum("uqp,uqr,urs->ups", self.basis, matrix, self.basis, optimize=True)
        keep = 1.0 - self.null
        B = B * keep[:, :, None] * keep[:, None, :]
        idx = np.arange(B.shape[-1])
        B[:, idx, idx] += self.null
        return B


def _logdet(A: np.ndarray) -> np.ndarray:
    sign, value = np.linalg.slogdet(A)
    return np.where(sign > 0, value, np.inf)


def criterion(host: HostPenalties, lam: np.ndarray, f: np.ndarray, A: np.ndarray):
    """``V`` per unit (U,) from the penalised objective ``f`` and Hessian ``A`` at the fit."""
    return f + 0.5 * _logdet(A) - 0.5 * _logdet(host.basis_form(host.total(lam)))


def derivatives(host: HostPenalties, block, lam: np.ndarray, beta: np.ndarray, A: np.ndarray, *,
                exact: bool, dtype=jnp.float64):
    """Gradient (M, U) and approximate Hessian (M, M, U) of ``V`` in ``rho = log lam``, the
    effective degrees of freedom of each coordinate (U, p) and ``A^-1`` (U, p, p).

    ``exact``: include ``0.5 tr(A^-1 dH/drho)`` (``H`` changes with ``beta_hat``), one more pass
    over the rows costing as much as a Hessian.
    """
    Ainv = np.linalg.inv(A)
    Ainv = 0.5 * (Ainv + np.swapaxes(Ainv, 1, 2))
    S = host.S
    Sb = np.einsum("mupq,qu->mup", S, beta)
    bSb = np.einsum("mup,pu->mu", Sb, beta)
    AS = np.matmul(Ainv[None], S)
    tr_AS = np.einsum("mupp->mu", AS)
    Binv = np.linalg.inv(host.basis_form(host.total(lam)))
    St = np.einsum("uqp,muqr,urs->mups", host.basis, S, host.basis, optimize=True)
    BS = np.matmul(Binv[None], St)
    tr_BS = np.einsum("mupp->mu", BS)
    AinvSb = np.einsum("upq,muq->mup", Ainv, Sb)
    dbeta = -lam[:, :, None] * AinvSb  # (M, U, p): d beta_hat / d rho_m
    grad = 0.5 * lam * (bSb + tr_AS - tr_BS)
    if exact:  # masked coordinates (decoupled, identity in A) must not enter x' A^-1 x
        m = host.mask.T
        a = lambda x: jnp.asarray(x, dtype)  # noqa: E731
        extra, _, _ = pb.compiled_call(_trace_dH, {}, block, a(beta),
                                       a(Ainv * m[:, :, None] * m[:, None, :]), a(dbeta))
        grad = grad + 0.5 * np.asarray(extra)
    outer = lam[:, None] * lam[None, :]
    hess = (-outer * np.einsum("mup,nup->mnu", Sb, AinvSb)
            - 0.5 * outer * np.einsum("mupq,nuqp->mnu", AS, AS, optimize=True)
            + 0.5 * outer * np.einsum("mupq,nuqp->mnu", BS, BS, optimize=True))
    M = lam.shape[0]
    hess = hess + np.eye(M)[:, :, None] * (0.5 * lam * (bSb + tr_AS - tr_BS))[None, :, :]
    F_diag = 1.0 - np.einsum("upq,uqp->up", Ainv, host.total(lam))
    return grad, hess, F_diag * host.mask.T, Ainv


def _trace_dH(blk, beta, Ainv, dbeta, chunk: int = 2048):
    """``tr(A^-1 dH[dbeta_m])`` (M, U) with ``dH[d] = X' diag(rw mu (X d)) X``: a sum over rows
    of ``rw mu (x' d_m) (x' A^-1 x)``, row chunk by row chunk."""
    T = blk.X.shape[0]

    def part(x, off, rw):
        xa = jnp.concatenate([x, jnp.ones((x.shape[0], 1), x.dtype)], axis=1)
        eta = xa @ beta + off
        mu = rw[:, None] * pb.curvature(eta, jnp.ones_like(rw))
        h = jnp.einsum("cuq,cq->cu", jnp.einsum("cp,upq->cuq", xa, Ainv), xa)
        v = jnp.einsum("cp,mup->mcu", xa, dbeta)
        return jnp.sum(v * (mu * h)[None], axis=1)

    off = jnp.broadcast_to(blk.offset, (T, beta.shape[1]))
    if T <= chunk:
        return part(blk.X, off, blk.rw)
    n_full, rem = T // chunk, T % chunk
    M, U = dbeta.shape[0], dbeta.shape[1]

    def body(i, acc):
        s = lambda a: lax.dynamic_slice_in_dim(a, i * chunk, chunk)
        return acc + part(s(blk.X), s(off), s(blk.rw))

    acc = lax.fori_loop(0, n_full, body, jnp.zeros((M, U), blk.X.dtype))
    if rem:
        tail = slice(n_full * chunk, T)
        acc = acc + part(blk.X[tail], off[tail], blk.rw[tail])
    return acc


# --------------------------------------------------------------------------- the outer loop


@attrs.frozen(eq=False)
class RemlResult:
    """Selected strengths and the fit at them.

    Attributes
    ----------
    log_strength : ndarray (M, U)
        ``rho``: log of the sum-scale strengths (mgcv's ``log(sp)``); NaN where a unit has no
        penalty ``m``.
    beta : ndarray (p, U)
        Weights (intercept last) at the selected strengths.
    criterion : ndarray (U,)
        ``V`` at the optimum (nats, constants dropped).
    edf : ndarray (U, p)
        Effective degrees of freedom of each coordinate (``diag(A^-1 H)``).
    gradient : ndarray (M, U)
        ``dV/drho`` at the end (0 at an interior optimum).
    converged : ndarray (U,) bool
    n_outer : int
        Outer (strength) iterations.
    n_inner : int
        Penalised Newton iterations over all inner fits.
    covariance : ndarray (U, p, p)
        ``A^-1``: the Bayesian posterior covariance of (weights, intercept).
    """

    log_strength: np.ndarray
    beta: np.ndarray
    criterion: np.ndarray
    edf: np.ndarray
    gradient: np.ndarray
    converged: np.ndarray
    n_outer: int
    n_inner: int
    covariance: np.ndarray


def penalty_basis(S: np.ndarray, fixed: np.ndarray, mask: np.ndarray, rtol: float = 1e-9):
    """Per unit, eigenvectors of the total penalty computed block by block (columns that no
    penalty links stay apart, so strengths of different terms never mix in ``log|S|_+``) and
    the indicator of its null space.

    Parameters
    ----------
    S : (M, U, p, p), fixed : (U, p, p), mask : (p, U)

    Returns
    -------
    basis (U, p, p), null (U, p)
    """
    M, U, p, _ = S.shape
    basis = np.zeros((U, p, p))
    null = np.zeros((U, p))
    for u in range(U):
        parts = [S[m, u] / max(np.abs(S[m, u]).max(), 1e-300) for m in range(M)]
        if np.abs(fixed[u]).max() > 0:
            parts.append(fixed[u] / np.abs(fixed[u]).max())
        total = np.sum(parts, axis=0) if parts else np.zeros((p, p))
        keep = mask[:, u] > 0
        total = total * np.outer(keep, keep)
        linked = total != 0
        seen = np.zeros(p, bool)
        for j in range(p):
            if seen[j]:
                continue
            component, frontier = {j}, [j]
            while frontier:  # the columns this penalty links to j
                k = frontier.pop()
                for i in np.flatnonzero(linked[k] | linked[:, k]):
                    if i not in component:
                        component.add(int(i))
                        frontier.append(int(i))
            idx = np.array(sorted(component))
            seen[idx] = True
            values, vectors = np.linalg.eigh(total[np.ix_(idx, idx)])
            basis[u][np.ix_(idx, idx)] = vectors
            null[u, idx] = values <= rtol * max(values.max(), 0.0) if values.max() > 0 else 1.0
    return basis, null


def select(block: pb.Block, mask: np.ndarray, S: np.ndarray, fixed: np.ndarray,
           beta0: np.ndarray, rho0: np.ndarray, *, present: np.ndarray, dtype=jnp.float64,
           exact: bool = True, max_outer: int = 40, tol: float = GRADIENT_TOL) -> RemlResult:
    """Minimise ``V(rho)`` for every unit (see the module docstring).

    Parameters
    ----------
    block : Block
        All rows (device arrays).
    mask : ndarray (p, U)
        1 where unit u uses coordinate j (intercept last, always 1).
    S : ndarray (M, U, p, p)
        Penalty matrix of each strength for each unit (zero where it does not apply).
    fixed : ndarray (U, p, p)
        Penalties whose strength is fixed (sum scale).
    beta0 : ndarray (p, U)
        Starting weights.
    rho0 : ndarray (M, U)
        Starting log-strengths.
    present : ndarray (M, U) bool
        Which strengths each unit has.
    exact : bool
        Exact gradient of the Laplace approximation (as mgcv); False drops the change of the
        Hessian with the weights (cheaper for wide designs; a slightly different optimum).
    """
    M, U = rho0.shape
    strategy = pb.hessian_strategy(U, block.X.shape[1])
    basis, null = penalty_basis(S, fixed, mask)
    a = lambda x: jnp.asarray(x, dtype)  # noqa: E731
    spikes = np.asarray(block.rw @ block.Y)
    keep = mask.T
    S = S * keep[None, :, :, None] * keep[None, :, None, :]
    fixed = fixed * keep[:, :, None] * keep[:, None, :]
    host = HostPenalties(S, fixed, basis, null, np.asarray(mask, float))
    data = RemlData(block, a(mask), a(S), a(fixed), a(spikes))
    present = np.asarray(present, bool)
    low, high = rho0 - RHO_RANGE, rho0 + RHO_RANGE
    rho = np.where(present, rho0, 0.0)

    def lam_of(r):
        return np.where(present, np.exp(r), 0.0)

    def inner(r, start):
        (beta, f, A, it, ok), _, _ = pb.compiled_call(
            penalised_fit, {"strategy": strategy}, data, a(lam_of(r)), a(start))
        A = np.array(A)
        V = criterion(host, lam_of(r), np.asarray(f), A)
        return np.array(beta), V, A, int(it), np.array(ok)

    beta, V, A, n_inner, ok = inner(rho, beta0)
    converged = np.zeros(U, bool)
    stopped = np.zeros(U, bool)  # no decrease of V along the step: at V's numerical minimum
    boost = np.ones((M, U))  # grows while full steps keep the gradient's sign (V's tail)
    last_grad, last_full = np.zeros((M, U)), np.zeros(U, bool)
    n_outer = 0
    for n_outer in range(1, max_outer + 1):
        grad, hess, edf, cov = derivatives(host, block, lam_of(rho), beta, A, exact=exact,
                                           dtype=dtype)
        grad = np.where(present, np.asarray(grad), 0.0)
        hess = np.asarray(hess)
        free = present & ~(((rho <= low + 1e-9) & (grad > 0)) | ((rho >= high - 1e-9)
                                                                  & (grad < 0)))
        converged = np.all(np.abs(np.where(free, grad, 0.0)) < tol, axis=0) | stopped
        if converged.all():
            break
        slow = last_full[None, :] & (np.sign(grad) == np.sign(last_grad)) & \
            (np.abs(grad) > 0.25 * np.abs(last_grad))
        boost = np.where(slow, np.minimum(boost * 2.0, 64.0), 1.0)
        step = _newton_steps(grad, hess, free & ~converged[None, :], boost)
        alpha = np.ones(U)
        trial_done = converged.copy()
        for _ in range(10):
            r_try = np.clip(rho + alpha[None, :] * step, low, high)
            r_try = np.where(trial_done[None, :], rho, r_try)
            beta_t, V_t, A_t, it, ok_t = inner(r_try, beta)
            n_inner += it
            slope = np.sum(grad * (r_try - rho), axis=0)
            better = (V_t <= V + 1e-4 * slope + 1e-9 * np.abs(V)) & ~trial_done
            beta[:, better] = beta_t[:, better]
            V[better] = V_t[better]
            rho[:, better] = r_try[:, better]
            A[better] = A_t[better]
            ok[better] = ok_t[better]
            trial_done |= better
            alpha = np.where(trial_done, alpha, alpha * 0.25)
            if trial_done.all():
                break
        last_grad, last_full = grad, trial_done & (alpha == 1.0)
        stopped |= ~trial_done
        if (stopped | converged).all():
            converged |= stopped
            break
    grad, hess, edf, cov = derivatives(host, block, lam_of(rho), beta, A, exact=False)
    return RemlResult(np.where(present, rho, np.nan), beta, V, np.asarray(edf),
                      np.where(present, np.asarray(grad), 0.0) if exact else
                      np.where(present, np.asarray(grad), 0.0), converged & ok, n_outer,
                      n_inner, np.asarray(cov))


def _newton_steps(grad: np.ndarray, hess: np.ndarray, free: np.ndarray,
                  boost: np.ndarray) -> np.ndarray:
    """Per unit, ``-H^-1 g`` on its free strengths with ``H`` made positive definite (absolute
    eigenvalues, floored), stretched by ``boost`` where V's slope has kept its sign (towards
    an infinite strength the fixed-H Hessian overstates the curvature) and the largest change
    limited to :data:`MAX_STEP`."""
    M, U = grad.shape
    step = np.zeros((M, U))
    for u in range(U):
        idx = np.flatnonzero(free[:, u])
        if not idx.size:
            continue
        h = hess[np.ix_(idx, idx, [u])][:, :, 0]
        h = 0.5 * (h + h.T)
        values, vectors = np.linalg.eigh(h)
        values = np.maximum(np.abs(values), max(1e-6, 1e-7 * np.abs(values).max()))
        d = -vectors @ ((vectors.T @ grad[idx, u]) / values) * boost[idx, u]
        biggest = np.abs(d).max()
        if biggest > MAX_STEP:
            d *= MAX_STEP / biggest
        step[idx, u] = d
    return step


__all__ = ["RemlData", "HostPenalties", "RemlResult", "select", "penalised_fit", "derivatives",
           "criterion", "penalty_basis", "GRADIENT_TOL"]
