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

The search is a performance iteration (Gu 1992; mgcv's ``bam``) made exact. Each iteration
forms every unit's quadratic model of the loss at the current weights (one pass over the rows
and one Hessian), adds the slope ``0.5 tr(A^-1 dH/drho)`` the model misses (the change of
``H`` with ``beta_hat``, which mgcv's Laplace REML has and PQL / Fellner-Schall updates drop:
one more pass), minimises the model's ``V`` over the strengths by Newton's method on the host
(p x p algebra per unit, no pass), and moves the weights to the model's penalised optimum at
the new strengths (Armijo-checked by the pass that forms the next model). At its fixed point
the weights are the penalised fit and the exact gradient of ``V`` is zero. A cold start begins
from the model of the classic GLM start (rates ``y + 0.1``). Measured on the real
head-direction recording (32 cells, ``cyclic(head_direction, 20)``, 25 ms): 12 iterations,
about 30 passes, against ~160 for Newton's method on ``rho`` with a penalised refit at every
trial (docs/performance.md, "Automatic smoothness"). That Newton iteration remains as the
fallback for units the performance iteration leaves unconverged: exact gradient, the Hessian
at fixed ``H``, step limits and backtracking on ``V`` per unit, penalised Newton refits.
"""

from __future__ import annotations

from typing import NamedTuple

import attrs
import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from jax import lax

from . import families as fam
from . import problem as pb
from . import row_tiles as rt

#: Largest change of a log-strength in one outer step.
MAX_STEP = 5.0
#: Log-strengths stay within this distance of their starting values.
RHO_RANGE = 15.0
#: From a cold start (weights 0), no log-strength moves by more than this in one iteration of
#: :func:`performance_iteration`. Without it, the real coupled head-direction model's search
#: raised 7 of 32 cells' coupling strength to its upper bound in the second iteration (the
#: term removed, on weights of one IRLS step), where V is flat and the strength stayed,
#: although V is lower (by 0.01-0.43 nats) with the filters kept; at 3 the search finds those
#: optima (within 0.04 nats of a search started from the history model's fit) in the same
#: time (45 s, 14 iterations instead of 13); 5 still missed 4 cells, 2 took 54 s. A warm start
#: (a fold, a nested model's fit) moves freely: capped, folds took 26 s instead of 19-22 s.
MAX_COLD_MOVE = 3.0
#: Converged when every |dV/drho| is below this (nats per unit change of log-strength), or
#: below :data:`RELATIVE_TOL` x |V| where that is larger (every real recording's fit).
GRADIENT_TOL = 1e-8
#: Families whose scale is estimated (their strengths are chosen at the current scale).
SCALED = ("gamma", "gaussian")
#: Slope (nats) that releases a strength from its upper bound (see :func:`_free`).
RELEASE = 1e-2
#: Gradient tolerance relative to V (see :func:`performance_iteration`). mgcv's outer Newton
#: iteration stops at ``|dV/drho| <= 5 conv.tol |V|``, ``conv.tol = 1e-6``
#: (``gam.control()$newton``); a tenth of that here, because our tests ask for weights within
#: 1e-3 of mgcv's (a tensor product's failed at mgcv's own 5e-6, passed at 2e-6). Measured on
#: the real coupled head-direction model (32 units, 10 ms): against 1e-9 (before session
#: 12), a cross-validation fold needs 5 instead of 6-7 Hessian iterations, and its held-out
#: bits/spike move by at most 2e-4 (mean 3e-6); a fold started cold rather than from the fit
#: on all rows (a worker of a distributed comparison) scores within ~1e-6 bits/spike.
RELATIVE_TOL = 5e-7
#: The relative tolerance of a cross-validation fold's search (:data:`FOLD_TOLERANCE`):
#: mgcv's own (``5 conv.tol``). A fold's fit is only scored on its held-out rows, and its
#: strengths are not reported; on the real coupled head-direction model (32 cells, 10 ms,
#: five folds alternated with 5e-7 in one process) a fold took 14.3-17.7 s against 15.7-19.4 s
#: and its held-out log-likelihood moved by 0.006-0.20 nats of ~190,000 (higher in 4 of 5).
FOLD_RELATIVE_TOL = 5e-6
#: A unit's strengths converge only where its weights are at the model's penalised optimum:
#: Newton's decrement (sum scale) at most this times ``1 + spikes``.
WEIGHTS_TOL = 1e-8
#: The same for a cross-validation fold whose model's Hessians are estimates (float32 products
#: of sampled rows: the wide designs of :func:`.problem.curvature_sampling`). Its weights then
#: approach the optimum by a factor of only ~1e-2-1e-4 per iteration (a Hessian pass each), and
#: the strengths chosen on a model within 1e-6 of its optimum (~1e-3 in the predictor) are as
#: good as the sampled Hessian lets them be. On the real coupled head-direction model, at the
#: search's third iteration 27-32 of a fold's 32 units were within 1e-6 but only 9-17 within
#: 1e-8, and the others cost a fourth model and a second slope pass for all 32 units (~2 s of
#: ~9 per fold). The weights
#: are then refined to Newton's criterion at the chosen strengths all the same
#: (:func:`polish`). With exact Hessians Newton's steps converge quadratically and reach
#: :data:`WEIGHTS_TOL` at no extra cost. Measured: docs/performance_decisions.md, 'REML: a
#: fold's weights at the precision of its model (session 20)'.
FOLD_SAMPLED_WEIGHTS_TOL = 1e-6


@attrs.frozen
class SearchTolerance:
    """Where REML's search (:func:`performance_iteration`) stops for a unit: every free
    ``|dV/drho|`` at most ``relative |V|`` (or :data:`GRADIENT_TOL`), its weights within
    :data:`WEIGHTS_TOL` x (1 + spikes) of the model's penalised optimum (Newton's decrement),
    or within ``sampled_weights`` x (1 + spikes) where the model's Hessians are sampled
    estimates."""

    relative: float = RELATIVE_TOL
    sampled_weights: float = WEIGHTS_TOL


#: The tolerances of a fit that is reported (the default) and of a cross-validation fold's,
#: which is only scored on its held-out rows (see the constants above).
FIT_TOLERANCE = SearchTolerance()
FOLD_TOLERANCE = SearchTolerance(FOLD_RELATIVE_TOL, FOLD_SAMPLED_WEIGHTS_TOL)

#: The search's weights are refined (:func:`polish`) until each unit's Newton decrement (sum
#: scale) is below this times its spikes: Newton's criterion ``sqrt(decrement / spikes)`` is
#: then ~3e-9, under its tolerance 1e-8 with room for the Hessian's sampling error. At most
#: 8 chord steps (a gradient pass each; a unit leaves when it is there): on a fold of the real
#: coupled model one unit needed more than 4 and its fit then went to the confirming Newton
#: solve (2.6 s) instead of being certified (see ``engine._reml_is_final``).
POLISH_DECREMENT, POLISH_STEPS = 1e-17, 8


class RemlData(NamedTuple):
    """Device arrays of one REML problem (a pytree)."""

    block: pb.Block
    mask: jax.Array        # (p, U) 1.0 where unit u uses coordinate j (intercept last: 1)
    S: jax.Array           # (M, U, p, p) penalty matrix of each strength, per unit
    fixed: jax.Array       # (U, p, p) penalties with a fixed strength (sum scale)
    scale: jax.Array       # (U,) sum of |y| per unit (spikes for counts): the size of the loss
    #: where a sparse design is non-zero (:mod:`.row_tiles`): its sampled Hessians and
    #: Hessian-change slopes from those rows; None: dense products
    tiles: rt.RowTiles | None = None


def units_subset(data: RemlData, units: np.ndarray) -> RemlData:
    """The problem of some units (an index array): the shared design, their responses,
    offsets, masks and penalties (device gathers, no copy of the design)."""
    blk, j = data.block, jnp.asarray(units)
    offset = blk.offset if blk.offset.shape[1] == 1 else blk.offset[:, j]
    obs = blk.obs if blk.obs.theta is None else fam.Obs(blk.obs.name,
                                                          jnp.asarray(blk.obs.theta)[j])
    return RemlData(pb.Block(blk.X, blk.Y[:, j], offset, blk.rw, obs), data.mask[:, j],
                    data.S[:, j], data.fixed[j], data.scale[j], data.tiles)


def _eta(data: RemlData, beta):
    """The linear predictor (T, U) at ``beta`` (p, U; intercepts last)."""
    return pb.linear_predictor(data.block, beta[:-1], beta[-1])


def _total_penalty(data: RemlData, lam):
    return jnp.einsum("mu,mupq->upq", lam, data.S) + data.fixed


def _masked(data: RemlData, A):
    m = data.mask.T
    A = A * m[:, :, None] * m[:, None, :]
    idx = jnp.arange(A.shape[-1])
    return A.at[:, idx, idx].add(1.0 - m)


def _value_grad(data: RemlData, beta, Sl):
    blk = data.block
    eta = _eta(data, beta)
    loss, gw, gb, _ = pb.value_grad_sums(blk.X, blk.Y, blk.rw, eta, blk.obs)
    Sb = jnp.einsum("upq,qu->pu", Sl, beta)
    grad = (jnp.concatenate([gw, gb[None, :]], axis=0) + Sb) * data.mask
    return loss + 0.5 * jnp.sum(beta * Sb, axis=0), grad, eta


def _penalised_hessian(data: RemlData, eta, Sl, strategy: str):
    blk = data.block
    H = pb.hessian_sum(blk.X, pb.curvature(eta, blk.rw, blk.Y, blk.obs), strategy)
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
    f0, g0, eta0 = _value_grad(data, beta0, Sl)
    A0 = _penalised_hessian(data, eta0, Sl, strategy)

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
        beta, a = _armijo(data, Sl, beta, eta, f, slope, d, done)
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


def loss_gradient_hessian(data: RemlData, beta, *, strategy: str, stride: int = 1,
                          compute: str | None = None):
    """The unpenalised loss (U,), its gradient (p, U) and Hessian (U, p, p) at ``beta``, each
    unit's unused coordinates zeroed: the quadratic model of the loss that one step of the
    performance iteration works on (one pass over the rows and one Hessian; the Hessian as
    :func:`.problem.curvature_sampling` says)."""
    blk = data.block
    if stride == 1 and compute is None and data.tiles is None and pb.fused_model_applies(
            blk.obs, strategy, beta.shape[1]):
        # exact and narrow: the loss, gradient and Hessian from one pass over the rows
        loss, g, H = pb.poisson_model_sums(blk.X, blk.Y, blk.rw, blk.offset, beta[:-1],
                                           beta[-1], ("loss", "grad", "hessian"))
        pearson = jnp.zeros_like(loss)
    else:
        eta = _eta(data, beta)
        loss, gw, gb, _ = pb.value_grad_sums(blk.X, blk.Y, blk.rw, eta, blk.obs)
        g = jnp.concatenate([gw, gb[None, :]], axis=0)
        H = pb.sampled_hessian(data, pb.curvature(eta, blk.rw, blk.Y, blk.obs), strategy,
                               stride, compute)
        if blk.obs.name in SCALED:  # the Pearson sum, for the family's scale
            pearson = jnp.sum(blk.rw[:, None] * fam.pearson_rows(blk.obs, eta, blk.Y), axis=0)
        else:
            pearson = jnp.zeros_like(loss)
    m = data.mask.T
    return loss, g * data.mask, H * m[:, :, None] * m[:, None, :], pearson


def loss_gradient(data: RemlData, beta):
    """The unpenalised loss (U,) and its gradient (p, U) at ``beta`` (unused coordinates
    zeroed): one pass over the rows, no Hessian."""
    blk = data.block
    eta = _eta(data, beta)
    loss, gw, gb, _ = pb.value_grad_sums(blk.X, blk.Y, blk.rw, eta, blk.obs)
    return loss, jnp.concatenate([gw, gb[None, :]], axis=0) * data.mask


def start_model(data: RemlData, *, strategy: str, stride: int = 1, compute: str | None = None):
    """The quadratic model of the Poisson loss around the rates ``mu = y + 0.1`` (the classic
    GLM start, ``eta = log mu`` per row and unit): value at zero weights (U,), gradient
    (p, U) and Hessian (U, p, p) in the weights, each unit's unused coordinates zeroed. Its
    penalised optimum is the first iteration of penalised IRLS from that start."""
    blk = data.block
    mu = blk.Y + 0.1
    residual = blk.offset - jnp.log(mu)  # eta at zero weights minus eta of the start
    r = blk.rw[:, None] * ((mu - blk.Y) + mu * residual)
    g = jnp.concatenate([blk.X.T @ r, jnp.sum(r, axis=0)[None, :]], axis=0) * data.mask
    loss = jnp.sum(blk.rw[:, None] * ((mu - blk.Y) * residual + 0.5 * mu * residual ** 2),
                   axis=0)
    m = data.mask.T
    H = pb.sampled_hessian(data, blk.rw[:, None] * mu, strategy, stride, compute)
    return loss, g, H * m[:, :, None] * m[:, None, :]


def damped_step(data: RemlData, lam, beta, d, f, slope):
    """``beta + a d`` per unit with the longest step ``a`` in 1, 1/2, 1/4, ... that decreases
    the penalised objective at strengths ``lam`` enough (Armijo); ``a = 0`` when none does.
    ``f`` (U,) is that objective at ``beta`` and ``slope`` (U,) its derivative along ``d``
    (known on the host from the quadratic model). The full step costs one pass over the rows;
    the ladder is tried only if a unit refuses it.

    Returns
    -------
    beta (p, U), a (U,)
    """
    eta = _eta(data, beta)
    return _armijo(data, _total_penalty(data, lam), beta, eta, f, slope, d,
                   jnp.zeros(f.shape, bool))


def _armijo(data: RemlData, Sl, beta, eta, f, slope, d, done):
    """The Armijo step of :func:`damped_step` (shared with :func:`penalised_fit`)."""
    blk = data.block
    P = beta.shape[0] - 1
    steps = 0.5 ** jnp.arange(12, dtype=beta.dtype)
    xi = blk.X @ d[:P] + d[P][None, :]
    Sd, Sb = jnp.einsum("upq,qu->pu", Sl, d), jnp.einsum("upq,qu->pu", Sl, beta)
    dSd, bSd = jnp.sum(d * Sd, axis=0), jnp.sum(beta * Sd, axis=0)
    bSb = jnp.sum(beta * Sb, axis=0)

    def accepted(trial):  # Armijo test of the steps ``trial`` (K,): (K, U)
        losses = pb.loss_sums_along(eta, xi, blk.Y, blk.rw, trial[:, None] * jnp.ones_like(f),
                                    blk.obs)
        f_try = losses + 0.5 * (bSb + 2 * trial[:, None] * bSd + trial[:, None] ** 2 * dSd)
        return f_try <= f[None, :] + 1e-4 * trial[:, None] * slope[None, :] \
            + 1e-12 * data.scale

    # the full step first (one pass over the rows; Newton's step is nearly always taken),
    # the whole ladder of shorter ones only when some unit refuses it
    full = accepted(steps[:1])[0] | done
    ok = lax.cond(jnp.all(full), lambda: jnp.broadcast_to(full, (steps.shape[0],) + full.shape),
                  lambda: accepted(steps))
    first = jnp.argmax(ok, axis=0)
    a = jnp.where(jnp.any(ok, axis=0), steps[first], 0.0) * (~done)
    return beta + a[None, :] * d, a


@attrs.frozen(eq=False)
class HostPenalties:
    """The penalty arrays on the host (numpy): the small dense algebra of the outer iteration
    (log-determinants, traces, inverses over p x p per unit) runs there. Batched LAPACK calls
    and 4-d contractions inside compiled kernels were seen to wedge XLA's CPU thread pool
    (a known XLA issue), and these sizes gain nothing from compilation."""

    #: (M, U, p, p) dense, read where the layout is formed (a subset's is None: the algebra
    #: reads ``penalty_blocks``, and a dense copy per subset cost ~0.3 s per fold)
    S: np.ndarray | None
    fixed: np.ndarray  # (U, p, p)
    basis: np.ndarray  # (U, p, p)
    null: np.ndarray   # (U, p)
    mask: np.ndarray   # (p, U)
    #: the diagonal blocks of the penalties (:class:`BlockLayout`): every penalty, ``E' S(lam)
    #: E`` and its inverse are block diagonal (a coupling term: one 8 x 8 block per source
    #: filter, not one 248 x 248 matrix), and the host algebra works block by block
    blocks: BlockLayout = attrs.field(default=attrs.Factory(
        lambda self: BlockLayout.of(self.S, self.fixed), takes_self=True))
    #: the penalties in the eigenbasis ``E`` (block diagonal in the same blocks), formed once
    #: by diagonal block, per group of equal blocks of ``blocks.all`` (``n`` blocks of ``s``
    #: columns): ``E' S_m E`` (M, U, n, s, s), ``E' S_fixed E`` (U, n, s, s) and the
    #: null-space indicator (U, n, s). ``log|S|_+`` and its derivatives read only these (a
    #: coupling term: 31 blocks of 8 x 8 per unit, not 248 x 248).
    rotated_blocks: tuple = attrs.field(default=attrs.Factory(
        lambda self: tuple(_rotated_blocks(self, idx) for idx in self.blocks.all),
        takes_self=True))
    #: each penalty on its diagonal blocks: per ``m``, ``(idx, R)`` pairs for the groups of
    #: ``blocks.of_penalties[m]`` (``idx`` (n, s) columns, ``R`` (U, n, s, s) = ``S_m`` there;
    #: ``S_m`` is zero elsewhere). The host algebra reads these, not the dense (M, U, p, p)
    #: array (the real coupled model: 32 blocks of 8 x 8 per penalty, 35x fewer numbers).
    penalty_blocks: tuple = attrs.field(default=attrs.Factory(
        lambda self: tuple(tuple((idx, self.S[m][:, idx[:, :, None], idx[:, None, :]])
                                 for idx in of_m)
                           for m, of_m in enumerate(self.blocks.of_penalties)),
        takes_self=True))

    def total(self, lam: np.ndarray) -> np.ndarray:
        """``S(lam) = sum_m lam_m S_m + S_fixed`` (U, p, p)."""
        out = self.fixed.copy()
        for m, parts in enumerate(self.penalty_blocks):
            for idx, R in parts:  # a group's blocks are disjoint: no index repeats
                out[:, idx[:, :, None], idx[:, None, :]] += lam[m][:, None, None, None] * R
        return out

    def times(self, b: np.ndarray) -> np.ndarray:
        """``S_m b`` (M, U, p) for weights ``b`` (U, p)."""
        out = np.zeros((len(self.penalty_blocks),) + b.shape)
        for m, parts in enumerate(self.penalty_blocks):
            for idx, R in parts:
                out[m][:, idx] = np.einsum("unij,unj->uni", R, b[:, idx])
        return out

    def traces(self, inverse: np.ndarray) -> np.ndarray:
        """``tr(inverse S_m)`` (M, U) for a symmetric ``inverse`` (U, p, p)."""
        out = np.zeros((len(self.penalty_blocks), inverse.shape[0]))
        for m, parts in enumerate(self.penalty_blocks):
            for idx, R in parts:
                out[m] += np.einsum("unij,unij->u",
                                    inverse[:, idx[:, :, None], idx[:, None, :]], R)
        return out

    def scaled(self, phi: np.ndarray) -> HostPenalties:
        """The penalties of the loss divided by each unit's scale ``phi`` (U,): the fixed ones
        divided too (the chosen ones are strengths of that problem)."""
        return HostPenalties(
            self.S, self.fixed / phi[:, None, None], self.basis, self.null, self.mask,
            self.blocks,
            tuple((R, F / phi[:, None, None, None], N) for R, F, N in self.rotated_blocks),
            self.penalty_blocks)

    def subset(self, units: np.ndarray) -> HostPenalties:
        """The penalties of some units (an index array)."""
        return HostPenalties(
            None, self.fixed[units], self.basis[units], self.null[units],
            self.mask[:, units], self.blocks,
            tuple((R[:, units], F[units], N[units]) for R, F, N in self.rotated_blocks),
            tuple(tuple((idx, R[units]) for idx, R in parts)
                  for parts in self.penalty_blocks))

    def penalty_log_det(self, lam: np.ndarray, derivatives: bool = False):
        """``log|S(lam)|_+`` per unit (U,) from the diagonal blocks of ``E' S(lam) E`` (the
        null-space directions set to the identity); with ``derivatives``, also
        ``tr(B^-1 E'S_mE)`` (M, U) and ``tr(B^-1 E'S_mE B^-1 E'S_nE)`` (M, M, U) for that
        matrix ``B``: its first and second derivatives in ``rho``, up to the factors
        ``lam``."""
        M, U = lam.shape
        logdet, traces, pairs = np.zeros(U), np.zeros((M, U)), np.zeros((M, M, U))
        for R, F, N in self.rotated_blocks:
            B = np.einsum("mu,munij->unij", lam, R) + F
            keep = 1.0 - N
            B = B * keep[..., :, None] * keep[..., None, :]
            idx = np.arange(B.shape[-1])
            B[..., idx, idx] += N
            logdet += _logdet(B).sum(axis=1)
            if derivatives:
                K = np.linalg.inv(B)[None] @ R  # B^-1 E'S_mE per block (M, U, n, s, s)
                traces += np.einsum("munii->mu", K)
                pairs += np.einsum("munij,vunji->mvu", K, K)
        if not derivatives:
            return logdet
        return logdet, traces, pairs


def _rotated_blocks(host: HostPenalties, idx: np.ndarray) -> tuple:
    """``E' S_m E`` (M, U, n, s, s), ``E' S_fixed E`` (U, n, s, s) and the null-space
    indicator (U, n, s) on the diagonal blocks ``idx`` (n, s): ``E`` is block diagonal there,
    so each block is ``E_b' S_b E_b``."""
    at = (slice(None), idx[:, :, None], idx[:, None, :])
    E = host.basis[at]
    return (np.einsum("unqp,munqr,unrs->munps", E, host.S[(slice(None),) + at], E,
                      optimize=True),
            np.einsum("unqp,unqr,unrs->unps", E, host.fixed[at], E, optimize=True),
            host.null[:, idx])


def _logdet(A: np.ndarray) -> np.ndarray:
    """``log|A|`` per unit, ``inf`` where ``|A|`` is not positive (Cholesky: half an LU's
    flops; the LU only when some unit's matrix is not positive definite)."""
    try:
        L = np.linalg.cholesky(A)
    except np.linalg.LinAlgError:
        sign, value = np.linalg.slogdet(A)
        return np.where(sign > 0, value, np.inf)
    return 2.0 * np.log(np.diagonal(L, axis1=-2, axis2=-1)).sum(axis=-1)


#: :func:`_symmetric_inverse` factors matrices of at least this many coefficients by Cholesky.
CHOLESKY_FROM = 64


def _symmetric_inverse(A: np.ndarray) -> np.ndarray:
    """``A^-1`` (U, p, p) of symmetric matrices, symmetrised: from Cholesky factors (LAPACK
    ``potrf`` / ``potri``; for 32 units of 269 coefficients 0.10-0.14 s against 0.18-0.22 s
    by LU and symmetrising, interleaved on the 2-core development machine), by LU where a
    matrix is not positive definite. Small matrices (fewer than :data:`CHOLESKY_FROM`
    coefficients) by numpy's batched LU: one LAPACK call per unit costs more than it saves
    there (38 calls of the 21-coefficient head-direction model: 0.07 s against 0.02 s)."""
    if A.shape[-1] < CHOLESKY_FROM:
        inverse = np.linalg.inv(A)
        return 0.5 * (inverse + np.swapaxes(inverse, 1, 2))
    return _inverse_and_logdet(A)[0]


def _inverse_and_logdet(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``A^-1`` (U, p, p) and ``log|A|`` (U,) of symmetric matrices from one Cholesky
    factorisation per unit (LAPACK ``potrf`` / ``potri``); by LU where a matrix is not
    positive definite (``log|A|`` then ``inf`` unless ``|A| > 0``), and below
    :data:`CHOLESKY_FROM` coefficients as :func:`_symmetric_inverse` and :func:`_logdet`."""
    if A.shape[-1] < CHOLESKY_FROM:
        return _symmetric_inverse(A), _logdet(A)
    out, logdet = np.empty_like(A), np.empty(A.shape[0])
    lower = np.tril_indices(A.shape[-1], -1)
    for u in range(A.shape[0]):
        factor, info = scipy.linalg.lapack.dpotrf(A[u], lower=False)
        if info == 0:
            logdet[u] = 2.0 * np.log(np.diagonal(factor)).sum()
            out[u], info = scipy.linalg.lapack.dpotri(factor, lower=False)
            out[u][lower] = out[u].T[lower]  # potri fills the upper triangle
        if info != 0:
            out[u] = np.linalg.inv(A[u])
            out[u] = 0.5 * (out[u] + out[u].T)
            sign, value = np.linalg.slogdet(A[u])
            logdet[u] = value if sign > 0 else np.inf
    return out, logdet


def _factored_solver(A: np.ndarray):
    """``x -> A^-1 x`` per unit (``x`` (U, p)) for symmetric ``A`` (U, p, p), factored once
    (Cholesky; LU where a matrix is not positive definite): for repeated solves with one
    matrix."""
    factors = []
    for u in range(A.shape[0]):
        try:
            factors.append(("cholesky", scipy.linalg.cho_factor(A[u])))
        except np.linalg.LinAlgError:
            factors.append(("lu", scipy.linalg.lu_factor(A[u])))

    def solve(x: np.ndarray) -> np.ndarray:
        return np.stack([scipy.linalg.cho_solve(f, x[u]) if kind == "cholesky"
                         else scipy.linalg.lu_solve(f, x[u])
                         for u, (kind, f) in enumerate(factors)])
    return solve


def criterion(host: HostPenalties, lam: np.ndarray, f: np.ndarray, A: np.ndarray,
              logdet_A: np.ndarray | None = None):
    """``V`` per unit (U,) from the penalised objective ``f`` and Hessian ``A`` at the fit
    (``logdet_A``: ``log|A|`` when already known)."""
    logdet_A = _logdet(A) if logdet_A is None else logdet_A
    return f + 0.5 * logdet_A - 0.5 * host.penalty_log_det(lam)


def derivatives(host: HostPenalties, block, lam: np.ndarray, beta: np.ndarray, A: np.ndarray, *,
                exact: bool, dtype=jnp.float64, sampling: dict | None = None,
                inverse: np.ndarray | None = None):
    """Gradient (M, U) and approximate Hessian (M, M, U) of ``V`` in ``rho = log lam``, the
    effective degrees of freedom of each coordinate (U, p) and ``A^-1`` (U, p, p).

    ``exact``: include ``0.5 tr(A^-1 dH/drho)`` (``H`` changes with ``beta_hat``), one more pass
    over the rows costing as much as a Hessian (``sampling``: its rows and precision, see
    :func:`hessian_change`). ``inverse``: ``A^-1`` when already known.
    """
    Ainv = _symmetric_inverse(A) if inverse is None else inverse
    Sb = host.times(beta.T)
    bSb = np.einsum("mup,pu->mu", Sb, beta)
    tr_AS = host.traces(Ainv)
    _, tr_BS, pairs_B = host.penalty_log_det(lam, derivatives=True)
    AinvSb = np.einsum("upq,muq->mup", Ainv, Sb)
    dbeta = -lam[:, :, None] * AinvSb  # (M, U, p): d beta_hat / d rho_m
    grad = 0.5 * lam * (bSb + tr_AS - tr_BS)
    if exact:
        grad = grad + hessian_change(host, block, beta, Ainv, dbeta, dtype, sampling)
    outer = lam[:, None] * lam[None, :]
    hess = (-outer * np.einsum("mup,nup->mnu", Sb, AinvSb)
            - 0.5 * outer * _pair_traces(Ainv, host.penalty_blocks)
            + 0.5 * outer * pairs_B)
    M = lam.shape[0]
    hess = hess + np.eye(M)[:, :, None] * (0.5 * lam * (bSb + tr_AS - tr_BS))[None, :, :]
    F_diag = 1.0 - np.einsum("upq,uqp->up", Ainv, host.total(lam))
    return grad, hess, F_diag * host.mask.T, Ainv


def _pair_traces(inverse: np.ndarray, penalty_blocks: tuple) -> np.ndarray:
    """``tr(inverse P_m inverse P_n)`` (M, M, U) for symmetric, block-diagonal penalties given
    on their blocks (:attr:`HostPenalties.penalty_blocks`: per ``m``, ``(idx, P_m there)``
    pairs): ``K_m = inverse P_m`` on each unit's non-zero blocks of ``P_m`` only (a history
    filter: the unit's own 8 columns, not the 256 of every source's), in ``U x p x c x s``
    products for ``c`` penalised columns in blocks of ``s`` (not ``U x p x c^2``: a coupling
    term's 248 columns in blocks of 8, 31x fewer); ``K_m``'s other columns are zero."""
    M = len(penalty_blocks)
    U, p = inverse.shape[:2]
    units = np.arange(U)[:, None, None]
    support, K = [], []  # each unit's columns of P_m (U, c_m) and K_m on them (U, p, c_m)
    for m in range(M):
        columns, parts = [np.zeros((U, 0), int)], [np.zeros((U, p, 0))]
        for idx, P_blocks in penalty_blocks[m]:  # (n, s), (U, n, s, s)
            nonzero = np.abs(P_blocks).sum(axis=(2, 3)) > 0
            k = max(int(nonzero.sum(axis=1).max()), 1)
            unit_idx = np.broadcast_to(idx, (U,) + idx.shape)
            if k < len(idx):  # each unit's non-zero blocks, padded with zero ones
                order = np.argsort(~nonzero, axis=1, kind="stable")[:, :k]
                P_blocks = np.take_along_axis(P_blocks, order[:, :, None, None], axis=1)
                unit_idx = idx[order]
            rows = np.swapaxes(inverse[units, :, unit_idx], 2, 3)  # (U, k, p, s)
            parts.append(np.swapaxes(rows @ P_blocks, 1, 2).reshape(U, p, -1))
            columns.append(unit_idx.reshape(U, -1))
        support.append(np.concatenate(columns, axis=1))
        K.append(np.concatenate(parts, axis=2))
    out = np.zeros((M, M, U))
    for m in range(M):
        for n in range(m, M):
            a = np.take_along_axis(K[m], support[n][:, :, None], axis=1)  # (U, c_n, c_m)
            b = a if n == m else np.take_along_axis(K[n], support[m][:, :, None], axis=1)
            out[m, n] = out[n, m] = np.einsum("uij,uji->u", a, b)
    return out


@attrs.frozen(eq=False)
class BlockLayout:
    """The diagonal blocks of the penalties, as lists of ``(n_blocks, size)`` column-index
    arrays (blocks of one size stacked): columns that no penalty of any unit links are in
    different blocks, so each penalty ``S_m``, its rotation ``E' S_m E`` (the eigenbasis ``E``
    is formed block by block) and ``E' S(lam) E`` are block diagonal."""

    all: list          # every column (unpenalised ones alone)
    of_penalties: tuple  # per penalty m: the blocks of the columns S_m touches (any unit)

    @classmethod
    def of(cls, S: np.ndarray, fixed: np.ndarray) -> BlockLayout:
        block_of = _linked_components(
            (np.abs(S).sum(axis=(0, 1)) + np.abs(fixed).sum(axis=0)) > 0)
        touched = tuple(_blocks(block_of, np.flatnonzero(np.abs(S[m]).sum(axis=(0, 1)) > 0))
                        for m in range(S.shape[0]))
        return cls(_blocks(block_of, np.arange(len(block_of))), touched)


def _linked_components(linked: np.ndarray) -> np.ndarray:
    """The component of each column (p,) of the graph whose edges are the non-zero entries of
    ``linked`` (p, p): columns a penalty links, directly or through others, share one."""
    from scipy.sparse.csgraph import connected_components

    return connected_components(linked, directed=False)[1]


def _blocks(block_of: np.ndarray, columns: np.ndarray) -> list[np.ndarray]:
    """``columns`` split by block (``block_of``: each column's), blocks of equal size stacked:
    ``(n_blocks, size)`` index arrays."""
    labels = block_of[columns]
    order = np.argsort(labels, kind="stable")
    starts = np.flatnonzero(np.diff(labels[order]) != 0) + 1
    by_size = {}
    for piece in np.split(columns[order], starts):
        if len(piece):
            by_size.setdefault(len(piece), []).append(piece)
    return [np.stack(v) for _, v in sorted(by_size.items())]


def hessian_change(host: HostPenalties, block, beta: np.ndarray, Ainv: np.ndarray,
                   dbeta: np.ndarray, dtype, sampling: dict | None = None,
                   tiles: rt.RowTiles | None = None) -> np.ndarray:
    """``0.5 tr(A^-1 dH/drho_m)`` (M, U): the part of ``dV/drho`` from the change of the
    Hessian with the weights (``dbeta`` (M, U, p): ``d beta_hat / d rho_m``), one pass over
    the rows costing about as much as a Hessian. ``sampling``: its rows and precision
    (``stride``, ``compute``: :func:`.problem.curvature_sampling`); default all rows in
    ``dtype``."""
    m = host.mask.T  # masked coordinates (decoupled, identity in A) must not enter x' A^-1 x
    a = lambda x: jnp.asarray(x, dtype)  # noqa: E731
    Ainv = a(Ainv * m[:, :, None] * m[:, None, :])
    if tiles is not None:
        stride = (sampling or {}).get("stride", 1)
        extra, _, _ = pb.compiled_call(_tiled_trace_dH, {"stride": stride}, block, tiles,
                                       a(beta), Ainv, a(dbeta))
    else:
        extra, _, _ = pb.compiled_call(_trace_dH, dict(sampling or {}), block, a(beta), Ainv,
                                       a(dbeta))
    return 0.5 * np.asarray(extra)


def _curvature_slope(eta, Y, obs):
    """The derivative in ``eta`` of each row's curvature (T, U): how the Hessian changes with
    the weights (Poisson: the rate itself; another family: by forward differentiation of its
    curvature, which is elementwise)."""
    if pb.is_poisson(obs):
        return pb.curvature(eta, jnp.ones(eta.shape[0], eta.dtype))
    return jax.jvp(lambda e: fam.row_curvature(obs, e, Y), (eta,), (jnp.ones_like(eta),))[1]


def _trace_dH(blk, beta, Ainv, dbeta, *, stride: int = 1, compute: str | None = None,
              chunk: int = 2048):
    """``tr(A^-1 dH[dbeta_m])`` (M, U) with ``dH[d] = X' diag(rw mu (X d)) X``: a sum over rows
    of ``rw mu (x' d_m) (x' A^-1 x)``, row chunk by row chunk.

    ``stride``, ``compute``: from every ``stride``-th row (times ``stride``), ``x' A^-1 x`` in
    ``compute`` precision (see :func:`.problem.curvature_sampling`). Products of column pairs (as
    :func:`pb.hessian_sum` forms Hessians) were measured 3x slower here (15 s against 5 s for
    the real coupled model in float64: the pairs of a 269-column chunk are 135 times its
    size).
    """
    X, Y, rw = blk.X[::stride], blk.Y[::stride], blk.rw[::stride]
    T, U = X.shape[0], beta.shape[1]
    off = jnp.broadcast_to(blk.offset, (blk.X.shape[0], U))[::stride]
    cast = (lambda a: a) if compute is None else (lambda a: a.astype(compute))
    Ac = cast(Ainv)

    def leverage(xa):  # x' A_u^-1 x per row and unit (c, U)
        xc = cast(xa)
        return jnp.einsum("cuq,cq->cu", jnp.einsum("cp,upq->cuq", xc, Ac), xc).astype(xa.dtype)

    def part(x, off, rw, y):
        xa = jnp.concatenate([x, jnp.ones((x.shape[0], 1), x.dtype)], axis=1)
        eta = xa @ beta + off
        mu = rw[:, None] * _curvature_slope(eta, y, blk.obs)
        v = jnp.einsum("cp,mup->mcu", xa, dbeta)
        return jnp.sum(v * (mu * leverage(xa))[None], axis=1)

    if T <= chunk:
        return stride * part(X, off, rw, Y)
    n_full, rem = T // chunk, T % chunk

    def body(i, acc):
        s = lambda a: lax.dynamic_slice_in_dim(a, i * chunk, chunk)  # noqa: E731
        return acc + part(s(X), s(off), s(rw), s(Y))

    acc = lax.fori_loop(0, n_full, body, jnp.zeros(dbeta.shape[:2], X.dtype))
    if rem:
        tail = slice(n_full * chunk, T)
        acc = acc + part(X[tail], off[tail], rw[tail], Y[tail])
    return stride * acc


def _tiled_trace_dH(blk, tiles: rt.RowTiles, beta, Ainv, dbeta, *, stride: int = 1):
    """:func:`_trace_dH` from the design's tiles (:func:`.row_tiles.tiled_leverage_sum`): the
    rows' ``rw mu (x' d_m)`` from the sampled rows, the leverages block by block."""
    X, Y, rw = blk.X[::stride], blk.Y[::stride], blk.rw[::stride]
    U = beta.shape[1]
    off = jnp.broadcast_to(blk.offset, (blk.X.shape[0], U))[::stride]
    eta = X @ beta[:-1] + beta[-1] + off
    mu = rw[:, None] * _curvature_slope(eta, Y, blk.obs)                  # (T_s, U)
    v = jnp.einsum("tp,mup->tmu", X, dbeta[:, :, :-1]) + dbeta[None, :, :, -1]
    return rt.tiled_leverage_sum(tiles, Ainv, v * mu[:, None, :], stride, X.dtype)


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
    objective : ndarray (U,) or None
        The penalised loss at ``beta`` (sum scale, nats); None where the weights come from
        the outer Newton iteration (see ``decrement``).
    decrement : ndarray (U,) or None
        Newton's decrement ``g' A^-1 g`` of the penalised loss at ``beta`` (sum scale, exact
        gradient ``g``, the last Hessian of the search): how far the weights are from the
        penalised optimum. None where it was not computed (the outer Newton iteration's
        inner fits certify their own convergence).
    gradient_max : ndarray (U,) or None
        ``max |g|`` over the unit's coordinates (sum scale).
    slope : ndarray (M, U) or None
        The exact criterion's extra slope ``0.5 tr(A^-1 dH/drho)`` at the answer (nats; NaN
        where a unit has no penalty ``m``): where a fit warm-started from this one begins
        (``select(start_slope=...)``). None where the outer Newton iteration answered.
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
    objective: np.ndarray | None = None
    decrement: np.ndarray | None = None
    gradient_max: np.ndarray | None = None
    slope: np.ndarray | None = None


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
        labels = _linked_components(total != 0)
        for label in range(labels.max() + 1):
            idx = np.flatnonzero(labels == label)
            values, vectors = np.linalg.eigh(total[np.ix_(idx, idx)])
            basis[u][np.ix_(idx, idx)] = vectors
            null[u, idx] = values <= rtol * max(values.max(), 0.0) if values.max() > 0 else 1.0
    return basis, null


