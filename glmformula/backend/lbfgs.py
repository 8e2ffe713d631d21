"""Gram-preconditioned L-BFGS for large designs and large populations.

Newton's cost per iteration is dominated by the U Hessians (``U T P^2 / 2``
flops). L-BFGS needs only the gradient, ``X.T @ (rate - y)`` for all units in
one matrix product, plus ``X @ direction`` (one more) for the line search: two
passes of ``2 T P U`` flops per iteration.

Plain L-BFGS converges slowly on spike-train designs, whose columns (basis
functions of the same covariate, lagged filters) are strongly correlated. The
initial inverse Hessian here is therefore not the identity but the inverse of
``B0_u = ybar_u * G`` with ``G`` the (row-weighted, mean) Gram matrix of
``[X, 1]`` — exactly the Fisher information at the starting point (constant
rate ``ybar_u``, zero weights, no offset) — restricted to the unit's columns,
plus the ridge. ``G`` is computed once (one pass, shared by all units); each
unit's ``B0`` is factored once (``U P^3 / 3``). The first step is thus a Newton
step, and the L-BFGS pairs only have to learn how the rates modulate the
curvature. In these coordinates the usual scaling ``gamma = s'y / y'B0^-1 y``
applies.

Why not optimistix.LBFGS: it has no way to supply this preconditioner, its
line search re-evaluates ``X @ W`` at every trial step (here trial steps only
re-evaluate ``exp``, as ``eta`` is linear in the parameters), and batching it
over units needs a vmap of the whole solver (docs/performance_decisions.md,
'L-BFGS: own implementation, not optimistix').

Refreshes: when the rates modulate the curvature far from the start's, every
``refresh`` iterations (at most ``refreshes`` times) the preconditioner becomes the
current Hessians (float32 products on every ``stride``-th row) and the memory restarts.
A warm start (e.g. a cross-validation fold started at the fit on all rows) begins with
the Hessian at its start instead of ``B0``. A population's last iterating units continue in
loops of their own, state carried over, in ever narrower batches (at most half the
population, down to :data:`NARROW_UNITS`), so that the products with the shared design and
the refreshed Hessians are formed for them alone.

On a CPU the design's transposed copy is kept where memory allows
(:func:`~glmformula.backend.problem.with_transposed_rows`): each pass is then two plain
products over all rows, ``X @ dW`` and ``Xt @ r`` (docs/performance_decisions.md, 'L-BFGS reads
a transposed copy of the design').

Convergence: ``sqrt(g' M^-1 g / ybar) <= tol``, the Newton criterion with the current
preconditioner ``M`` (``B0`` or the last refreshed Hessian) in place of the current Hessian.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import attrs
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from . import row_tiles as rt
from .newton import (
    MAX_ITER,
    NO_SPIKES,
    OK,
    STALLED,
    RawResult,
    _rank_tol,
    factor_solve,
    initial_pass,
    line_search_pass,
    robust_factor,
    tolerance_floor,
)
from .problem import (
    FitData,
    compiled_call,
    curvature,
    curvature_stride,
    gram_sum,
    hessian_strategy,
    penalised_hessian,
    sampled_hessian,
    step_chunk,
    with_tiles,
    with_transposed_rows,
)

__all__ = ["LBFGS", "Curvature"]


class _State(NamedTuple):
    theta: jax.Array  # (P+1, U)
    eta: jax.Array
    f: jax.Array
    g: jax.Array
    mag: jax.Array
    S: jax.Array  # (m, P+1, U)
    Y: jax.Array
    rho: jax.Array  # (m, U)
    head: jax.Array
    gamma: jax.Array  # (U,)
    it: jax.Array
    done: jax.Array
    n_iter: jax.Array
    crit: jax.Array
    status: jax.Array
    L0: jax.Array  # (U, P+1, P+1) inverse of the scaled preconditioner B0 (robust_factor)
    s0: jax.Array
    n_hess: jax.Array
    deficient: jax.Array
    n_pass: jax.Array  # passes over X for products with it (a fused step pass is one)


def lbfgs_loop(data: FitData, tol, max_iter, state=None, *, history: int, refresh: int,
               strategy: str, stride: int = 1, refreshes: int = 0, warm: bool = False,
               until_active: int = 0):
    """Preconditioned L-BFGS on all units in memory (pure; jit with the keywords static).

    ``refresh > 0``: every ``refresh`` iterations without convergence (at most
    ``refreshes`` times, 0: no limit), replace the preconditioner by the current Hessians (one
    Hessian pass on every ``stride``-th row) and restart the memory. ``warm``: precondition
    the first iteration by the Hessian at the start instead of ``B0``.
    ``until_active > 0``: return as soon as at most that many units are still iterating;
    ``state``: continue from a returned state (e.g. of those units alone). A warm start with
    ``data.preconditioner`` begins with that preconditioner and forms neither the Gram matrix
    nor the Hessian at its start (:class:`Curvature`).

    Returns
    -------
    RawResult, state
    """
    blk = data.block
    P, U = data.W0.shape
    dtype = data.W0.dtype
    m = history
    precond = lambda q, st: factor_solve(st.L0, st.s0, q)
    crit_of = lambda g, st: jnp.sqrt(jnp.maximum(jnp.sum(g * precond(g, st), axis=0), 0.0)
                                     / data.scale)
    chunk = step_chunk(P, jnp.dtype(dtype).itemsize)
    given = warm and state is None and data.preconditioner is not None
    if state is None:
        B0 = None
        if not given:
            G = gram_sum(blk.X, blk.rw)
            # the Fisher information at the start is scale * G for every family but the
            # gaussian, whose curvature is 1 (its scale is the variance of y: the criterion's
            # unit)
            w0 = jnp.ones_like(data.scale) if blk.obs.name == "gaussian" else data.scale
            B0 = penalised_hessian(data, (w0 * data.n)[:, None, None] * (G / data.n)[None, :, :])
        W = data.W0 * data.mask
        theta = jnp.concatenate([W, data.b0[None, :]], axis=0)
        eta, (f, g, mag) = initial_pass(data, W, data.b0, chunk)
        zeros = jnp.zeros((m, P + 1, U), dtype)
        st = _State(theta, eta, f, g, mag, zeros, zeros, jnp.zeros((m, U), dtype), jnp.array(0),
                    jnp.ones(U, dtype), jnp.array(0), ~data.active, jnp.zeros(U, jnp.int32),
                    jnp.full((U,), jnp.inf, dtype),
                    jnp.where(data.active, OK, NO_SPIKES).astype(jnp.int32),
                    jnp.zeros((U, P + 1, P + 1), dtype), jnp.ones((U, P + 1), dtype),
                    jnp.array(int(warm and not given)), jnp.zeros(U, bool), jnp.array(1))
    else:
        # a continuation: B0 (and the rank check) belong to the first iteration, long past
        B0, st = jnp.zeros((U, P + 1, P + 1), dtype), state

    def hessian(st):
        # The current Hessians from every `stride`-th row, float32 products: only a
        # preconditioner (docs/performance_decisions.md, 'float32 Hessian products').
        return penalised_hessian(data, sampled_hessian(
            data, curvature(st.eta, blk.rw, blk.Y, blk.obs), strategy, stride, jnp.float32))

    if warm:
        # The rank of the design is the exact Gram matrix's to decide, never a float32
        # Hessian's; a warm start is preconditioned by its own Hessian instead of B0. A start
        # given its preconditioner decides no rank: the fit it came from decided its rows'.
        deficient_start = (robust_factor(B0, _rank_tol(dtype))[2]
                           if state is None and not given else jnp.zeros(U, bool))

    def renew(st):
        # Factor B0 (cold start), the Hessian at the start (warm start) or the current
        # Hessian (refresh), and forget pairs measured against the old preconditioner.
        # One call site: the factorisation is the largest part of the compiled program.
        first = st.it == 0
        passes = 1
        if given:  # the first preconditioner is given, no pass; later ones are refreshes
            L, s = lax.cond(first, lambda st: tuple(a.astype(dtype) for a in data.preconditioner),
                            lambda st: robust_factor(hessian(st), _rank_tol(jnp.float32))[:2], st)
            passes = (~first).astype(st.n_hess.dtype)
        else:
            if warm:
                M, tol_rank = hessian(st), _rank_tol(jnp.float32)
            elif refresh:
                M = lax.cond(first, lambda st: B0, hessian, st)
                tol_rank = jnp.where(first, _rank_tol(dtype),
                                     _rank_tol(jnp.float32)).astype(dtype)
            else:
                M, tol_rank = B0, None
            L, s, deficient = robust_factor(M, tol_rank)
        if warm:
            deficient = deficient_start
        return st._replace(L0=L, s0=s, rho=jnp.zeros_like(st.rho), gamma=jnp.ones_like(st.gamma),
                           n_hess=st.n_hess + passes,
                           deficient=st.deficient | (deficient & data.active & first))

    def direction(st):
        # two-loop recursion, newest pair first; empty slots have rho = 0.
        # fori_loops rather than unrolled Python loops: a smaller program that compiles faster
        # (measured: docs/performance_decisions.md, 'L-BFGS two-loop recursion as fori_loops').
        def newest_first(i, carry):
            q, alphas = carry
            j = (st.head - 1 - i) % m
            a = st.rho[j] * jnp.sum(st.S[j] * q, axis=0)
            return q - a * st.Y[j], alphas.at[j].set(a)

        q, alphas = lax.fori_loop(0, m, newest_first, (st.g, jnp.zeros((m, U), dtype)))
        r = st.gamma * precond(q, st)

        def oldest_first(i, r):
            j = (st.head + i) % m
            beta = st.rho[j] * jnp.sum(st.Y[j] * r, axis=0)
            return r + (alphas[j] - beta) * st.S[j]

        return -lax.fori_loop(0, m, oldest_first, r)

    def cond(st):
        going = jnp.sum(~st.done)
        return (st.it < max_iter) & (going > 0) & (going > until_active)

    def body(st):
        # Slow progress means the rates modulate the curvature far from the
        # start's: every `refresh` iterations, the current Hessian becomes B0.
        need = st.it == 0
        if refresh:
            again = (st.it % refresh == 0)
            if refreshes:
                again = again & (st.it <= refresh * refreshes)
            need = need | again
        st = lax.cond(need, renew, lambda st: st, st)
        go = ~st.done
        d = direction(st)
        slope = jnp.sum(st.g * d, axis=0)
        # Safeguard: rounding can spoil the quasi-Newton direction; fall back to
        # the preconditioned gradient (always a descent direction).
        fallback = slope >= 0
        d = jnp.where(fallback[None, :], -precond(st.g, st), d)
        slope = jnp.sum(st.g * d, axis=0)
        d = jnp.where(go[None, :], d, 0.0)
        dW, db = d[:P], d[P]
        a, ok, eta, (f, g, mag), passes = line_search_pass(
            data, chunk, st.eta, st.theta[:P], dW, db, st.f, jnp.where(go, slope, 0.0), st.mag, go)
        step = a * d
        theta = st.theta + step
        y = g - st.g
        sy = jnp.sum(step * y, axis=0)
        yy = jnp.sum(y * precond(y, st), axis=0)
        valid = go & (sy > jnp.finfo(dtype).eps
                      * jnp.sqrt(jnp.sum(step * step, axis=0) * jnp.sum(y * y, axis=0)))
        rho = jnp.where(valid, 1.0 / jnp.where(valid, sy, 1.0), 0.0)
        stalled = go & ~ok
        crit = jnp.where(go, crit_of(g, st), st.crit)
        return st._replace(
            theta=theta, eta=eta, f=f, g=g, mag=mag,
            S=st.S.at[st.head].set(step), Y=st.Y.at[st.head].set(y),
            rho=st.rho.at[st.head].set(rho),
            head=(st.head + 1) % m,
            gamma=jnp.where(valid, sy / jnp.where(valid, yy, 1.0), st.gamma),
            it=st.it + 1,
            n_pass=st.n_pass + passes,
            n_iter=st.n_iter + go.astype(jnp.int32),
            status=jnp.where(stalled, STALLED, st.status),
            crit=crit,
            done=st.done | stalled | (crit <= tol),
        )

    st = lax.while_loop(cond, body, st)
    return _result(data, st, tol), (st if until_active or state is not None else None)


def _result(data: FitData, st: _State, tol) -> RawResult:
    P = data.W0.shape[0]
    converged = data.active & (st.crit <= tol)
    status = jnp.where(data.active & ~converged & (st.status == OK), MAX_ITER, st.status)
    return RawResult(
        st.theta[:P], st.theta[P], st.f, st.crit, jnp.max(jnp.abs(st.g), axis=0), converged,
        st.n_iter, status, st.deficient, st.n_hess, st.n_pass, (st.L0, st.s0),
    )


def _of_units(data: FitData, st: _State, units: np.ndarray):
    """The problem and the L-BFGS state of some units only (``units``: indices)."""
    take = lambda a, axis: jnp.take(a, units, axis=axis)
    blk = data.block
    obs = blk.obs if blk.obs.theta is None else type(blk.obs)(blk.obs.name,
                                                              take(blk.obs.theta, 0))
    block = blk._replace(Y=take(blk.Y, 1), obs=obs,
                         offset=blk.offset if blk.offset.shape[1] == 1 else take(blk.offset, 1))
    sub = data._replace(
        block=block, mask=take(data.mask, 1), l2=take(data.l2, 1), l1=take(data.l1, 1),
        group_strength=take(data.group_strength, 1), W0=take(data.W0, 1), b0=take(data.b0, 0),
        scale=take(data.scale, 0), active=take(data.active, 0),
        quad=None if data.quad is None else take(data.quad, 0), preconditioner=None)
    return sub, st._replace(**{k: take(getattr(st, k), _UNIT_AXIS[k]) for k in _UNIT_AXIS})


def _merge(st: _State, part: _State, units: np.ndarray) -> _State:
    """``st`` with the units ``units`` replaced by ``part``'s first ``len(units)`` ones; the
    counters of passes are ``part``'s (it continued from ``st``), and so is the memory's
    newest slot ``head`` (``it % history``: every unit still iterating has taken every
    iteration so far, so the next narrower batch writes over its oldest pair and reads the
    newest first)."""
    U = st.done.shape[0]
    width = part.done.shape[0]
    # padded to the batch's width with an index past the units (dropped): one compiled
    # program per width (eager, the state's (T, U) arrays were transposed and copied three
    # times: 85 ms a merge on the real coupled model against ~10 ms compiled)
    padded = np.full(width, U, np.int32)
    padded[:len(units)] = units
    return _merge_padded(st, part, jnp.asarray(padded))


# ``st`` donated: its buffers are written in place (``st`` is not used again), which spares
# copying the (T, U) predictor and the (U, P+1, P+1) factors (real coupled model, 226k x 269
# x 32 float64: 36 -> 8.5 ms a merge, three per fit)
@functools.partial(jax.jit, donate_argnums=(0,))
def _merge_padded(st: _State, part: _State, units) -> _State:
    def put(a, b, axis):
        axis = axis % a.ndim
        index = (slice(None),) * axis + (units,)
        return a.at[index].set(b, mode="drop")

    return st._replace(**{name: put(getattr(st, name), getattr(part, name), axis)
                          for name, axis in _UNIT_AXIS.items()},
                       it=part.it, head=part.head, n_hess=part.n_hess, n_pass=part.n_pass)


#: the axis of the units in each per-unit field of the L-BFGS state
_UNIT_AXIS = dict(theta=-1, eta=-1, f=0, g=-1, mag=0, S=-1, Y=-1, rho=-1, gamma=0, done=0,
                  n_iter=0, crit=0, status=0, L0=0, s0=0, deficient=0)

#: The narrowest batch that a population's last iterating units continue in (batches of 4, 8,
#: 16, ... units, the widest at most half the population; see :class:`LBFGS`):
#: the products with the shared design then read it for the batch's units only (on the real
#: coupled model, 226k x 268 float64: 44 ms a product pass for 4 units instead of 97 for 32),
#: their refreshed Hessians are formed alone, and nearly separated units often take most of the
#: iterations (docs/performance_decisions.md, 'L-BFGS: the last units on their own').
NARROW_UNITS = 4

#: A population's cold start (zero weights) is preconditioned by the Fisher information of a
#: constant rate, far from the curvature once the rates are modulated: its preconditioner is
#: renewed every ``COLD_REFRESH`` iterations, at most ``COLD_REFRESHES`` times, where a
#: Hessian pass costs at most that many iterations (:func:`hessian_iterations`), instead of
#: the warm starts' ``(P+1)/16``. On the real coupled head-direction model (226k x 268, 32
#: units; tiled Hessians ~3 iterations) the median unit then converges in 17 instead of 24
#: iterations, 70 instead of 85 product passes for one more Hessian, solver 11.1-11.3 s against
#: 13.0-14.9 s, the same likelihood to 1e-11 (docs/performance_decisions.md, 'L-BFGS refresh
#: interval', session 25). Where a Hessian costs more (200 units on 1,640 dense columns: ~100
#: iterations), the cold start renews it as rarely as that cost says (session 27).
COLD_REFRESH, COLD_REFRESHES = 6, 3


def hessian_iterations(data: FitData) -> float:
    """A population's Hessian pass priced in L-BFGS iterations: ``(P+1)/16`` for a dense
    design (float32 Hessians of the unit's ``P+1`` columns against two float64 products per
    iteration, see :class:`LBFGS`), times the fraction of those multiply-adds that the
    design's tiles leave (:func:`.row_tiles.dense_fraction`)."""
    P = data.W0.shape[0]
    return (P + 1) / 16 * rt.dense_fraction(data.tiles, P)


