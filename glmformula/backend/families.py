"""Observation families on the device: each family's per-row loss in the linear predictor
``eta``, its first and second derivatives, and the dispersion estimates the solvers need.

The loss of a row is the family's negative log-likelihood at unit dispersion, less the terms
that do not depend on ``eta`` (so it is convex in ``eta`` for every family here):

=====================  ========  ===================================================
family                 link      loss(eta; y)
=====================  ========  ===================================================
``poisson``            log       ``exp(eta) - y eta`` (:mod:`.problem`, unchanged)
``bernoulli``          logit     ``softplus(eta) - y eta``
``negative_binomial``  log       ``(y + 1/a) softplus(eta + log a) - y eta`` (NB2, ``a``:
                                 dispersion, variance ``mu + a mu^2``)
``gamma``              log       ``y exp(-eta) + eta``
``gaussian``           identity  ``(y - eta)^2 / 2``
=====================  ========  ===================================================

The solvers use the observed curvature (the exact Newton step; every loss above is convex);
standard errors use the expected (Fisher) curvature, as statsmodels' GLM does (for the
canonical links the two agree).

Which family a block of rows follows travels with the rows: :class:`Obs` is a pytree whose
*name* is static (part of the compiled program, so the Poisson kernels are compiled exactly as
before and pay nothing for the others) and whose per-unit parameter ``theta`` (the negative
binomial dispersion ``a``, shape (U,)) is an array argument (a new value never recompiles).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax, tree_util

__all__ = ["FAMILIES", "Obs", "POISSON", "is_poisson", "row_parts", "row_loss",
           "row_curvature", "row_fisher", "pearson_rows", "nb_score_rows", "nb_score_counts",
           "nb_survival",
           "nb_newton_step",
           "nb_iteration", "nb_alpha_newton", "nb_inner_tol", "NB_LOG_ALPHA_RANGE",
           "NB_INNER_MAX", "NB_INNER_TOL"]

#: The observation families the backend fits.
FAMILIES = ("poisson", "bernoulli", "negative_binomial", "gamma", "gaussian")

#: Range of ``log a`` for the negative binomial dispersion: ``a`` in [1e-8, 1e4] (below, the
#: counts are as dispersed as Poisson ones: ``a`` stops at the bound).
NB_LOG_ALPHA_RANGE = (-18.420680743952367, 9.210340371976184)


@tree_util.register_pytree_node_class
class Obs:
    """The observation family of a block of rows.

    Parameters
    ----------
    name : str
        One of :data:`FAMILIES`; static (part of the compiled program).
    theta : array (U,) or None
        The family's per-unit parameter: the negative binomial dispersion ``a`` (variance
        ``mu + a mu^2``, dimensionless); None for the other families.
    """

    __slots__ = ("name", "theta")

    def __init__(self, name: str = "poisson", theta=None):
        if name not in FAMILIES:
            raise ValueError(f"unknown family {name!r}; families: {', '.join(FAMILIES)}")
        self.name = name
        self.theta = theta

    def tree_flatten(self):
        return (self.theta,), self.name

    @classmethod
    def tree_unflatten(cls, name, children):
        out = object.__new__(cls)
        out.name, out.theta = name, children[0]
        return out

    def __repr__(self) -> str:
        return f"Obs({self.name!r})"


#: The default observation family of a block (what the kernels assumed before families).
POISSON = Obs("poisson")


def is_poisson(obs) -> bool:
    """Whether ``obs`` (an :class:`Obs` or None) is the Poisson family (static)."""
    return obs is None or obs.name == "poisson"


# --------------------------------------------------------------------------- helpers


def exp_cap(dtype) -> float:
    """Argument above which ``exp`` is continued by a quadratic (as
    :func:`glmformula.backend.problem.eta_cap`: 30 in float32, 100 in float64)."""
    return 30.0 if jnp.dtype(dtype) == jnp.float32 else 100.0


def _capped_exp(x):
    """``exp(x)`` continued above the cap by its second-order Taylor polynomial (convex, C2,
    overflow-safe; see :func:`glmformula.backend.problem._rate`).

    Returns value, derivative and second derivative of the continued function.
    """
    cap = exp_cap(x.dtype)
    r = jnp.exp(jnp.minimum(x, cap))
    d = jnp.maximum(x - cap, 0.0)
    above = x > cap
    return (jnp.where(above, r * (1.0 + d + 0.5 * d * d), r), jnp.where(above, r * (1.0 + d), r),
            r)


def _nb(theta, eta):
    """``1/a`` (1, U), ``softplus(eta + log a)`` and ``sigmoid(eta + log a)`` (T, U)."""
    a = theta[None, :]
    z = eta + jnp.log(a)
    return 1.0 / a, jax.nn.softplus(z), jax.nn.sigmoid(z)


# --------------------------------------------------------------------------- per-row terms


def row_parts(obs: Obs, eta, Y):
    """Loss, its magnitude (the size of the terms that cancel in it, for line-search rounding
    slack) and its derivative in ``eta``, per row and unit (T, U) each."""
    name = obs.name
    if name == "bernoulli":
        sp = jax.nn.softplus(eta)
        return sp - Y * eta, sp + Y * jnp.abs(eta), jax.nn.sigmoid(eta) - Y
    if name == "negative_binomial":
        inv, sp, sig = _nb(obs.theta, eta)
        w = Y + inv
        return w * sp - Y * eta, w * sp + Y * jnp.abs(eta), w * sig - Y
    if name == "gamma":
        e_loss, e_grad, _ = _capped_exp(-eta)
        return Y * e_loss + eta, Y * e_loss + jnp.abs(eta), 1.0 - Y * e_grad
    if name == "gaussian":
        d = eta - Y
        return 0.5 * d * d, 0.5 * d * d + jnp.abs(d) * (jnp.abs(Y) + jnp.abs(eta)), d
    raise ValueError(f"row_parts: not for family {name!r}")


def row_loss(obs: Obs, eta, Y):
    """The loss per row and unit (T, U)."""
    name = obs.name
    if name == "bernoulli":
        return jax.nn.softplus(eta) - Y * eta
    if name == "negative_binomial":
        inv, sp, _ = _nb(obs.theta, eta)
        return (Y + inv) * sp - Y * eta
    if name == "gamma":
        return Y * _capped_exp(-eta)[0] + eta
    if name == "gaussian":
        d = eta - Y
        return 0.5 * d * d
    raise ValueError(f"row_loss: not for family {name!r}")


def row_curvature(obs: Obs, eta, Y):
    """Observed curvature ``d^2 loss / d eta^2`` per row and unit (T, U): the solvers'
    Hessian weights (non-negative: every loss here is convex in ``eta``)."""
    name = obs.name
    if name == "bernoulli":
        s = jax.nn.sigmoid(eta)
        return s * (1.0 - s)
    if name == "negative_binomial":
        inv, _, sig = _nb(obs.theta, eta)
        return (Y + inv) * sig * (1.0 - sig)
    if name == "gamma":
        return Y * _capped_exp(-eta)[2]
    if name == "gaussian":
        return jnp.ones_like(eta)
    raise ValueError(f"row_curvature: not for family {name!r}")


def row_fisher(obs: Obs, eta):
    """Expected (Fisher) curvature per row and unit at unit dispersion, ``(dmu/deta)^2 /
    V(mu)`` (T, U): the weights of the Fisher information (standard errors, as statsmodels'
    GLM)."""
    name = obs.name
    if name == "bernoulli":
        s = jax.nn.sigmoid(eta)
        return s * (1.0 - s)
    if name == "negative_binomial":
        inv, _, sig = _nb(obs.theta, eta)
        return inv * sig  # mu / (1 + a mu)
    if name in ("gamma", "gaussian"):
        return jnp.ones_like(eta)
    raise ValueError(f"row_fisher: not for family {name!r}")


def pearson_rows(obs: Obs, eta, Y):
    """Squared Pearson residuals ``(y - mu)^2 / V(mu)`` per row (T, U) for the families whose
    scale is estimated (gamma: ``V = mu^2``; gaussian: ``V = 1``)."""
    if obs.name == "gamma":
        r = Y * jnp.exp(jnp.clip(-eta, -700.0, 700.0)) - 1.0
        return r * r
    if obs.name == "gaussian":
        d = Y - eta
        return d * d
    raise ValueError(f"pearson_rows: not for family {obs.name!r}")


# --------------------------------------------------------------------------- NB dispersion

def nb_score_rows(eta, Y, rw, log_alpha, survival=None):
    """First and second derivatives in ``k = log a`` of the negative binomial log-likelihood
    (NB2) at fixed means ``exp(eta)``, summed over rows: (U,), (U,).

    With the shape ``r = 1/a = exp(-k)`` and ``mu = exp(eta)``, per row
    ``l_r = psi(y+r) - psi(r) - log(1 + mu/r) + (mu - y)/(r + mu)`` and
    ``l_rr = psi1(y+r) - psi1(r) + mu/(r (r + mu)) - (mu - y)/(r + mu)^2``; then
    ``l_k = -r l_r`` and ``l_kk = r^2 l_rr + r l_r``. The digamma and trigamma differences
    do not depend on ``mu``: for whole counts they are ``sum_{j<y} 1/(r+j)`` and
    ``-sum_{j<y} 1/(r+j)^2``, so their sums over rows are ``sum_j S[u, j] / (r + j)`` (and
    squared) with ``survival`` ``S[u, j]`` the weighted number of rows where unit ``u``'s
    count exceeds ``j`` (U, J): exact, and J terms per unit instead of digamma functions of
    every row. Without ``survival`` the rows' part alone (the derivatives add: rows in blocks
    add :func:`nb_score_counts` once).
    """
    r = jnp.exp(-log_alpha)
    mu = jnp.exp(jnp.minimum(eta, 700.0))
    rr = r[None, :]
    rm = rr + mu
    lr = jnp.sum(rw[:, None] * (-jnp.log1p(mu / rr) + (mu - Y) / rm), axis=0)
    lrr = jnp.sum(rw[:, None] * (mu / (rr * rm) - (mu - Y) / (rm * rm)), axis=0)
    lk, lkk = -r * lr, r * r * lrr + r * lr
    if survival is None:
        return lk, lkk
    ck, ckk = nb_score_counts(log_alpha, survival)
    return lk + ck, lkk + ckk


def nb_score_counts(log_alpha, survival):
    """The digamma and trigamma part of :func:`nb_score_rows` (derivatives in ``log a``)."""
    r = jnp.exp(-log_alpha)
    j = jnp.arange(survival.shape[1], dtype=r.dtype)[None, :]
    inv = 1.0 / (r[:, None] + j)
    lr = jnp.sum(survival * inv, axis=1)
    lrr = -jnp.sum(survival * inv * inv, axis=1)
    return -r * lr, r * r * lrr + r * lr


def nb_survival(parts) -> np.ndarray:
    """``S[u, j]``, the weighted number of rows where unit ``u``'s count exceeds ``j``, for
    ``j < J`` (J: the largest count, rounded up to a power of two so that a kernel compiles
    for few shapes) (host numpy, (U, J)); see :func:`nb_score_rows`.

    ``parts``: (counts (T, U), row weights (T,) or None) of the rows, in one or more blocks
    (histograms are accumulated block by block: no copy of all the rows).
    """
    hist = None
    for y, w in parts:
        y = np.asarray(y, float)
        y = y[:, None] if y.ndim == 1 else y
        w = np.ones(y.shape[0]) if w is None else np.asarray(w, float)
        used = w > 0
        top = int(np.max(y[used], initial=0.0))
        if hist is None:
            hist = np.zeros((y.shape[1], top + 1))
        if top + 1 > hist.shape[1]:
            hist = np.pad(hist, ((0, 0), (0, top + 1 - hist.shape[1])))
        for u in range(y.shape[1]):
            hist[u] += np.bincount(y[used, u].astype(np.int64), weights=w[used],
                                   minlength=hist.shape[1])
    top = hist.shape[1] - 1
    J = 1 << max(top - 1, 0).bit_length()
    hist = np.pad(hist, ((0, 0), (0, J + 1 - hist.shape[1])))
    return hist.sum(axis=1, keepdims=True) - np.cumsum(hist, axis=1)[:, :J]


def nb_newton_step(k, lk, lkk, lo, hi):
    """One safeguarded Newton step on ``l_k(k) = 0`` per unit.

    ``[lo, hi]`` brackets the root (``-inf``/``inf`` while open); it is narrowed from the sign
    of ``l_k``. The step is Newton's where the profile is concave and the step (at most 1 in
    ``k``) stays inside the bracket; otherwise bisection of the bracket, or a unit step toward
    the root while the bracket is open on that side. Returns the new ``k`` (within
    :data:`NB_LOG_ALPHA_RANGE`) and bracket.
    """
    lo = jnp.where(lk > 0, k, lo)
    hi = jnp.where(lk < 0, k, hi)
    newton = k - lk / jnp.where(lkk < 0, lkk, -1.0)
    newton = jnp.clip(newton, k - 1.0, k + 1.0)
    inside = (lkk < 0) & (newton > lo) & (newton < hi)
    middle = 0.5 * (lo + hi)
    toward = jnp.where(lk > 0, jnp.where(jnp.isfinite(hi), middle, k + 1.0),
                       jnp.where(jnp.isfinite(lo), middle, k - 1.0))
    new = jnp.where(inside, newton, toward)
    new = jnp.where(lk == 0, k, new)
    kmin, kmax = NB_LOG_ALPHA_RANGE
    return jnp.clip(new, kmin, kmax), lo, hi


def nb_iteration(k, lk, lkk, lo, hi, active):
    """:func:`nb_newton_step` for the ``active`` units (the others keep ``k``), and how far
    each moved (0 at a bound that the score points beyond: the answer is the bound)."""
    new, lo, hi = nb_newton_step(k, lk, lkk, lo, hi)
    new = jnp.where(active, new, k)
    kmin, kmax = NB_LOG_ALPHA_RANGE
    stuck = ((new <= kmin) & (lk < 0)) | ((new >= kmax) & (lk > 0))
    return new, lo, hi, jnp.where(stuck, 0.0, jnp.abs(new - k))


#: Iterations and the change of ``log a`` that ends the search for the dispersion at fixed
#: weights (float64; :func:`nb_inner_tol` for float32).
NB_INNER_MAX, NB_INNER_TOL = 200, 1e-10


def nb_inner_tol(dtype) -> float:
    """The change of ``log a`` that ends the search in ``dtype`` (rounding allows no less)."""
    return NB_INNER_TOL if jnp.dtype(dtype) == jnp.float64 else 1e-5


def nb_alpha_newton(eta, Y, rw, log_alpha, active, survival):
    """The maximum-likelihood ``log a`` per unit at fixed means ``exp(eta)`` (T, U), by the
    safeguarded Newton iteration of :func:`nb_newton_step` from ``log_alpha`` (U,) (pure:
    jit it). Units not ``active`` keep their value. Returns the new ``log a`` (U,)."""
    dtype = eta.dtype
    tol = nb_inner_tol(dtype)

    def cond(st):
        i, k, lo, hi, step = st
        return (i < NB_INNER_MAX) & jnp.any(active & (step > tol))

    def body(st):
        i, k, lo, hi, _ = st
        lk, lkk = nb_score_rows(eta, Y, rw, k, survival)
        k, lo, hi, step = nb_iteration(k, lk, lkk, lo, hi, active)
        return i + 1, k, lo, hi, step

    U = log_alpha.shape[0]
    st = (0, log_alpha, jnp.full(U, -jnp.inf, dtype), jnp.full(U, jnp.inf, dtype),
          jnp.full(U, jnp.inf, dtype))
    _, k, _, _, _ = lax.while_loop(cond, body, st)
    return k