# --------------------------------------------------------------------------- the fast start


@attrs.frozen(eq=False)
class _QuadraticModel:
    """The loss of every unit approximated to second order at ``beta`` (one pass over the rows):
    ``L(b) ~ L + g'(b - beta) + 0.5 (b - beta)' H (b - beta)``, on the host."""

    loss: np.ndarray   # (U,)
    g: np.ndarray      # (p, U)
    H: np.ndarray      # (U, p, p)
    beta: np.ndarray   # (p, U)
    pearson: np.ndarray | None = None  # (U,) Pearson's sum (families with a scale)

    def scaled(self, phi: np.ndarray) -> _QuadraticModel:
        """The model of the loss divided by each unit's scale ``phi`` (U,)."""
        return _QuadraticModel(self.loss / phi, self.g / phi, self.H / phi[:, None, None],
                               self.beta, self.pearson)

    def _penalised(self, host: HostPenalties, lam: np.ndarray):
        """``A = H + S(lam)`` (identity on unused coordinates), ``S(lam)`` and the right-hand
        side ``H beta - g`` (U, p) of the penalised optimum."""
        total = host.total(lam)
        A = self.H + total
        idx = np.arange(A.shape[-1])
        A[:, idx, idx] += 1.0 - host.mask.T
        return A, total, np.einsum("upq,qu->up", self.H, self.beta) - self.g.T

    def fit(self, host: HostPenalties, lam: np.ndarray):
        """The penalised optimum of the model at strengths ``lam``: ``A = H + S`` (identity on
        unused coordinates) and ``b = A^-1 (H beta - g)`` (U, p)."""
        A, _, z = self._penalised(host, lam)
        return A, np.linalg.solve(A, z[..., None])[..., 0]

    def subset(self, units: np.ndarray) -> _QuadraticModel:
        """The model of some units (an index array)."""
        return _QuadraticModel(self.loss[units], self.g[:, units], self.H[units],
                               self.beta[:, units])

    def criterion(self, host: HostPenalties, lam: np.ndarray):
        """``V`` of the model at ``lam`` (U,), with ``A``, the optimum ``b`` (U, p) and
        ``A^-1`` (one factorisation of ``A`` for all three)."""
        A, total, z = self._penalised(host, lam)
        Ainv, logdet_A = _inverse_and_logdet(A)
        b = np.einsum("upq,uq->up", Ainv, z)
        step = b - self.beta.T
        f = (self.loss + np.einsum("up,pu->u", step, self.g)
             + 0.5 * np.einsum("up,upq,uq->u", step, self.H, step)
             + 0.5 * np.einsum("up,upq,uq->u", b, total, b))
        return criterion(host, lam, f, A, logdet_A), A, b, Ainv