@attrs.frozen
class LBFGS:
    """L-BFGS preconditioned by the Fisher information at the start (see module docs).

    Parameters
    ----------
    tol : float
        Tolerance on the scale-aware criterion (see module docs).
    max_iter : int
        Iterations (each: two matrix products with the shared design).
    history : int
        Stored (s, y) pairs.
    refresh : int or None
        Every ``refresh`` iterations without convergence, re-precondition with
        the current Hessians (one Hessian pass for all units) and restart the
        memory. 0: never. ``None``: about as many iterations as one Hessian pass
        costs, at least 10: ``P/16`` for populations (measured on the real
        head-direction recording's coupled model, P = 268: a float32 pairs Hessian
        pass of 3.3 s against 0.2 s per iteration) and ``P/30`` for one unit (its
        matrix-vector products are memory bound); a population's cold start
        :data:`COLD_REFRESH`. Refreshing bounds the iteration
        count on strongly modulated rates (docs/performance_decisions.md, 'L-BFGS
        refresh interval').
    stride : int or None
        Refresh Hessians from every ``stride``-th row only (1: every row): a cheaper,
        noisier preconditioner. ``None``: keep at least 100,000 rows
        (``n_rows // 100_000``, at least 1).
    refreshes : int or None
        At most this many refreshes (0: no limit). ``None``: 2 (a population's cold start
        :data:`COLD_REFRESHES`). Each refresh restarts the
        memory, which units moving along a nearly flat direction (a nearly separated
        unpenalised fit, whose curvature keeps falling) need most: unlimited refreshes
        kept three such units of the real coupled model going for hundreds of iterations
        (docs/performance_decisions.md, 'L-BFGS refresh interval').

    narrow_units : int or None
        The narrowest batch the last iterating units continue in, on their own (0: never):
        batches of this many units times 1, 2, 4, ..., the widest at most half the
        population; the units left continue padded to the narrowest batch that holds them,
        until all are done. ``None``: :data:`NARROW_UNITS`.

    A warm start (``init`` given: e.g. a cross-validation fold started at the fit on all
    rows) is preconditioned by the Hessian at the start instead of ``B0``, or by a given
    :class:`Curvature` (``solve(..., preconditioner=)``).
    """

    tol: float = 1e-8
    max_iter: int = 1000
    history: int = 10
    refresh: int | None = None
    stride: int | None = None
    refreshes: int | None = None
    narrow_units: int | None = None
    name = "lbfgs"

    def run(self, data: FitData):
        P, U = data.W0.shape
        dtype = data.W0.dtype
        tol = jnp.asarray(max(self.tol, tolerance_floor(dtype)), dtype)
        # a host check of the start (one small transfer): zero weights are a cold start
        warm = bool(jnp.any(data.W0 != 0))
        if not warm:  # only a warm start takes one (and no unused argument makes a program)
            data = data._replace(preconditioner=None)
        stride = self.stride
        if stride is None:
            stride = curvature_stride(data.block.X.shape[0])
        data = with_transposed_rows(with_tiles(data, int(stride)))
        # a cold population renews its poor first preconditioner early where Hessians are cheap
        cold_population = U >= 8 and not warm and hessian_iterations(data) <= COLD_REFRESH
        refresh = self.refresh
        if refresh is None:
            divisor = 16 if U >= 8 else 30  # a Hessian pass costs about P / divisor iterations
            refresh = COLD_REFRESH if cold_population else max(10, (P + 1) // divisor)
        refreshes = self.refreshes
        if refreshes is None:
            refreshes = COLD_REFRESHES if cold_population else 2
        static = dict(history=self.history, refresh=int(refresh), strategy=hessian_strategy(U, P),
                      stride=int(stride), refreshes=int(refreshes), warm=warm)
        max_iter = jnp.asarray(self.max_iter, jnp.int32)
        k = NARROW_UNITS if self.narrow_units is None else int(self.narrow_units)
        widths = _narrowing(U, k)
        (raw, st), compile_s, run_s = compiled_call(
            lbfgs_loop, dict(static, until_active=widths[0] if widths else 0), data, tol,
            max_iter)
        # the units still iterating continue on their own, in batches padded to the smallest
        # width that holds them (few compiled programs), until all are done
        while widths:
            going = np.flatnonzero(~np.asarray(st.done))
            if going.size == 0 or int(st.it) >= self.max_iter:
                break
            width = min(w for w in widths if w >= going.size)
            smaller = [w for w in widths if w < width]
            units = np.concatenate([going, np.repeat(going[:1], width - going.size)])
            sub, part = _of_units(data, st, units)
            part = part._replace(done=part.done.at[going.size:].set(True))
            stage = dict(static, strategy=hessian_strategy(width, P),
                         until_active=smaller[0] if smaller else 0)
            (_, part), c2, r2 = compiled_call(lbfgs_loop, stage, sub, tol, max_iter, part)
            st = _merge(st, part, going)
            compile_s, run_s = compile_s + c2, run_s + r2
            widths = smaller
        return (_result(data, st, tol) if st is not None else raw), compile_s, run_s


@attrs.frozen(eq=False)
class Curvature:
    """A population's last L-BFGS preconditioner, for a warm start of the same problem on
    some of its rows (``Solution.preconditioner``; ``solve(..., preconditioner=)``).

    The preconditioner is each unit's mean penalised Hessian near the answer; a mean over
    rows, it changes little when a fifth of them are left out, and a cross-validation fold
    that starts at the fit on all rows begins with it instead of forming the Gram matrix and
    the Hessian at its start (on the real coupled head-direction model, 184k rows x 268
    columns x 32 units: a fold's 32-unit loop 1.8-3.5 s instead of 3.0-4.8 s, the same 8-9
    iterations; docs/performance_decisions.md, 'Folds start with the full fit's
    preconditioner'). Such a start decides no rank of its own rows: the fit on all rows
    decided the design's.

    Attributes
    ----------
    factor, scaling : ndarray (U, P+1, P+1), (U, P+1)
        :func:`~glmformula.backend.newton.robust_factor`'s inverse factor and scaling.
    mask : ndarray of bool (U, P)
        The columns each unit fitted (user mask and non-empty columns).
    l2 : ndarray (P, U)
        The ridge strengths of the mean objective.
    quad : ndarray (U, P, P) or None
        The quadratic penalty of the mean objective.
    """

    factor: np.ndarray
    scaling: np.ndarray
    mask: np.ndarray
    l2: np.ndarray
    quad: np.ndarray | None

    def fits(self, mask: np.ndarray, l2: np.ndarray, quad: np.ndarray | None) -> bool:
        """Whether it preconditions a problem with these columns and penalty (the same
        units, columns and penalties: another set of rows of the same design)."""
        same_quad = (quad is None if self.quad is None
                     else quad is not None and np.array_equal(self.quad, quad))
        return np.array_equal(self.mask, mask) and np.array_equal(self.l2, l2) and same_quad


def _narrowing(n_units: int, narrowest: int) -> list[int]:
    """Widths of the batches the last iterating units continue in, widest first: the
    narrowest times powers of two below half the population (none when ``narrowest`` is 0 or
    the population is smaller than twice it)."""
    widths = []
    width = narrowest
    while 0 < width <= n_units // 2:
        widths.insert(0, width)
        width *= 2
    return widths
