"""Proximal Newton for L1 (lasso, elastic net) and group-lasso penalties.

Outer loop: the Newton loop of :mod:`~glmformula.backend.newton` (Hessian pass,
line search on ``eta``), with a different step rule. Each step minimises the
quadratic model of the smooth part plus the exact non-smooth penalty::

    min_d  g'd + d'Hd/2 + h(theta + d)

with FISTA (adaptive restart) on the (P+1)x(P+1) model — no pass over the rows,
so the inner iterations are cheap — in coordinates scaled by the Hessian
diagonal (per group for the group lasso, so the group prox stays closed form).
The inner solve is stopped by a superlinear forcing rule (its residual below
``min(0.1, r) * r`` of its starting residual ``r``), which keeps the outer
convergence superlinear. The line search is Armijo on the full objective with
the model decrease ``g'd + h(theta + d) - h(theta)`` (Tseng & Yun).

Convergence: the minimum-norm subgradient ``r`` (the KKT residual: zero exactly
at the optimum) in the same scale-aware units as Newton,
``sqrt(sum_j r_j^2 / H_jj / ybar)``. ``grad_norm`` reports ``max |r|``.
Proximal operators give exact zeros, so zero weights are exactly 0.
"""

from __future__ import annotations

import attrs
import jax.numpy as jnp
from jax import lax

from .newton import robust_factor, second_order_loop, tolerance_floor
from .problem import FitData, compiled_call, hessian_strategy

__all__ = ["ProximalNewton", "ProximalRule", "nonsmooth_penalty", "kkt_residual", "prox"]


def _group_norms(gmat, W):
    return jnp.sqrt(gmat @ (W * W))  # (G, U)


def nonsmooth_penalty(W, l1, gmat, gstr):
    """``sum l1 |W| + sum_g gstr_g ||W_g||`` per unit (U,)."""
    return jnp.sum(l1 * jnp.abs(W), axis=0) + jnp.sum(gstr * _group_norms(gmat, W), axis=0)


def prox(V, t_l1, gmat, t_group):
    """Proximal operator of ``sum t_l1 |v| + sum_g t_group_g ||v_g||``.

    For L1 and groups together (sparse group lasso) the prox is the soft
    threshold followed by the group shrinkage (exact, not an approximation).
    V, t_l1: (n, U); gmat: (G, n); t_group: (G, U).
    """
    V = jnp.sign(V) * jnp.maximum(jnp.abs(V) - t_l1, 0.0)
    norms = _group_norms(gmat, V)
    # (G, U)
    shrink = jnp.where(norms > t_group, 1.0 - t_group / jnp.where(norms > 0, norms, 1.0), 0.0)
    in_group = jnp.sum(gmat, axis=0)[:, None]  # (n, 1)
    return V * (gmat.T @ shrink + (1.0 - in_group))


def kkt_residual(g, W, l1, gmat, gstr):
    """Minimum-norm element of the subdifferential of the objective (P, U).

    ``g`` is the smooth gradient w.r.t. the weights. Where a weight (group) is
    non-zero the penalty is differentiable; where it is zero the residual is the
    part of the gradient the penalty cannot absorb.
    """
    # L1 part
    r = jnp.where(W != 0, g + l1 * jnp.sign(W), jnp.sign(g) * jnp.maximum(jnp.abs(g) - l1, 0.0))
    if gmat.shape[0] == 0:
        return r
    wn = _group_norms(gmat, W)  # (G, U)
    gn = _group_norms(gmat, r)
    in_group = jnp.sum(gmat, axis=0)[:, None]
    unit_dir = W * (gmat.T @ jnp.where(wn > 0, 1.0 / jnp.where(wn > 0, wn, 1.0), 0.0))
    nonzero = (gmat.T @ (wn > 0).astype(W.dtype)) > 0
    shrunk = r * (gmat.T @ jnp.maximum(1.0 - gstr / jnp.where(gn > 0, gn, 1.0), 0.0))
    grouped = jnp.where(nonzero, r + (gmat.T @ gstr) * unit_dir, shrunk)
    return jnp.where(in_group > 0, grouped, r)


def _pad(x, value=0.0):
    """(P, U) → (P+1, U): the intercept row (unpenalised)."""
    return jnp.concatenate([x, jnp.full((1, x.shape[1]), value, x.dtype)], axis=0)


def _power_lmax(H, n_iter=30):
    """Largest eigenvalue of each (n, n) matrix, from above: 1.1 x power iteration, capped by
    the trace."""
    v = jnp.ones(H.shape[:2], H.dtype)

    def body(_, v):
        w = jnp.einsum("uij,uj->ui", H, v)
        return w / jnp.linalg.norm(w, axis=1, keepdims=True).clip(1e-300)

    v = lax.fori_loop(0, n_iter, body, v)
    rq = jnp.einsum("ui,uij,uj->u", v, H, v)
    trace = jnp.trace(H, axis1=1, axis2=2)
    return jnp.minimum(1.1 * rq, trace)