def _free(rho, grad, present, low, high):
    """The strengths Newton may move: not those at a bound whose slope points outwards, and not
    those at the upper bound unless V clearly slopes back (there the term is removed, the
    strength is ~1e13 times the data's curvature, and rounding in ``log|A|`` leaves a slope
    of ~1e-3 nats of noise)."""
    at_low = (rho <= low + 1e-9) & (grad > 0)
    at_high = (rho >= high - 1e-9) & (grad < RELEASE)
    return present & ~(at_low | at_high)


def _minimise_model(host: HostPenalties, model: _QuadraticModel, rho: np.ndarray,
                    correction: np.ndarray, present: np.ndarray, low: np.ndarray,
                    high: np.ndarray, tol: np.ndarray, max_iter: int = 40,
                    at_start: tuple | None = None):
    """Newton's method on ``rho`` for ``V`` of the quadratic model plus the linear term
    ``correction' (rho - rho_start)`` (the exact criterion's extra slope), all on the host,
    each unit until its gradient is below ``tol`` (U,) (units that are done leave the arrays).

    Returns the new ``rho``, the model's gradient at the starting ``rho`` (M, U), which
    units could not decrease ``V`` from the start (U,): at its numerical minimum, where the
    strengths are so large (a term removed) that rounding in ``log|A|`` hides the slope, and
    the model's penalised optimum at the new ``rho`` (U, p), a by-product of the search.
    ``at_start``: the model's ``(V, A, b, A^-1)`` at the starting ``rho`` when known.
    """
    U = rho.shape[1]
    start = rho.copy()
    first = np.zeros_like(rho)
    stuck = np.zeros(U, bool)
    active = np.arange(U)
    h, m = host, model

    def value(r, units, h, m):
        lam = np.where(present[:, units], np.exp(r), 0.0)
        V, A, b, Ainv = m.criterion(h, lam)
        shift = np.where(present[:, units], correction[:, units] * (r - start[:, units]), 0.0)
        return V + shift.sum(axis=0), A, b, Ainv

    W, A, b, Ainv = value(rho, active, h, m) if at_start is None else at_start
    optimum = np.array(b, float)  # each unit's b at its current rho (the arrays shrink)
    for iteration in range(max_iter):
        pr, r = present[:, active], rho[:, active]
        lam = np.where(pr, np.exp(r), 0.0)
        grad, hess, _, _ = derivatives(h, None, lam, b.T, A, exact=False, inverse=Ainv)
        grad = np.where(pr, np.asarray(grad) + correction[:, active], 0.0)
        if iteration == 0:
            first = grad
        free = _free(r, grad, pr, low[:, active], high[:, active])
        done = np.all(np.abs(np.where(free, grad, 0.0)) < tol[active], axis=0)
        step = _newton_steps(grad, hess, free & ~done[None, :], np.ones_like(grad))
        alpha = np.ones(len(active))
        moved = done.copy()
        for _ in range(10):
            # only the units still looking for a decrease are evaluated (a unit at its
            # numerical minimum backtracks all ten times)
            todo = np.flatnonzero(~moved)
            if not len(todo):
                break
            units = active[todo]
            r_try = np.clip(r[:, todo] + alpha[None, todo] * step[:, todo], low[:, units],
                            high[:, units])
            W_t, A_t, b_t, Ainv_t = value(r_try, units, *(
                (h, m) if len(todo) == len(active) else (h.subset(todo), m.subset(todo))))
            slope = np.sum(grad[:, todo] * (r_try - r[:, todo]), axis=0)
            better = W_t <= W[todo] + 1e-4 * slope + 1e-12 * np.abs(W[todo])
            won = todo[better]
            r[:, won], W[won], A[won], b[won], Ainv[won] = (
                r_try[:, better], W_t[better], A_t[better], b_t[better], Ainv_t[better])
            optimum[active[won]] = b_t[better]
            moved[won] = True
            alpha[todo[~better]] *= 0.25
        rho[:, active] = r
        if iteration == 0:
            stuck = ~moved
        keep = moved & ~done  # no decrease along Newton's direction: at the model's minimum
        if not keep.any():
            break
        if not keep.all():
            active, W, A, b, Ainv = active[keep], W[keep], A[keep], b[keep], Ainv[keep]
            h, m = host.subset(active), model.subset(active)
    return rho, first, stuck, optimum


