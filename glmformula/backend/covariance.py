"""Covariance of the fitted weights from the (penalised) Fisher information.

For unit ``u`` at the fitted parameters the Fisher information of the total
(not mean) log-likelihood is ``I_u = sum_t rw_t rate_tu [x_t; 1][x_t; 1]'``;
a ridge adds ``n * l2`` to its weight diagonal (the objective is a mean over
``n = sum rw`` rows). The covariance is ``I_u^-1``: for an unpenalised fit its
diagonal gives the usual Wald standard errors (statsmodels' ``bse``); with a
ridge it is the inverse penalised information (the Bayesian posterior
covariance under the matching Gaussian prior). L1 and group penalties are not
differentiable: only their ridge part enters, so the result is conditional on
the fitted support and is not a valid post-selection covariance.

Rows/columns of weights a unit does not use (``column_mask``, empty columns)
are 0. Intercept is the last row/column of :func:`unit_information`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy.linalg import lapack

from ..errors import RankDeficientWarning, warn
from . import problem as pb
from .families import Obs
from .newton import _rank_tol

__all__ = ["unit_information", "units_information", "invert_information", "warn_singular"]


# ------------------------------------------------------------------------- per unit, on its columns


def _unit_information(X, offset, rw, columns, W, b, obs=None, *, strategy: str,
                      every_column: bool):
    """Information sums over one block of rows of units that share their columns
    ``X[:, columns]`` (U, k+1, k+1), intercept last (``every_column``: all of X, in order,
    read in place rather than gathered; ``obs``: the observation family, default Poisson)."""
    x = X if every_column else jnp.take(X, columns, axis=1)
    eta = x @ W + b[None, :] + offset[:, None]
    return pb.hessian_sum(x, pb.fisher_curvature(eta, rw, obs), strategy)


def _device_obs(obs, dt):
    """``obs`` with its parameter on the device (None for Poisson: the kernels' default)."""
    if obs is None or obs.name == "poisson":
        return None
    return Obs(obs.name, None if obs.theta is None else jnp.asarray(obs.theta, dt))


def unit_information(X, offset, row_weight, columns, weights, intercept, dtype,
                     obs: Obs | None = None) -> np.ndarray:
    """Fisher information sums of units that use the same columns, over rows ``X``.

    Parameters
    ----------
    X : (T, P) rows of the design
    offset : (T,) or None
    row_weight : (T,)
    columns : (k,) int, the columns of ``X`` the units use
    weights : (k, U), intercept : (U,)
        The fitted parameters on those columns.
    dtype : compute dtype
    obs : Obs, optional
        The observation family (its parameter per unit, e.g. the negative binomial
        dispersion, shape (U,)); default Poisson. The information is at unit dispersion: a
        family with an estimated scale (gamma, gaussian) divides it by the scale.

    Returns
    -------
    ndarray (U, k+1, k+1), float64, intercept last.

    Where a unit reads few of many stored columns (history without coupling) this costs
    ``T (k+1)^2`` per unit instead of the ``T (P+1)^2`` of every stored column; units
    sharing their columns share the products (:func:`~.problem.hessian_strategy`).
    """
    with jax.enable_x64(True):
        dt = jnp.dtype(dtype)
        T = X.shape[0]
        U = np.shape(weights)[1]
        off = jnp.zeros((T,), dt) if offset is None else jnp.asarray(offset, dt)
        args = (pb.to_device(X, dt), off, jnp.asarray(row_weight, dt),
                jnp.asarray(columns, jnp.int32), jnp.asarray(weights, dt),
                jnp.asarray(intercept, dt))
        every = len(columns) == X.shape[1] and bool(np.all(np.diff(columns) == 1))
        static = dict(strategy=pb.hessian_strategy(U, len(columns)), every_column=every)
        obs = _device_obs(obs, dt)
        if obs is not None:
            args = args + (obs,)
        info, _, _ = pb.compiled_call(_unit_information, static, *args)
        return np.array(info, dtype=float)  # writable: the caller adds penalties in place


def _units_information(X, offset, rw, columns, W, b, obs=None):
    """Information sums over one block of rows of units that each read their own columns
    ``X[:, columns[g]]`` (G, k+1, k+1), intercept last; index ``P`` pads a unit's columns
    (a zero column: its rows and columns of the result are 0)."""
    x = jnp.take(X, columns, axis=1, mode="fill", fill_value=0)          # (T, G, k)
    x = jnp.moveaxis(x, 1, 0)                                           # (G, T, k)
    eta = jnp.einsum("gtk,kg->gt", x, W) + b[:, None] + offset[None, :]
    d = pb.fisher_curvature(eta.T, rw, obs).T                           # (G, T)
    a = jnp.concatenate([x, jnp.ones(x.shape[:2] + (1,), x.dtype)], axis=2)
    return jnp.matmul(jnp.swapaxes(a, 1, 2), a * d[:, :, None])         # batched GEMM


def units_information(X, offset, row_weight, columns, weights, intercept, dtype,
                      obs: Obs | None = None) -> np.ndarray:
    """Fisher information sums of units that each use their own columns, in one pass.

    Parameters
    ----------
    X : (T, P) rows of the design
    offset : (T,) or None
    row_weight : (T,)
    columns : (G, k) int
        Unit g's columns of ``X``; shorter supports are padded with ``P``.
    weights : (k, G), intercept : (G,)
        The fitted parameters on those columns (0 on padding).
    dtype : compute dtype
    obs : Obs, optional
        As for :func:`unit_information` (its parameter per unit g, shape (G,)).

    Returns
    -------
    ndarray (G, k+1, k+1), float64, intercept last; rows and columns of padding are 0.
    """
    with jax.enable_x64(True):
        dt = jnp.dtype(dtype)
        T = X.shape[0]
        off = jnp.zeros((T,), dt) if offset is None else jnp.asarray(offset, dt)
        args = (pb.to_device(X, dt), off, jnp.asarray(row_weight, dt),
                jnp.asarray(columns, jnp.int32), jnp.asarray(weights, dt),
                jnp.asarray(intercept, dt))
        obs = _device_obs(obs, dt)
        info, _, _ = pb.compiled_call(_units_information, {},
                                      *(args if obs is None else args + (obs,)))
        return np.array(info, dtype=float)


def warn_singular(units) -> None:
    """The RankDeficientWarning of covariances whose information was singular (``units``:
    unit ids)."""
    units = list(units)
    if units:
        warn(f"the Fisher information is singular for units {units[:20]}: returned its "
             "pseudo-inverse; standard errors of non-identified weights are meaningless (remove "
             "redundant columns or add a Ridge penalty, e.g. gf.Ridge(1e-3)).",
             RankDeficientWarning, units=units)


def invert_information(info: np.ndarray, dtype="float64") -> tuple[np.ndarray, np.ndarray]:
    """Inverses of information matrices (U, n, n) in float64, the pseudo-inverse where one is
    singular at the precision ``dtype`` it was formed in.

    The rank test is the backend's (squared Cholesky pivots of the matrix scaled to unit
    diagonal below ``eps^(2/3)``), so it does not depend on the columns' units.

    Returns
    -------
    inverse : (U, n, n), deficient : (U,) bool
    """
    tol = _rank_tol(jnp.dtype(dtype))
    out = np.empty_like(info, dtype=float)
    deficient = np.zeros(len(info), bool)
    for u, A in enumerate(np.asarray(info, float)):
        d = np.diagonal(A)
        ok = bool((d > 0).all())
        if ok:
            s = 1.0 / np.sqrt(d)
            factor, status = lapack.dpotrf(A * s[:, None] * s[None, :], lower=1)
            ok = status == 0 and float(np.min(np.diagonal(factor))) ** 2 >= tol
        if ok:
            inverse, status = lapack.dpotri(factor, lower=1)
            ok = status == 0
        if ok:
            inverse = np.tril(inverse) + np.tril(inverse, -1).T
            out[u] = inverse * s[:, None] * s[None, :]
        else:
            out[u] = np.linalg.pinv(A, hermitian=True)
            deficient[u] = True
    return out, deficient