@attrs.frozen
class ProximalRule:
    """Step rule of :func:`~glmformula.backend.newton.second_order_loop` for non-smooth
    penalties."""

    max_inner: int = 500

    def nonsmooth(self, data: FitData, W):
        return nonsmooth_penalty(W, data.l1, data.group_matrix, data.group_strength)

    def _crit(self, data: FitData, diag, g, W):
        r = kkt_residual(g[:-1], W, data.l1, data.group_matrix, data.group_strength) * data.mask
        r = jnp.concatenate([r, g[-1:]], axis=0) * data.active[None, :]
        return jnp.sqrt(jnp.sum(r * r / diag, axis=0) / data.scale), jnp.max(jnp.abs(r), axis=0)

    def direction(self, data: FitData, H, g, W, b):
        diag = jnp.diagonal(H, axis1=1, axis2=2).T  # (P+1, U)
        diag = jnp.where(diag > 0, diag, 1.0)
        crit, _ = self._crit(data, diag, g, W)
        gmat = jnp.concatenate([data.group_matrix,
                                jnp.zeros((data.group_matrix.shape[0], 1), H.dtype)], axis=1)
        # Scale by the Hessian diagonal; one scale per group keeps the group prox exact.
        in_group = jnp.sum(gmat, axis=0)[:, None]
        gmax = jnp.max(gmat[:, :, None] * diag[None, :, :], axis=1)  # (G, U)
        s = jnp.where(in_group > 0, gmat.T @ gmax, diag)
        r = jnp.sqrt(s)
        Ht = H / (r.T[:, :, None] * r.T[:, None, :])
        theta = jnp.concatenate([W, b[None, :]], axis=0)
        c = (g - jnp.einsum("uij,ju->iu", H, theta)) / r
        Lip = _power_lmax(Ht)[None, :]  # (1, U)
        t_l1 = _pad(data.l1) / r / Lip
        t_grp = data.group_strength / jnp.sqrt(jnp.where(gmax > 0, gmax, 1.0)) / Lip
        step = lambda y: prox(y - (jnp.einsum("uij,ju->iu", Ht, y) + c) / Lip, t_l1, gmat, t_grp)
        resid = lambda y, z: jnp.sqrt(jnp.sum((Lip * (y - z)) ** 2, axis=0) / data.scale)

        u0 = r * theta
        z0 = step(u0)
        r0 = resid(u0, z0)
        target = jnp.minimum(0.1, r0) * r0

        def cond(st):
            k, u, y, t, res = st
            return (k < self.max_inner) & jnp.any(res > target)

        def body(st):
            k, u, y, t, _ = st
            z = step(y)
            res = resid(y, z)
            # adaptive restart (O'Donoghue & Candes): drop momentum when it points uphill
            restart = jnp.sum((y - z) * (z - u), axis=0) > 0
            t_new = jnp.where(restart, 1.0, 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * t * t)))
            mom = jnp.where(restart, 0.0, (t - 1.0) / t_new)
            return k + 1, z, z + mom * (z - u), t_new, res

        t0 = jnp.ones(u0.shape[1], u0.dtype)
        _, u, _, _, _ = lax.while_loop(cond, body, (0, z0, z0, t0, r0))
        mask = jnp.concatenate([data.mask, jnp.ones((1, data.mask.shape[1]), H.dtype)], axis=0)
        d = (u / r - theta) * mask
        new_W = W + d[:-1]
        h0 = self.nonsmooth(data, W)
        slope = jnp.sum(g * d, axis=0) + self.nonsmooth(data, new_W) - h0
        # the step needs no factorisation; this one only flags singular designs
        _, _, deficient = robust_factor(H)
        return d, slope, crit, diag, deficient

    def criterion(self, data: FitData, diag, g, W):
        return self._crit(data, diag, g, W)[0]

    def grad_norm(self, data: FitData, g, W):
        diag = jnp.ones_like(g)
        return self._crit(data, diag, g, W)[1]


@attrs.frozen
class ProximalNewton:
    """Proximal Newton with inner FISTA, for Lasso / ElasticNet / GroupLasso (smooth penalties too).

    Parameters
    ----------
    tol : float
        Tolerance on the scale-aware KKT residual (see module docs).
    max_iter : int
        Outer iterations (each: one Hessian pass, two matrix products).
    max_inner : int
        FISTA iterations per outer step (cheap: (P+1)^2 per unit each).
    """

    tol: float = 1e-8
    max_iter: int = 100
    max_inner: int = 500
    name = "proximal"

    def run(self, data: FitData):
        P, U = data.W0.shape
        dtype = data.W0.dtype
        tol = jnp.asarray(max(self.tol, tolerance_floor(dtype)), dtype)
        static = dict(strategy=hessian_strategy(U, P), rule=ProximalRule(self.max_inner))
        return compiled_call(second_order_loop, static, data, tol,
                             jnp.asarray(self.max_iter, jnp.int32))