def performance_iteration(data: RemlData, host: HostPenalties, beta: np.ndarray,
                          rho: np.ndarray, *, present: np.ndarray, low: np.ndarray,
                          high: np.ndarray, strategy: str, dtype, exact: bool, tol: float,
                          max_iter: int = 30, sampling: dict | None = None,
                          warm: np.ndarray | bool = False,
                          tolerance: SearchTolerance = FIT_TOLERANCE,
                          start_slope: np.ndarray | None = None):
    """Strengths and weights together, a few passes over the rows per iteration (Gu's
    performance iteration, as mgcv's ``bam``; with the exact criterion's extra slope).

    Each iteration forms the quadratic model of every unit's loss at the current weights (one
    pass and one Hessian), adds the slope ``0.5 tr(A^-1 dH/drho)`` that the model misses (one
    more pass, when ``exact``), minimises that model's ``V`` over the strengths on the host
    (small dense algebra, no pass), and moves the weights towards the model's penalised optimum
    at the new strengths (Armijo, one pass). At its fixed point the weights are the penalised
    fit and the strengths zero the exact gradient of ``V``: the answer of the outer Newton
    iteration of :func:`select`, in a fraction of its passes (it refits at every trial).

    ``sampling``: static settings of the Hessian passes (:func:`.problem.curvature_sampling`;
    default all rows in ``dtype``). The gradient is exact either way, so the weights still end
    at the penalised fit.

    ``warm`` (U,) or bool: units whose ``rho`` and ``beta`` come from another fit's answer (a
    cross-validation fold starts from the fit on all rows): their extra slope is computed from
    the first iteration on (a cold start waits until the strengths settle).

    ``tolerance``: where a unit converges (:class:`SearchTolerance`: :data:`FIT_TOLERANCE`;
    :data:`FOLD_TOLERANCE` for a cross-validation fold).

    ``start_slope`` (M, U): the extra slope at the answer of the fit a warm unit starts from
    (:attr:`RemlResult.slope`; NaN: none). Such a unit steers by it until its strengths settle
    and its own is computed, so its first iteration needs no slope pass (a fold of the real
    coupled head-direction model: 0.8-1.0 s of its ~11 s); it still converges only on its
    own slope.

    Returns
    -------
    rho (M, U), beta (p, U), converged (U,), iterations, and at the answer the model
    (:class:`_QuadraticModel`), the gradient of ``V`` (M, U) and the extra slope (M, U)
    """
    a = lambda x: jnp.asarray(x, dtype)  # noqa: E731
    sampling = sampling or {}
    passes = {"strategy": strategy, **sampling}
    wide = sampling.get("stride", 1) > 1
    # the weights to the precision of the model the strengths are chosen on
    weights_tol = (tolerance.sampled_weights if wide or sampling.get("compute") is not None
                   else WEIGHTS_TOL)
    scale = np.asarray(data.scale)

    def lam_of(r):
        return np.where(present, np.exp(r), 0.0)

    # On a wide design the passes run on the unconverged units only, once at most half of the
    # units are left (in power-of-two batches, padded with converged units: few compiled
    # shapes); a converged unit's weights and model stay as they are.
    U = rho.shape[1]
    work, sub, work_passes = np.arange(U), data, passes

    def model_at(b):
        out, _, _ = pb.compiled_call(loss_gradient_hessian, work_passes, sub, a(b[:, work]))
        loss, g, H, pearson = (np.array(x, float) for x in out)
        if len(work) == U:
            return _QuadraticModel(loss, g, H, b, pearson)
        parts = [model.loss.copy(), model.g.copy(), model.H.copy(), model.pearson.copy()]
        parts[0][work], parts[1][:, work], parts[2][work], parts[3][work] = loss, g, H, pearson
        return _QuadraticModel(*parts[:3], b, parts[3])

    cold = not np.any(beta[:-1])
    if cold and pb.is_poisson(data.block.obs):
        # a cold start: the model of the classic GLM start (rates y + 0.1) is far closer to
        # the answer than the flat rate, and its optimum is taken as the first weights
        out, _, _ = pb.compiled_call(start_model, passes, data)
        model = _QuadraticModel(*(np.array(x, float) for x in out), np.zeros_like(beta))
    else:
        model = model_at(beta)
    first_step = model.beta is not beta
    converged = np.zeros(U, bool)
    final_gradient = np.zeros_like(rho)
    correction = np.zeros_like(rho)
    # each unit's largest change of a log-strength in the last iteration
    moved = np.where(warm, 0.0, np.inf) * np.ones(U)
    last_step = np.zeros_like(rho)
    have = np.zeros(U, bool)  # whether a unit has an extra slope (its own or a start slope)
    if start_slope is not None and exact:
        given = np.asarray(warm, bool) & np.all(np.isfinite(start_slope) | ~present, axis=0)
        correction[:, given] = np.where(present, start_slope, 0.0)[:, given]
        # the next refresh once its strengths settle, as after a slope of its own
        have |= given
        moved[given] = np.inf
    # A family with a scale (gamma, gaussian): V of the loss divided by the scale, estimated
    # at every iteration as Pearson's sum over (rows - edf); the strengths of that problem are
    # those of the unit-scale loss divided by the scale (log: minus log phi).
    with_scale = data.block.obs.name in SCALED
    n_rows = float(np.asarray(data.block.rw).sum())
    log_phi = np.zeros((1, U))
    for iteration in range(1, max_iter + 1):
        beta = model.beta
        lam = lam_of(rho)
        # the model's V, A, optimum b and A^-1 from one factorisation (the host search
        # starts from them)
        V_model, A, b, Ainv = model.criterion(host, lam)
        # Newton's decrement of the weights: how far they are from the model's optimum
        step = b - beta.T
        decrement = np.einsum("up,upq,uq->u", step, A, step)
        weights_done = decrement <= weights_tol * (1.0 + scale)
        # The extra slope is small and changes slowly: it is refreshed for the units whose
        # strengths have settled (a pass saved in each of the first, far-off iterations) or
        # whose weights are at their optimum (they may converge now), and a unit converges
        # only on a fresh one. Every choice is per unit, so that a unit's answer does not
        # depend on the units fitted with it.
        fresh = np.full(U, exact and not first_step) & (
            (moved < np.where(have, 0.05, 0.5)) | weights_done)
        if fresh.any():
            Sb = host.times(b)
            dbeta = -lam[:, :, None] * np.einsum("upq,muq->mup", Ainv, Sb)
            fresh &= np.isin(np.arange(U), work)
            change = np.zeros_like(rho)
            change[:, work] = hessian_change(
                host if len(work) == U else host.subset(work), sub.block, beta[:, work],
                Ainv[work], dbeta[:, work], dtype, sampling, sub.tiles)
            correction[:, fresh] = np.where(present, change, 0.0)[:, fresh]
            have |= fresh
        smodel, shost = model, host
        if with_scale:
            edf = np.einsum("upq,uqp->u", Ainv, model.H)
            phi = np.maximum(model.pearson / np.maximum(n_rows - edf, 1.0), 1e-12)
            smodel, shost, log_phi = model.scaled(phi), host.scaled(phi), np.log(phi)[None, :]
        # converged when the gradient is below tol, or below the rounding of V (relative 1e-9:
        # along a flat direction strengths barely matter and Newton's steps only wander)
        tol_units = np.maximum(tol, tolerance.relative * np.abs(smodel.loss))
        # the model's penalised optimum at the new strengths, where the host search found it
        known, optimum = np.zeros(U, bool), np.zeros((U, beta.shape[0]))
        if first_step:  # the start model is too crude to choose strengths from
            new_rho, gradient, stuck = rho.copy(), np.full_like(rho, np.inf), np.zeros(U, bool)
        else:  # the strengths of the units not yet converged (the others stay)
            todo = np.flatnonzero(~converged)
            new_rho, gradient, stuck = rho.copy(), np.zeros_like(rho), np.zeros(U, bool)
            shift = np.broadcast_to(log_phi, rho.shape)[:, todo]
            new_rho[:, todo], gradient[:, todo], stuck[todo], optimum[todo] = _minimise_model(
                shost if len(todo) == U else shost.subset(todo),
                smodel if len(todo) == U else smodel.subset(todo),
                rho[:, todo] - shift, correction[:, todo], present[:, todo],
                low[:, todo] - shift, high[:, todo] - shift, 0.1 * tol_units[todo],
                at_start=None if with_scale else (V_model[todo], A[todo], b[todo], Ainv[todo]))
            new_rho[:, todo] += shift
            known[todo] = not with_scale  # (a scaled model's optimum is in its own terms)
        free = _free(rho - log_phi, gradient, present, low - log_phi, high - log_phi)
        now = ((np.all(np.abs(np.where(free, gradient, 0.0)) < tol_units, axis=0) | stuck)
               & weights_done & (fresh | (not exact))) & ~converged
        # a converged unit stays where it is
        final_gradient[:, now] = gradient[:, now]
        converged |= now
        if converged.all():
            return rho, beta, converged, iteration, model, final_gradient, correction
        size = len(work)
        while wide and size > 1 and size // 2 >= np.count_nonzero(~converged):
            size //= 2
        if size < len(work):  # the unconverged units, padded with converged ones
            work = np.r_[np.flatnonzero(~converged), np.flatnonzero(converged)][:size]
            sub = units_subset(data, work)
            work_passes = {**passes, "strategy": pb.hessian_strategy(size, beta.shape[0] - 1)}
        new_rho[:, converged] = rho[:, converged]
        rho_step = new_rho - rho
        # a unit whose strengths step back the way they came (a 2-cycle of the iteration)
        # takes half the step
        back = np.sum(rho_step * last_step, axis=0) < -0.5 * np.sqrt(
            np.sum(rho_step ** 2, axis=0) * np.sum(last_step ** 2, axis=0))
        rho_step[:, back] *= 0.5
        shortened = back.copy()
        if cold:  # a trust region while the weights still come from the crude start
            big = np.abs(rho_step).max(axis=0, initial=0.0)
            rho_step *= np.minimum(1.0, MAX_COLD_MOVE / np.maximum(big, 1e-300))[None, :]
            shortened |= big > MAX_COLD_MOVE
        # (where the step is the search's own, its strengths exactly: its optimum is theirs)
        new_rho = np.where(shortened[None, :], rho + rho_step, new_rho)
        last_step = rho_step
        lam_new = lam_of(new_rho)
        moved = np.abs(np.where(present, rho_step, 0.0)).max(axis=0, initial=0.0)
        rho = new_rho
        # the weights at the model's optimum: the search's by-product, else solved for
        trial = beta.copy()
        reuse = known & ~shortened & ~converged
        trial[:, reuse] = optimum[reuse].T
        solve = np.flatnonzero(~reuse & ~converged)
        if len(solve):
            trial[:, solve] = (model if len(solve) == U else model.subset(solve)).fit(
                host if len(solve) == U else host.subset(solve), lam_new[:, solve])[1].T
        if first_step:  # from the start model, the first weights are its optimum
            model, first_step = model_at(trial), False
            continue
        # the full step to the model's optimum, whose model (the next iteration's) is formed
        # at once, one pass; Armijo's test on the host from that model's loss. Where a unit
        # refuses it (the penalised objective does not fall enough: rare, early on), the
        # ladder of shorter steps (one pass without a Hessian), then the model where it lands
        total = host.total(lam_new)
        Sb = np.einsum("upq,qu->pu", total, beta)
        f = model.loss + 0.5 * np.sum(beta * Sb, axis=0)
        d = trial - beta
        slope = np.sum((model.g + Sb) * d, axis=0)
        stepped = model_at(trial)
        f_try = stepped.loss + 0.5 * np.einsum("pu,upq,qu->u", trial, total, trial)
        if np.all((f_try <= f + 1e-4 * slope + 1e-12 * scale) | converged):
            model = stepped
            continue
        (moved_part, _), _, _ = pb.compiled_call(
            damped_step, {}, sub, a(lam_new[:, work]), a(beta[:, work]), a(d[:, work]),
            a(f[work]), a(slope[work]))
        beta_new = beta.copy()
        beta_new[:, work] = np.array(moved_part, float)
        model = model_at(beta_new)
    return rho, model.beta, converged, max_iter, model, final_gradient, correction


def polish(data: RemlData, host: HostPenalties, model: _QuadraticModel, lam: np.ndarray,
           dtype, max_steps: int = POLISH_STEPS) -> _QuadraticModel:
    """The weights of the search's answer refined to Newton's stopping criterion: chord steps
    with the last model's Hessian and exact gradients (one pass over the rows each, no
    Hessian), per unit until its decrement is below :data:`POLISH_DECREMENT` x its spikes. The
    final fit's Newton iteration then stops at its first Hessian (the search ends at a
    decrement ~1e-8 x spikes, where Newton needed a second Hessian, and on the real coupled
    model up to six: ~6 s each). A unit whose decrement grows keeps its last weights."""
    a = lambda x: jnp.asarray(x, dtype)  # noqa: E731
    limit = POLISH_DECREMENT * np.maximum(np.asarray(data.scale, float), 1.0)
    active = np.ones(model.beta.shape[1], bool)
    last = None
    # every chord step solves with the same A (the last model's Hessian): factored once
    A, total, _ = model._penalised(host, lam)
    solve = _factored_solver(A)
    for n_steps in range(max_steps + 1):
        # the step -A^-1 (penalised gradient), masked coordinates to 0 (A: identity there)
        gradient = model.g.T + np.einsum("upq,qu->up", total, model.beta) \
            + (1.0 - host.mask.T) * model.beta.T
        chord = -solve(gradient).T
        decrement = np.einsum("pu,upq,qu->u", chord, A, chord)
        if last is not None:  # a chord step that did not shrink the decrement is undone
            worse = active & ~(decrement < last[1])
            if worse.any():
                beta = model.beta.copy()
                beta[:, worse] = last[0].beta[:, worse]
                model = _QuadraticModel(np.where(worse, last[0].loss, model.loss),
                                        np.where(worse[None, :], last[0].g, model.g),
                                        model.H, beta, model.pearson)
                active &= ~worse
                decrement = np.where(worse, last[1], decrement)
        active &= decrement > limit
        if not active.any() or n_steps == max_steps:
            break
        last = (model, decrement)
        beta = model.beta.copy()
        beta[:, active] += chord[:, active]
        (loss, g), _, _ = pb.compiled_call(loss_gradient, {}, data, a(beta))
        model = _QuadraticModel(np.array(loss, float), np.array(g, float), model.H, beta,
                                model.pearson)
    return model


def select(block: pb.Block, mask: np.ndarray, S: np.ndarray, fixed: np.ndarray,
           beta0: np.ndarray, rho0: np.ndarray, *, present: np.ndarray, dtype=jnp.float64,
           exact: bool = True, max_outer: int = 40, tol: float = GRADIENT_TOL,
           center: np.ndarray | None = None, warm: np.ndarray | bool = False,
           tolerance: SearchTolerance = FIT_TOLERANCE,
           start_slope: np.ndarray | None = None) -> RemlResult:
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
    center : ndarray (M, U), optional
        The log-strengths stay within :data:`RHO_RANGE` of these (default ``rho0``): a guess
        from the data, so that a warm start (``rho0`` from another fit) does not move the
        range.
    exact : bool
        Exact gradient of the Laplace approximation (as mgcv); False drops the change of the
        Hessian with the weights (cheaper for wide designs; a slightly different optimum).
    warm : bool or ndarray (U,) of bool
        Which units start from another fit's answer (``beta0`` and ``rho0``), see
        :func:`performance_iteration`.
    tolerance : SearchTolerance
        Where the search stops (:data:`FIT_TOLERANCE`, or :data:`FOLD_TOLERANCE` for a
        cross-validation fold).
    start_slope : ndarray (M, U), optional
        For warm units: the extra slope at the answer of the fit they start from
        (:attr:`RemlResult.slope`), see :func:`performance_iteration`.
    """
    M, U = rho0.shape
    strategy = pb.hessian_strategy(U, block.X.shape[1])
    basis, null = penalty_basis(S, fixed, mask)
    a = lambda x: jnp.asarray(x, dtype)  # noqa: E731
    spikes = np.asarray(block.rw @ jnp.abs(block.Y))  # the size of the loss
    keep = mask.T
    S = S * keep[None, :, :, None] * keep[None, :, None, :]
    fixed = fixed * keep[:, :, None] * keep[:, None, :]
    host = HostPenalties(S, fixed, basis, null, np.asarray(mask, float))
    sampling = pb.curvature_sampling(block.X.shape[0], U, block.X.shape[1] + 1)
    data = RemlData(block, a(mask), a(S), a(fixed), a(spikes),
                    _design_tiles(block.X, sampling))
    present = np.asarray(present, bool)
    center = rho0 if center is None else np.where(np.isfinite(center), center, rho0)
    low, high = center - RHO_RANGE, center + RHO_RANGE
    rho0 = np.clip(rho0, low, high)
    rho = np.where(present, rho0, 0.0)

    def lam_of(r):
        return np.where(present, np.exp(r), 0.0)

    def inner(r, start):
        (beta, f, A, it, ok), _, _ = pb.compiled_call(
            penalised_fit, {"strategy": strategy}, data, a(lam_of(r)), a(start))
        A = np.array(A)
        V = criterion(host, lam_of(r), np.asarray(f), A)
        return np.array(beta), V, A, int(it), np.array(ok)

    rho, beta, fast, n_fast, model, gradient, slope = performance_iteration(
        data, host, np.asarray(beta0, float), rho, present=present, low=low, high=high,
        strategy=strategy, dtype=dtype, exact=exact, tol=tol, sampling=sampling, warm=warm,
        tolerance=tolerance, start_slope=start_slope)
    # the usual case; otherwise Newton's outer iteration takes over from there (a family
    # with a scale has no such fallback: it is chosen anew at every performance iteration)
    if fast.all() or block.obs.name in SCALED:
        lam = lam_of(rho)
        if block.obs.name not in SCALED:
            model = polish(data, host, model, lam, dtype)
            beta = model.beta
        A = model.fit(host, lam)[0]
        total = host.total(lam)
        f = model.loss + 0.5 * np.einsum("pu,upq,qu->u", beta, total, beta)
        _, _, edf, cov = derivatives(host, block, lam, beta, A, exact=False)
        # the penalised gradient (masked coordinates: none) and Newton's decrement there
        g = (model.g + np.einsum("upq,qu->pu", total, beta)) * host.mask
        decrement = np.einsum("pu,upq,qu->u", g, cov, g)
        return RemlResult(np.where(present, rho, np.nan), beta, criterion(host, lam, f, A),
                          np.asarray(edf), gradient, fast, n_fast, 0, np.asarray(cov),
                          objective=f, decrement=decrement,
                          gradient_max=np.abs(g).max(axis=0),
                          slope=np.where(present, slope, np.nan) if exact else None)
    beta, V, A, n_inner, ok = inner(rho, beta)
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
        free = _free(rho, grad, present, low, high)
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


def _design_tiles(X, sampling: dict) -> rt.RowTiles | None:
    """The tiles of a wide design whose Hessians are sampled in float32 (see
    :func:`.problem.curvature_sampling`), where they save at least half of the dense products'
    work (:func:`.row_tiles.tiles_pay`); otherwise None."""
    if sampling.get("compute") is None:
        return None
    return rt.design_tiles(X, sampling["stride"])


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
