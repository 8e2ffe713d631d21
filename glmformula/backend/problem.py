"""The Poisson GLM on plain arrays, and its row-sum kernels.

Model, for rows ``t`` and units ``u``::

    y[t, u] ~ Poisson(exp(eta[t, u])),   eta = X @ W + b + offset

with one design ``X`` (T, P) shared by all units. The objective of unit ``u`` is::

    f_u(W, b) = (1/n) sum_t row_weight[t] * (rate[t, u] - y[t, u] * eta[t, u]) + penalty_u(W[:, u])

with ``n = sum_t row_weight[t]``. The constant ``log y!`` term of the Poisson
negative log-likelihood is dropped (it does not depend on the weights); add
``mean(gammaln(y + 1))`` to compare with a full log-likelihood such as
statsmodels' ``llf``.

Everything the solvers need (value, gradient, Hessian, Hessian-vector product,
Gram matrix) is a sum over rows, so every kernel here works on one *block* of
rows and returns unnormalised sums; a caller may run it once on all rows
(in memory) or accumulate it over row blocks (:class:`BlockedProblem`), both through
:func:`~glmformula.backend.solve.solve`.
Kernels are pure functions of arrays; anything that changes the compiled code
(the Hessian strategy, the dtype) is a static argument.
"""

from __future__ import annotations

import threading
import time
from typing import NamedTuple

import attrs
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._memory import ALIGNMENT, aligned_zeros, setup_allocator
from ..config import config, setup_compilation_cache
from . import families as fam
from . import row_tiles as rt
from .families import POISSON, Obs, is_poisson

__all__ = [
    "Problem",
    "Block",
    "eta_cap",
    "loss_sum",
    "value_grad_sums",
    "resum_units",
    "hessian_sum",
    "gram_sum",
    "hessian_strategy",
    "curvature_stride",
    "sampled_hessian_sum",
]


# --------------------------------------------------------------------------- the value


def _as_float_array(x, name: str, ndim: tuple[int, ...]) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind not in "fiub":
        raise TypeError(f"Problem.{name} must be numeric, got dtype {a.dtype}")
    if a.ndim not in ndim:
        raise ValueError(f"Problem.{name} must have {' or '.join(map(str, ndim))} dimensions, "
                         f"got shape {a.shape}")
    return a


def aligned(a, name: str = "X") -> np.ndarray:
    """``a`` as a C- or Fortran-contiguous float array whose data start on a 64-byte boundary.

    Such an array reaches the device without a copy on CPU
    (:func:`to_device`; a Fortran-ordered one as its transpose, :func:`columns_first`); for a
    design of 1e6 x 200 float64 that saves a 1.6 GB copy at every fit. An array that already
    qualifies is returned as is; anything else (integers, strided views, numpy's usual
    16-byte alignment) is copied once, here, in C order.
    """
    a = _as_float_array(a, name, (2,))
    dtype = a.dtype if a.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    if a.dtype == dtype and (a.flags.c_contiguous or a.flags.f_contiguous) \
            and a.ctypes.data % ALIGNMENT == 0:
        return a
    out = aligned_zeros(a.shape, dtype)
    np.copyto(out, a, casting="unsafe")
    return out


def to_device(a, dtype):
    """Host array → device array in ``dtype``, without a copy where possible (aligned, CPU)."""
    a = np.asarray(a)
    if (
        a.dtype == dtype
        and a.flags.c_contiguous
        and a.ctypes.data % ALIGNMENT == 0
        and a.size
        and jax.default_backend() == "cpu"
    ):
        try:
            return jnp.from_dlpack(a, copy=False)
        except (ValueError, RuntimeError, TypeError):  # pragma: no cover
            # jaxlib without zero-copy import
            pass
    return jnp.asarray(a, dtype)


def _y_converter(y) -> np.ndarray:
    a = _as_float_array(y, "y", (1, 2))
    return a[:, None] if a.ndim == 1 else a


def _optional(convert):
    return lambda x: None if x is None else convert(x)


def _check_penalty_matrix(matrix, n_units: int, n_cols: int) -> None:
    if matrix is None:
        return
    if matrix.shape != (n_units, n_cols, n_cols):
        raise ValueError(f"penalty_matrix must have shape (U, P, P) = {(n_units, n_cols, n_cols)}"
                         f", got {matrix.shape}")
    if not np.all(np.isfinite(matrix)):
        raise ValueError("penalty_matrix must be finite")


@attrs.frozen(eq=False)
class Problem:
    """A Poisson GLM fitting problem on plain arrays.

    Parameters
    ----------
    X : array, shape (T, P)
        Design shared by all units (rows: time bins; columns: features).
        Stored as a C-contiguous, 64-byte aligned float array (copied once if
        it is not one already) so that fits can use it without copying.
    y : array, shape (T, U) or (T,)
        Spike counts per bin (non-negative). A 1-D ``y`` is one unit.
    column_mask : bool array, shape (U, P), optional
        ``column_mask[u, j]`` is False when unit ``u`` must not use column ``j``
        (its weight is then exactly 0), e.g. a unit's own coupling filter.
    offset : array, shape (T, U) or (T,), optional
        Known part of the linear predictor (log-rate), e.g. ``log(bin width)``.
    row_weight : array, shape (T,), optional
        Non-negative weight of each row; 0/1 selects rows (cross-validation
        folds, padding). The objective is a weighted *mean* over rows.
    column_groups : tuple of str, length P, optional
        The formula term each column belongs to (group lasso groups and
        per-term penalty strengths).
    unit_names, column_names : tuple of str, optional
        How warnings name the units (e.g. the TsGroup's ids) and the columns
        (e.g. ``"cyclic(hd, 12)[3]"``); default: their positions.
    penalty_matrix : array, shape (U, P, P), optional
        A quadratic penalty per unit added to the mean objective,
        ``0.5 * w' penalty_matrix[u] w`` (the smoothness penalties of the formula's terms with
        their strengths; see :mod:`glmformula.fitting.smoothing`). It adds to ``regularizer``.
    column_max : array, shape (P,), optional
        ``max |X[t, j]|`` over the rows of positive weight, where already known (NaN or inf
        where a column is not finite there): the solver's first pass then does not read
        ``X`` for it (:func:`block_stats`). Units fitted in groups on their own columns
        (:mod:`glmformula.fitting.groups`) take theirs from one pass over the whole design.
    """

    X: np.ndarray = attrs.field(converter=aligned)
    y: np.ndarray = attrs.field(converter=_y_converter)
    column_mask: np.ndarray | None = attrs.field(
        default=None, converter=_optional(lambda m: np.asarray(m, dtype=bool)))
    offset: np.ndarray | None = attrs.field(
        default=None, converter=_optional(lambda o: _as_float_array(o, "offset", (1, 2))))
    row_weight: np.ndarray | None = attrs.field(
        default=None, converter=_optional(lambda w: _as_float_array(w, "row_weight", (1,))))
    column_groups: tuple[str, ...] | None = attrs.field(
        default=None, converter=_optional(lambda g: tuple(str(x) for x in g)))
    unit_names: tuple | None = attrs.field(default=None, converter=_optional(tuple))
    column_names: tuple | None = attrs.field(default=None, converter=_optional(tuple))
    penalty_matrix: np.ndarray | None = attrs.field(
        default=None, converter=_optional(lambda m: np.asarray(m, dtype=float)))
    column_max: np.ndarray | None = attrs.field(
        default=None, converter=_optional(lambda m: np.asarray(m, dtype=float)))

    def __attrs_post_init__(self) -> None:
        T, P = self.X.shape
        if self.y.shape[0] != T:
            raise ValueError(f"X has {T} rows but y has {self.y.shape[0]}")
        U = self.y.shape[1]
        if self.column_mask is not None and self.column_mask.shape != (U, P):
            raise ValueError(f"column_mask must have shape (U, P) = {(U, P)}, "
                             f"got {self.column_mask.shape}")
        if self.offset is not None and self.offset.shape not in ((T,), (T, U), (T, 1)):
            raise ValueError(f"offset must have shape (T,) or (T, U) = {(T, U)}, "
                             f"got {self.offset.shape}")
        if self.row_weight is not None and self.row_weight.shape != (T,):
            raise ValueError(f"row_weight must have shape (T,) = {(T,)}, "
                             f"got {self.row_weight.shape}")
        if self.column_groups is not None and len(self.column_groups) != P:
            raise ValueError(f"column_groups must name the group of each of the {P} columns, "
                             f"got {len(self.column_groups)}")
        _check_penalty_matrix(self.penalty_matrix, U, P)
        if self.column_max is not None and self.column_max.shape != (P,):
            raise ValueError(f"column_max must have shape (P,) = {(P,)}, "
                             f"got {self.column_max.shape}")

    @property
    def n_rows(self) -> int:
        return self.X.shape[0]

    @property
    def n_cols(self) -> int:
        return self.X.shape[1]

    @property
    def n_units(self) -> int:
        return self.y.shape[1]


@attrs.frozen(eq=False)
class BlockedProblem:
    """A Poisson GLM fitting problem whose rows arrive in blocks (never all in memory).

    Parameters
    ----------
    blocks : callable
        Called once per pass over the data (a fit makes a few passes per iteration), it
        yields the row blocks in order: objects with ``X`` (rows, P), ``counts`` (rows, U),
        ``offset`` (rows,) or None and ``row_weight`` (rows,) (e.g.
        :class:`glmformula.graph.rows.RowBlock`). The first block fixes the block shape
        (kernels compile once); shorter blocks are padded with zero-weight rows, longer
        ones are an error.
    n_cols, n_units : int
        P and U.
    column_mask, column_groups, unit_names, column_names :
        As for :class:`Problem` (properties of the whole problem, not of a block).
    """

    blocks: object
    n_cols: int
    n_units: int
    column_mask: np.ndarray | None = attrs.field(
        default=None, converter=_optional(lambda m: np.asarray(m, dtype=bool)))
    column_groups: tuple[str, ...] | None = attrs.field(
        default=None, converter=_optional(lambda g: tuple(str(x) for x in g)))
    unit_names: tuple | None = attrs.field(default=None, converter=_optional(tuple))
    column_names: tuple | None = attrs.field(default=None, converter=_optional(tuple))
    penalty_matrix: np.ndarray | None = attrs.field(
        default=None, converter=_optional(lambda m: np.asarray(m, dtype=float)))

    def __attrs_post_init__(self) -> None:
        _check_penalty_matrix(self.penalty_matrix, self.n_units, self.n_cols)

    n_rows = 0  # unknown until a pass is made; the solver choice does not depend on it


class Block(NamedTuple):
    """Device arrays of one block of rows (or of all rows): the kernels' data argument.

    ``offset`` is (T, U) or (T, 1) (broadcast over units); padding rows carry
    ``rw = 0`` and contribute nothing to any sum.
    """

    X: jax.Array
    Y: jax.Array
    offset: jax.Array
    rw: jax.Array
    #: the rows' observation family (:class:`~glmformula.backend.families.Obs`: its name is
    #: static, its per-unit parameter an array)
    obs: Obs = POISSON
    #: ``X`` transposed, (P, T) row-major, where a solver keeps that copy
    #: (:func:`with_transposed_rows`): the gradient's product ``X.T @ r`` reads it as a plain
    #: product, and a pass then takes all rows at once instead of row chunks. Where the
    #: design arrived columns first (:func:`columns_first`) it is the only copy and ``X`` is
    #: None: only Newton's passes that form the linear predictor read such a block
    #: (:func:`poisson_model_sums_columns`)
    Xt: jax.Array | None = None


def rows_of(block: Block) -> int:
    """The rows of ``block``, whichever layout holds its design."""
    return block.X.shape[0] if block.X is not None else block.Xt.shape[1]


def columns_first(X: np.ndarray) -> bool:
    """Whether a host design is laid out columns first (Fortran order, aligned: its transpose
    reaches the device without a copy), as :mod:`glmformula.fitting.groups` copies a group's
    columns for Newton (:func:`poisson_model_sums_columns`)."""
    return bool(X.flags.f_contiguous and not X.flags.c_contiguous and X.size
                and X.ctypes.data % ALIGNMENT == 0)


def block_from_arrays(X, y, offset, row_weight, dtype, n_units: int, obs: Obs | None = None,
                      transposed: bool = False) -> Block:
    """Move one block's arrays to the device in ``dtype`` (filling in defaults; ``obs``: the
    observation family, default Poisson; ``transposed``: only ``X.T`` as :attr:`Block.Xt`, for
    a design laid out columns first, :func:`columns_first`)."""
    T = X.shape[0]
    design = dict(X=None, Xt=to_device(np.asarray(X).T, dtype)) if transposed \
        else dict(X=to_device(X, dtype))
    y = np.asarray(y)
    y = y[:, None] if y.ndim == 1 else y
    if offset is None:
        off = jnp.zeros((T, 1), dtype)
    else:
        off = jnp.asarray(offset, dtype)
        off = off[:, None] if off.ndim == 1 else off
    rw = jnp.ones((T,), dtype) if row_weight is None else jnp.asarray(row_weight, dtype)
    if obs is None or is_poisson(obs):
        return Block(Y=jnp.asarray(y, dtype), offset=off, rw=rw, **design)
    theta = None if obs.theta is None else jnp.asarray(obs.theta, dtype)
    return Block(Y=jnp.asarray(y, dtype), offset=off, rw=rw, obs=Obs(obs.name, theta), **design)


# --------------------------------------------------------------------------- the rate


def eta_cap(dtype) -> float:
    """Linear predictor above which ``exp`` is continued by a quadratic.

    ``exp(30)`` in float32 leaves ample headroom before an overflow in a sum of
    1e7 rows times features of size 1e3; ``exp(100)`` does the same in float64.
    No sensible spike rate (spikes per bin) is anywhere near either.
    """
    return 30.0 if jnp.dtype(dtype) == jnp.float32 else 100.0


def _rate(eta):
    """Rate as seen by the loss, its derivative and its curvature, all overflow-safe.

    Above the cap ``c`` the rate ``exp(eta)`` is continued by its second-order
    Taylor polynomial ``e^c (1 + d + d^2/2)``, ``d = eta - c``: the loss stays
    convex and C2, so a Newton step from an absurd start (``eta = 200``) lands
    back near ``c`` in one step; clipping ``eta`` instead would make the loss flat
    (non-convex) and a linear continuation would have no curvature, so Newton
    would crawl back by one nat per iteration.

    Returns
    -------
    rate_loss, rate_grad (d rate_loss / d eta), rate_curv (its derivative)
    """
    cap = eta_cap(eta.dtype)
    r = jnp.exp(jnp.minimum(eta, cap))
    # no upper clamp on d: a clamp would make the loss flat (unbounded below in
    # -y*eta) far out; an overflow to +inf is harmless, line searches reject it
    d = jnp.maximum(eta - cap, 0.0)
    above = eta > cap
    rate_loss = jnp.where(above, r * (1.0 + d + 0.5 * d * d), r)
    rate_grad = jnp.where(above, r * (1.0 + d), r)
    return rate_loss, rate_grad, r


# Below this many units the Poisson kernels keep the plain formulation of _rate (selects, one
# stacked reduction): for (T, 1) to (T, 8) predictors XLA's CPU backend emits it as fast or
# faster than the formulations below (measured: docs/performance_decisions.md, 'Per-row
# Poisson kernels').
_FUSED_MIN_UNITS = 16
#: bytes of X and per-row arrays per chunk of value_grad_sums (same section: 0.5-2 MiB and
#: 32 MiB were slower)
_SUMS_CHUNK_BYTES = 8 << 20

_ROWS = (((0,), (0,)), ((), ()))  # dot_general dimensions of X.T @ R (contract the rows)


def _rows_product(X, R, Xt=None):
    """``X.T @ R`` (P, U): from the transposed copy ``Xt`` (P, T) where there is one."""
    return lax.dot_general(X, R, _ROWS) if Xt is None else Xt @ R


def _rate_parts(eta):
    """:func:`_rate`'s ``rate_loss, rate_grad, rate`` without a select: below the cap ``d = 0``
    and the polynomial factors are exactly 1, so the values are bit-identical to
    :func:`_rate`'s.

    In float64 XLA's CPU backend computes :func:`_rate`'s two-branch select ~3.5x slower than
    this (26 -> 7 ms for a (90618, 32) loss sum; docs/performance_decisions.md, 'Per-row
    Poisson kernels')."""
    cap = eta_cap(eta.dtype)
    r = jnp.exp(jnp.minimum(eta, cap))
    d = jnp.maximum(eta - cap, 0.0)
    return r * (1.0 + d + 0.5 * d * d), r * (1.0 + d), r


def _rate_loss(eta):
    """``rate_loss`` of :func:`_rate` without a select (:func:`_rate_parts`)."""
    return _rate_parts(eta)[0]


def _poisson_sums(X, Y, rw, eta, Xt=None):
    """:func:`value_grad_sums` of the Poisson family on rows that fit in cache (one chunk).

    The common case (no ``eta`` above the cap) skips the cap arithmetic through a
    ``lax.cond``; the rate is materialised once behind an optimization barrier, so that XLA
    does not recompute ``exp`` in every reduction and product reading it. Both paths give
    exactly :func:`_rate`'s rates (below the cap ``exp(min(eta, c)) = exp(eta)`` and the
    polynomial factors are 1). Measured on (90618, 20, 32) float64 rows: 61 ms for the
    stacked sums (:func:`_stacked_sums`), 38 ms for this on all rows, 13-21 ms in chunks of
    :func:`_sums_chunk` rows (docs/performance_decisions.md, 'Per-row Poisson kernels').
    """
    w = rw[:, None]

    def sums(rate_loss, rate_grad, eta):
        resid = w * (rate_grad - Y)
        return (jnp.sum(w * (rate_loss - Y * eta), axis=0), _rows_product(X, resid, Xt),
                jnp.sum(resid, axis=0), jnp.sum(w * (rate_loss + Y * jnp.abs(eta)), axis=0))

    def capped(eta):
        cap = eta_cap(eta.dtype)
        r = lax.optimization_barrier(jnp.exp(jnp.minimum(eta, cap)))
        d = jnp.maximum(eta - cap, 0.0)  # 0 below the cap: the factors below are exactly 1
        return sums(r * (1.0 + d + 0.5 * d * d), r * (1.0 + d), eta)

    def uncapped(eta):
        r = lax.optimization_barrier(jnp.exp(eta))
        return sums(r, r, eta)

    return lax.cond(jnp.any(eta > eta_cap(eta.dtype)), capped, uncapped, eta)


def _sums_chunk(n_cols: int, n_units: int, itemsize: int) -> int:
    """Rows per chunk of :func:`value_grad_sums` (populations): ~``_SUMS_CHUNK_BYTES`` of
    X and of the chunk's per-row arrays, which then stay in cache from ``exp`` to ``X.T @
    resid``."""
    row_bytes = (n_cols + 3 * n_units) * itemsize
    return int(np.clip(_SUMS_CHUNK_BYTES // max(row_bytes, 1), 256, 16384))


def _chunked_sums(X, Y, rw, eta, chunk: int):
    """:func:`_poisson_sums` accumulated over row chunks of ``chunk`` rows (static)."""
    T, P = X.shape
    U = eta.shape[1]
    if T <= chunk:
        return _poisson_sums(X, Y, rw, eta)
    n_full, rem = _row_chunks(T, chunk)

    def body(i, acc):
        part = lambda a: lax.dynamic_slice_in_dim(a, i * chunk, chunk)
        sums = _poisson_sums(part(X), part(Y), part(rw), part(eta))
        return tuple(a + b for a, b in zip(acc, sums))

    dt = eta.dtype
    zero = (jnp.zeros((U,), dt), jnp.zeros((P, U), dt), jnp.zeros((U,), dt), jnp.zeros((U,), dt))
    acc = lax.fori_loop(0, n_full, body, zero)
    if rem:
        tail = slice(n_full * chunk, T)
        sums = _poisson_sums(X[tail], Y[tail], rw[tail], eta[tail])
        acc = tuple(a + b for a, b in zip(acc, sums))
    return acc


#: A line search whose full step some units did not take forms their loss and gradient again
#: at the step they took. Where at most this many units of a population at least twice as wide
#: backtracked, that pass is for them only (:func:`resum_units`): on the real coupled
#: head-direction model (226k x 268 float64) 53 ms for 4 units against 221 ms for all 32, and
#: its 32-unit iterations backtrack 1-3 units in 14 of 24 iterations
#: (docs/performance_decisions.md, 'A line search's second pass for the backtracked units only').
RESUM_UNITS = 4


def resum_units(block: Block, eta, sums, stale):
    """``sums`` (:func:`value_grad_sums` of every unit) with those of the units ``stale``
    ((U,) bool) formed again at ``eta``: in one pass for those units only where they are at
    most :data:`RESUM_UNITS` of a Poisson population of at least twice as many, else one pass
    for all units. Units not ``stale`` keep their sums (they must be ``eta``'s already)."""
    P = block.X.shape[1]
    U = eta.shape[1]

    def everyone():
        return value_grad_sums(block.X, block.Y, block.rw, eta, block.obs, block.Xt)

    if U < 2 * RESUM_UNITS or P == 0 or not is_poisson(block.obs):
        return everyone()

    def few():
        units = jnp.nonzero(stale, size=RESUM_UNITS, fill_value=U)[0]  # padding: U (dropped)
        take = jnp.minimum(units, U - 1)
        part = _poisson_sums(block.X, block.Y[:, take], block.rw, eta[:, take], block.Xt) \
            if block.Xt is not None else \
            _chunked_sums(block.X, block.Y[:, take], block.rw, eta[:, take],
                          _sums_chunk(P, RESUM_UNITS, eta.dtype.itemsize))
        return tuple(whole.at[..., units].set(new, mode="drop")
                     for whole, new in zip(sums, part))

    return lax.cond(jnp.sum(stale) <= RESUM_UNITS, few, everyone)


def loss_sum(eta, Y, rw, obs: Obs | None = None):
    """Sum over rows of ``rw * (rate - y * eta)``, shape (U,) (``obs``: another family's loss,
    :mod:`.families`)."""
    if not is_poisson(obs):
        return jnp.sum(rw[:, None] * fam.row_loss(obs, eta, Y), axis=0)
    if eta.shape[1] >= _FUSED_MIN_UNITS:
        rate = _rate_loss(eta)
    else:
        rate, _, _ = _rate(eta)
    return jnp.sum(rw[:, None] * (rate - Y * eta), axis=0)


def loss_sums_along(eta, xi, Y, rw, steps, obs: Obs | None = None):
    """Loss sums at ``eta + a * xi`` for each step ``a`` in ``steps`` (K, U) → (K, U).

    Line searches only need this: ``eta`` is linear in the parameters, so no
    matrix product is needed per trial step.
    """
    return jax.vmap(lambda a: loss_sum(eta + a[None, :] * xi, Y, rw, obs))(steps)


def value_grad_sums(X, Y, rw, eta, obs: Obs | None = None, Xt=None):
    """Loss sum, gradient sums and loss magnitude at ``eta`` (``obs``: the observation family,
    default Poisson; see :mod:`.families` for the others' losses; ``Xt``: the transposed copy
    of ``X``, :attr:`Block.Xt`, if kept: all rows in one product with it).

    Returns
    -------
    loss : (U,)  ``sum rw (rate - y eta)``
    grad_w : (P, U)  ``X.T @ (rw (rate - y))``: one matrix product for all units
    grad_b : (U,)
    magnitude : (U,)  ``sum rw (rate + y |eta|)``: the size of the terms that cancel
        in ``loss``, used to set the rounding slack of line searches
    """
    if not is_poisson(obs):
        loss, mag, d = fam.row_parts(obs, eta, Y)
        resid = rw[:, None] * d
        U = eta.shape[1]
        sums = jnp.sum(jnp.concatenate([rw[:, None] * loss, rw[:, None] * mag], axis=1), axis=0)
        grad_w = _rows_product(X, resid, Xt)
        return sums[:U], grad_w, jnp.sum(resid, axis=0), sums[U:]
    if Xt is not None:
        return _poisson_sums(X, Y, rw, eta, Xt)
    T, P = X.shape
    U = eta.shape[1]
    if U >= _FUSED_MIN_UNITS:
        return _chunked_sums(X, Y, rw, eta, _sums_chunk(P, U, eta.dtype.itemsize))
    return _stacked_sums(X, Y, rw, eta)


def _stacked_sums(X, Y, rw, eta):
    """:func:`value_grad_sums` of the Poisson family for few units: the three row sums in one
    reduction of a stacked (T, 3U) array (docs/performance_decisions.md, 'Fused row sums')."""
    rate, r, _ = _rate(eta)
    resid = rw[:, None] * (r - Y)
    U = eta.shape[1]
    rows = jnp.concatenate([rw[:, None] * (rate - Y * eta), rw[:, None] * (rate + Y * jnp.abs(eta)),
                            resid], axis=1)
    sums = jnp.sum(rows, axis=0)
    grad_w = lax.dot_general(X, resid, _ROWS)
    return sums[:U], grad_w, sums[2 * U:], sums[U:2 * U]


def step_chunk(n_cols: int, itemsize: int) -> int:
    """Rows per chunk of :func:`step_sums`: ~2 MiB of X, which stays in cache between its two
    products, but at least 2,048 rows (below that the two products are too small to run
    efficiently) unless that is more than 8 MiB of X (docs/performance_decisions.md, 'Fused
    line-search pass')."""
    row_bytes = max(n_cols * itemsize, 1)
    floor = min(2048, max((1 << 23) // row_bytes, 256))
    return int(np.clip((1 << 21) // row_bytes, floor, 16384))


def step_sums(X, Y, rw, eta, dW, db, chunk: int, obs: Obs | None = None, Xt=None):
    """One read of X for a step from ``eta``: ``xi = X @ dW + db`` (T, U) and
    :func:`value_grad_sums` at ``eta + xi``.

    The rows are taken in chunks (``chunk``, static) so that each chunk of X is still in
    cache for the second product (``X.T @ r``) after the first (``X @ dW``): the two products
    cost one pass over memory, where XLA's transposed product over all rows is slow (measured:
    docs/performance_decisions.md, 'Fused line-search pass'). With the transposed copy ``Xt``
    (:attr:`Block.Xt`) both are plain products over all rows: two reads of the design, each
    near the memory's or the cores' speed (same document, 'L-BFGS reads a transposed copy of
    the design').

    Returns
    -------
    xi : (T, U), and ``(loss, grad_w, grad_b, magnitude)`` at ``eta + xi``.
    """
    U = dW.shape[1]
    if Xt is not None:
        xi = X @ dW + db[None, :]
        return xi, value_grad_sums(X, Y, rw, eta + xi, obs, Xt)

    def sums_of(x, y, w, e):
        xi = x @ dW + db[None, :]
        if is_poisson(obs) and U >= _FUSED_MIN_UNITS:
            return xi, _poisson_sums(x, y, w, e + xi)  # a chunk already: no chunks within
        return xi, value_grad_sums(x, y, w, e + xi, obs)

    return chunked_step(sums_of, X, Y, rw, eta, chunk, U)


def chunked_step(sums_of, X, Y, rw, eta, chunk: int, n_units: int):
    """``sums_of(x, y, w, e) -> (xi, (loss, grad_w, grad_b, magnitude))`` over the rows in
    chunks of ``chunk`` (static): each chunk's ``xi`` written into (T, U), its sums added."""
    T, P = X.shape
    if T <= chunk:
        return sums_of(X, Y, rw, eta)
    n_full, rem = _row_chunks(T, chunk)

    def body(i, carry):
        xi_all, acc = carry
        start = i * chunk
        part = lambda a: lax.dynamic_slice_in_dim(a, start, chunk)
        xi, sums = sums_of(part(X), part(Y), part(rw), part(eta))
        acc = tuple(a + b for a, b in zip(acc, sums))
        return lax.dynamic_update_slice_in_dim(xi_all, xi, start, 0), acc

    U, dt = n_units, X.dtype
    zero = (jnp.zeros((U,), dt), jnp.zeros((P, U), dt), jnp.zeros((U,), dt), jnp.zeros((U,), dt))
    xi_all, acc = lax.fori_loop(0, n_full, body, (jnp.zeros((T, U), dt), zero))
    if rem:
        tail = slice(n_full * chunk, T)
        xi, sums = sums_of(X[tail], Y[tail], rw[tail], eta[tail])
        xi_all = xi_all.at[tail].set(xi)
        acc = tuple(a + b for a, b in zip(acc, sums))
    return xi_all, acc


def curvature(eta, rw, Y=None, obs: Obs | None = None):
    """Hessian row weights ``rw * d^2 rate / d eta^2`` (T, U) (``e^cap`` above the cap); for
    another family (``obs``) the observed curvature of its loss, which reads ``Y``."""
    if not is_poisson(obs):
        return rw[:, None] * fam.row_curvature(obs, eta, Y)
    return rw[:, None] * _rate(eta)[2]


def fisher_curvature(eta, rw, obs: Obs | None = None):
    """Row weights of the Fisher information ``rw * (dmu/deta)^2 / V(mu)`` at unit dispersion
    (T, U): :func:`curvature` for Poisson (canonical link: observed = expected)."""
    if is_poisson(obs):
        return curvature(eta, rw)
    return rw[:, None] * fam.row_fisher(obs, eta)


# --------------------------------------------------------------------------- second order


def hessian_strategy(n_units: int, n_cols: int) -> str:
    """How to form the U Hessians ``X.T diag(d_u) X`` (static choice).

    ``"pairs"`` forms the products ``x_i x_j`` (i <= j) of a chunk of rows once
    and multiplies them by all units' weights in ONE matrix product: it uses the
    shared design once for the whole population and does half the flops
    (symmetry). Forming the ``P^2 / 2`` pair products costs about as much as the
    Hessians of ``P / 10 + 4`` units by ``"per_unit"`` (one BLAS product per unit,
    whose square products run near the CPU's peak), so pairs pay from that many
    units on: from 6 units at P = 20, 10 at P = 51, 16 at P = 120, 31 at P = 268
    (measured: docs/performance_decisions.md, 'Hessian strategy: pairs vs per unit').
    A ``vmap`` or ``einsum`` over units was slower than both.
    """
    return "pairs" if n_units >= PAIRS_MIN_UNITS + n_cols / PAIRS_COLUMNS_PER_UNIT \
        else "per_unit"


#: :func:`hessian_strategy`: pair products pay from ``PAIRS_MIN_UNITS + P /
#: PAIRS_COLUMNS_PER_UNIT`` units on.
PAIRS_MIN_UNITS, PAIRS_COLUMNS_PER_UNIT = 4, 10


#: Hessians that only shape a step (L-BFGS preconditioners) on a large design are formed from
#: about this many rows (every ``curvature_stride``-th row).
CURVATURE_SAMPLE_ROWS = 100_000


def curvature_stride(n_rows: int) -> int:
    """Row stride of a sampled Hessian pass: the nearest integer to ``n_rows /``
    :data:`CURVATURE_SAMPLE_ROWS`, which keeps 3/4 to 3/2 of that many rows (all rows below
    1.5 times it; rounding rather than flooring keeps a cross-validation fold's training rows,
    compacted by ``engine._fitted_rows``, at its full fit's stride). Rows of a recording are
    strongly correlated in time, so every ``k``-th row times ``k`` is close to the full sum
    (docs/performance_decisions.md, 'L-BFGS refresh interval')."""
    return max(1, round(int(n_rows) / CURVATURE_SAMPLE_ROWS))


#: Above this many multiply-adds per Hessian pass (rows x units x p^2), REML's Hessians and Hessian-
#: change slopes, and the Newton fit that confirms its answer, are formed with float32 products from
#: every ``curvature_stride``-th row (an estimate of the sum over all rows; every row below
#: 200,000). The gradient stays exact in float64, so the weights still end at the exact penalised
#: fit; the strengths are those of the sampled curvature: on the real coupled model (32 cells, 269
#: weights each, 226,358 rows) within 6e-5 in log-strength of the exact criterion's (median; 0.077
#: at most, for a removed term whose V is flat) and edf within 0.09%, in 102 s instead of 223 s
#: (docs/performance_decisions.md, 'REML on wide shared designs: sampled float32 curvature').
SAMPLED_CURVATURE_ABOVE = 2e10


def curvature_sampling(n_rows: int, n_units: int, p: int) -> dict:
    """Static settings of the curvature passes (``stride``, ``compute``) for a problem of this
    size: all rows in float64 up to :data:`SAMPLED_CURVATURE_ABOVE` multiply-adds per pass."""
    if float(n_rows) * n_units * p * p <= SAMPLED_CURVATURE_ABOVE:
        return {"stride": 1, "compute": None}
    return {"stride": curvature_stride(n_rows), "compute": "float32"}


def sampled_hessian_sum(X, D, strategy: str, stride: int = 1, compute=None):
    """:func:`hessian_sum` from every ``stride``-th row of ``X`` and ``D``, times ``stride``
    (an estimate of the sum over all rows; exact for ``stride = 1``)."""
    if stride == 1:
        return hessian_sum(X, D, strategy, compute)
    return stride * hessian_sum(X[::stride], D[::stride], strategy, compute)


def _row_chunks(T: int, chunk: int):
    """Static (start, size) of full chunks plus the remainder."""
    n_full = T // chunk
    rem = T - n_full * chunk
    return n_full, rem


def _xtdx(X, d, chunk: int = 8192, compute=None, intercept: bool = False):
    """``X.T @ (d[:, None] * X)`` accumulated over row chunks (P, P); with ``intercept`` that
    of ``[X, 1]`` (P+1, P+1), the ones column last, from the same cached chunks (a separate
    ``d @ X`` over all rows is another pass).

    Chunks keep the weighted copy of X in cache, faster than one product over all rows
    (measured: docs/performance_decisions.md, 'Hessians from row chunks, intercept
    included'). ``compute`` (a dtype, static) casts each chunk before its product (sums over
    chunks stay in ``X.dtype``): float32 products are faster than float64 on CPU, good
    enough for a Hessian that only shapes a step (see :func:`hessian_sum`).
    """
    T, P = X.shape
    dn = (((0,), (0,)), ((), ()))
    cast = (lambda a: a) if compute is None else (lambda a: a.astype(compute))
    n = P + 1 if intercept else P

    def product(x, w):
        x, w = cast(x), cast(w)
        if intercept:
            x = jnp.concatenate([x, jnp.ones((x.shape[0], 1), x.dtype)], axis=1)
        return lax.dot_general(x * w[:, None], x, dn).astype(X.dtype)

    if T <= chunk:
        return product(X, d)
    n_full, rem = _row_chunks(T, chunk)

    def body(i, acc):
        x = lax.dynamic_slice_in_dim(X, i * chunk, chunk)
        w = lax.dynamic_slice_in_dim(d, i * chunk, chunk)
        return acc + product(x, w)

    acc = lax.fori_loop(0, n_full, body, jnp.zeros((n, n), X.dtype))
    if rem:
        acc = acc + product(X[n_full * chunk :], d[n_full * chunk :])
    return acc


def _xtdx_pairs(X, D, compute=None):
    """``X.T diag(D[:, u]) X`` for all units via products of column pairs (U, P, P).

    ``compute``: as in :func:`_xtdx` (chunk products in that dtype).
    """
    T, P = X.shape
    U = D.shape[1]
    iu, ju = np.triu_indices(P)
    n_pairs = iu.size
    # ~32 MiB of pair products per chunk: big enough for an efficient GEMM,
    # small enough to stay near the cache and never blow up memory.
    chunk = int(np.clip((1 << 22) // n_pairs, 16, 4096))
    dn = (((0,), (0,)), ((), ()))
    cast = (lambda a: a) if compute is None else (lambda a: a.astype(compute))

    def pairs(x, d):
        x, d = cast(x), cast(d)
        return lax.dot_general(x[:, iu] * x[:, ju], d, dn).astype(X.dtype)  # (n_pairs, U)

    if T <= chunk:
        flat = pairs(X, D)
    else:
        n_full, rem = _row_chunks(T, chunk)

        def body(i, acc):
            x = lax.dynamic_slice_in_dim(X, i * chunk, chunk)
            d = lax.dynamic_slice_in_dim(D, i * chunk, chunk)
            return acc + pairs(x, d)

        flat = lax.fori_loop(0, n_full, body, jnp.zeros((n_pairs, U), X.dtype))
        if rem:
            flat = flat + pairs(X[n_full * chunk :], D[n_full * chunk :])
    return _symmetric_from_pairs(flat, P)


def _symmetric_from_pairs(flat, n: int):
    """The symmetric (U, n, n) matrices whose upper triangles (``np.triu_indices(n)`` order)
    are the rows of ``flat`` (n (n+1) / 2, U)."""
    iu, ju = np.triu_indices(n)
    H = jnp.zeros((flat.shape[1], n, n), flat.dtype).at[:, iu, ju].set(flat.T)
    return H + jnp.triu(H, 1).transpose(0, 2, 1)


def hessian_sum(X, D, strategy: str, compute=None):
    """Row sums of the Hessian of every unit, intercept last: (U, P+1, P+1).

    Parameters
    ----------
    X : (T, P) design
    D : (T, U) curvature weights (:func:`curvature`)
    strategy : {"pairs", "per_unit"}, static (:func:`hessian_strategy`)
    compute : dtype, optional, static
        Form the ``X.T diag(d) X`` products of row chunks in this dtype
        (``float32``: faster on CPU, relative error ~1e-6; measured:
        docs/performance_decisions.md, 'float32 Hessian products'), summing chunks in
        ``X.dtype``. For Hessians that only shape a step (early Newton
        iterations, L-BFGS preconditioners): the fixed point of a solver is set
        by the exact gradient, never by this.
    """
    if compute is not None and jnp.dtype(compute) == X.dtype:
        compute = None
    if strategy != "pairs":
        return lax.map(lambda d: _xtdx(X, d, compute=compute, intercept=True), D.T)
    H = _xtdx_pairs(X, D, compute)
    xd = lax.dot_general(D, X, (((0,), (0,)), ((), ())))  # (U, P)
    dd = jnp.sum(D, axis=0)
    top = jnp.concatenate([H, xd[:, :, None]], axis=2)
    bottom = jnp.concatenate([xd, dd[:, None]], axis=1)[:, None, :]
    return jnp.concatenate([top, bottom], axis=1)


def fused_model_applies(obs, strategy: str, n_units: int) -> bool:
    """Whether :func:`poisson_model_sums` serves a problem: the Poisson family, Hessians by
    column pairs, at least :data:`FUSED_MODEL_MIN_UNITS` units (where the separate passes'
    (T, U) arrays cost most; measured in :func:`poisson_model_sums`)."""
    return is_poisson(obs) and strategy == "pairs" and n_units >= FUSED_MODEL_MIN_UNITS


#: :func:`fused_model_applies`: fewer units gained nothing (8 units of 30 columns: 36 against
#: 34 ms; one unit's 20 columns: 15-24 against 18-20 ms, by chunk size).
FUSED_MODEL_MIN_UNITS = 16


#: What :func:`poisson_model_sums` can form, in the order it returns them.
MODEL_SUMS = ("loss", "grad", "hessian", "magnitude")


def poisson_model_sums(X, Y, rw, offset, W, b, sums: tuple = MODEL_SUMS, compute=None):
    """Poisson sums at weights ``W`` (P, U) and intercepts ``b`` (U,), intercept last, in ONE
    pass over row chunks: each chunk's linear predictor, rates, residuals and curvature
    weights are formed and used while its rows are in cache, the Hessians from the chunk's
    column-pair products (the intercept a column of the chunk) in one matrix product for all
    units. ``sums`` (static) names the sums wanted, in the order of :data:`MODEL_SUMS`:
    ``"loss"`` (U,), ``"grad"`` (P+1, U), ``"hessian"`` (U, P+1, P+1), ``"magnitude"`` (U,)
    (:func:`value_grad_sums`' fourth sum); ``compute`` (static) forms the Hessian's products
    in that dtype (as :func:`hessian_sum`'s).

    The same sums as :func:`value_grad_sums` and :func:`hessian_sum` (``"pairs"``) of
    :func:`curvature` (to rounding; the rates as :func:`_rate`'s, bit for bit below the cap),
    which materialise the (T, U) predictor and weights and read them in every pass. For
    REML's exact passes on narrow designs and Newton's passes there (the linear predictor
    formed, not stored: :func:`~glmformula.backend.newton.second_order_loop`), where
    :func:`fused_model_applies`. Measured (random arrays of the real recordings' shapes,
    float64, ms, fused against separate): 226,358 rows x 12 columns x 32 units 61-81 against
    129-160; 1e5 x 50 x 16 176 against 200; 1e5 x 99 x 20 690 against 909
    (docs/performance_decisions.md, 'REML: one pass for the model on narrow designs'); the
    loss and gradient alone 33-37 ms against 86 ms for :func:`step_sums` (session 29).
    """
    T, P = X.shape
    U = W.shape[1]
    iu, ju = np.triu_indices(P + 1)
    hessian = "hessian" in sums
    if compute is not None and jnp.dtype(compute) == X.dtype:
        compute = None
    # ~_SUMS_CHUNK_BYTES of the chunk's design, column-pair products and per-row arrays (at
    # most 8,192 rows: larger chunks were slower)
    chunk = min(_sums_chunk(P + 1 + (len(iu) if hessian else 0), U, X.dtype.itemsize), 8192)
    offset = jnp.broadcast_to(offset, (T, offset.shape[1]))

    def part(x, y, w, off):
        xi = jnp.concatenate([x, jnp.ones((x.shape[0], 1), x.dtype)], axis=1)
        eta = x @ W + b[None, :] + off
        rate_loss, rate_grad, r = _rate_parts(eta)
        w = w[:, None]
        out = {}
        if "loss" in sums:
            out["loss"] = jnp.sum(w * (rate_loss - y * eta), axis=0)
        if "grad" in sums:
            out["grad"] = lax.dot_general(xi, w * (rate_grad - y), _ROWS)
        if hessian:
            pairs, d = xi[:, iu] * xi[:, ju], w * r
            if compute is not None:
                pairs, d = pairs.astype(compute), d.astype(compute)
            out["hessian"] = lax.dot_general(pairs, d, _ROWS).astype(x.dtype)
        if "magnitude" in sums:
            out["magnitude"] = jnp.sum(w * (rate_loss + y * jnp.abs(eta)), axis=0)
        return tuple(out[name] for name in sums)

    acc = _summed_over_chunks(part, X, (Y, rw, offset), chunk)
    return tuple(_symmetric_from_pairs(a, P + 1) if name == "hessian" else a
                 for name, a in zip(sums, acc))


#: Bytes of one column chunk of a design laid out columns first (``(P + 1) x chunk``):
#: measured on 226k x 21 float64 (one unit's loss, gradient and Hessian), 1,024 columns
#: (172 kB, in the core's 2 MB cache) 11 ms, 512 11.4 ms, 2,048 17 ms.
_COLUMN_CHUNK_BYTES = 192 * 1024


def poisson_model_sums_columns(Xt, Y, rw, offset, W, b, sums: tuple = MODEL_SUMS,
                               compute=None):
    """:func:`poisson_model_sums` of a design laid out columns first (``Xt``: (P, T)): the
    same sums, formed per chunk of ``Xt``'s columns (rows of the design) while they are in
    cache, each unit's Hessian as one product ``(x d) x'`` of the chunk.

    For Newton on a few units' own columns (:mod:`glmformula.fitting.groups` copies them
    this way): XLA's products of a row-major design over its rows (``X.T @ r``, ``X.T diag(d)
    X``) run far below the cores' speed for a narrow design, its products of a columns-first
    one near it. Measured (BACKEND ONLY, 226k x 21 float64, one unit, ms): the loss and
    gradient 2.4 against 10-15, with the Hessian 11 (7 with ``compute=float32``) against
    19 for the Hessian alone (docs/performance_decisions.md, 'Newton on a design laid out
    columns first').
    """
    P, T = Xt.shape
    hessian = "hessian" in sums
    if compute is not None and jnp.dtype(compute) == Xt.dtype:
        compute = None
    chunk = int(np.clip(2 ** int(np.log2(max(_COLUMN_CHUNK_BYTES // ((P + 1) * Xt.dtype.itemsize),
                                                 1))), 256, 8192))
    offset = jnp.broadcast_to(offset, (T, offset.shape[1]))

    def part(x, y, w, off):  # x (P, n); y, off (n, U); w (n,)
        eta = W.T @ x + (b[:, None] + off.T)  # (U, n)
        y = y.T
        rate_loss, rate_grad, r = _rate_parts(eta)
        out = {}
        if "loss" in sums:
            out["loss"] = jnp.sum(w * (rate_loss - y * eta), axis=1)
        if "grad" in sums:
            resid = w * (rate_grad - y)
            out["grad"] = jnp.concatenate([x @ resid.T, jnp.sum(resid, axis=1)[None, :]], axis=0)
        if hessian:
            d = w * r
            xc, dc = (x, d) if compute is None else (x.astype(compute), d.astype(compute))
            H = lax.dot_general(xc[None, :, :] * dc[:, None, :], xc, (((2,), (1,)), ((), ())))
            xd = (dc @ xc.T).astype(x.dtype)  # (U, P): the intercept's row
            H = jnp.concatenate([H.astype(x.dtype), xd[:, :, None]], axis=2)
            bottom = jnp.concatenate([xd, jnp.sum(d, axis=1)[:, None]], axis=1)
            out["hessian"] = jnp.concatenate([H, bottom[:, None, :]], axis=1)
        if "magnitude" in sums:
            out["magnitude"] = jnp.sum(w * (rate_loss + y * jnp.abs(eta)), axis=1)
        return tuple(out[name] for name in sums)

    return _summed_over_chunks(part, Xt, (Y, rw, offset), chunk, design_axis=1)


def _summed_over_chunks(part, X, row_arrays: tuple, chunk: int, design_axis: int = 0) -> tuple:
    """``part(x, *arrays)`` of every chunk of ``chunk`` rows, summed (a tuple of sums): ``x``
    the chunk of the design ``X`` (its rows along ``design_axis``: 0 laid out in rows, 1
    columns first), ``arrays`` the chunk of each of ``row_arrays`` (rows first); full chunks in
    a loop, the remainder last."""
    T = X.shape[design_axis]

    def chunk_at(start, size):
        return (lax.dynamic_slice_in_dim(X, start, size, axis=design_axis),
                *(lax.dynamic_slice_in_dim(a, start, size) for a in row_arrays))

    def add(acc, sums):
        return tuple(a + s for a, s in zip(acc, sums))

    n_full, rem = _row_chunks(T, chunk)
    acc = tuple(jnp.zeros(a.shape, a.dtype) for a in jax.eval_shape(part, *chunk_at(0, 1)))
    if n_full:
        acc = lax.fori_loop(0, n_full, lambda i, acc: add(acc, part(*chunk_at(i * chunk, chunk))),
                            acc)
    if rem:
        acc = add(acc, part(*chunk_at(n_full * chunk, rem)))
    return acc


def gram_sum(X, rw):
    """Weighted Gram matrix of ``[X, 1]`` summed over rows, intercept last: (P+1, P+1)."""
    return _xtdx(X, rw, intercept=True)


def linear_predictor(block: Block, W, b):
    """``X @ W + b + offset`` (T, U)."""
    return block.X @ W + b[None, :] + block.offset


# --------------------------------------------------------------------------- block kernels
# The same sums, starting from parameters instead of eta: what a pass over row
# blocks calls (eta of a block is recomputed, never stored).


def block_stats(block: Block, columns: bool = True):
    """Sums needed before fitting: total weight, spikes, offset mass, column range
    (``columns``, static; False: zeros in its place, ``X`` not read, for a caller that knows
    it: :attr:`Problem.column_max`).

    Returns ``n (), spikes (U,), sum rw exp(offset) (U,), max |x| (P,) (in the
    slot of a sum: positive iff the column is non-zero), max |x| (P,),
    non-finite data (bool), negative counts or weights (bool)`` (the first four
    add over blocks, the last three combine with ``maximum`` / ``or``).
    Checking the data here, on the device, saves a host pass over ``X``.

    One reduction reads ``X`` (the only large input): its column maxima, over
    the rows with positive weight, give the empty columns, the column ranges
    (separation warnings) and, since inf and mostly NaN propagate into them (``inf *
    0`` is NaN for unweighted rows), the validity of ``X``: several times faster
    than separate reductions (measured: docs/performance_decisions.md, 'Block
    statistics in one reduction'). XLA's CPU maximum over the rows skips an isolated NaN
    (one in 9,001 rows gave the column's largest finite value); a NaN-aware reduction made
    this pass 6-10x slower, so the solver's objective, NaN then, shows it instead
    (``backend.solve``).
    """
    rw = block.rw
    n = jnp.sum(rw)
    spikes = rw @ block.Y
    off_mass = rw @ jnp.exp(jnp.minimum(block.offset, eta_cap(rw.dtype)))
    # a product with the 0/1 row selector, not jnp.where: XLA's CPU select with a
    # broadcast is slower here (measured: same section of docs/performance_decisions.md)
    used = (rw > 0).astype(rw.dtype)
    if block.X is None:  # the design columns first (Block.Xt)
        col_max = (jnp.max(jnp.abs(block.Xt * used[None, :]), axis=1) if columns
                   else jnp.zeros(block.Xt.shape[0], rw.dtype))
    else:
        col_max = (jnp.max(jnp.abs(block.X * used[:, None]), axis=0)
                   if columns else jnp.zeros(block.X.shape[1], rw.dtype))
    bad = (
        ~jnp.all(jnp.isfinite(col_max))
        | ~jnp.all(jnp.isfinite(jnp.sum(block.Y, axis=0)))
        | ~jnp.all(jnp.isfinite(jnp.sum(block.offset, axis=0)))
        | ~jnp.isfinite(n)
    )
    negative = (jnp.min(block.Y) < 0) | (jnp.min(rw) < 0)
    return n, spikes, jnp.broadcast_to(off_mass, spikes.shape), col_max, col_max, bad, negative


def block_value_grad_hessian(block: Block, W, b, strategy: str):
    eta = linear_predictor(block, W, b)
    loss, gw, gb, mag = value_grad_sums(block.X, block.Y, block.rw, eta, block.obs)
    return loss, gw, gb, mag, hessian_sum(block.X, curvature(eta, block.rw, block.Y, block.obs),
                                          strategy)


def block_line_values(block: Block, W, b, dW, db, steps):
    """Loss sums at ``(W + a dW, b + a db)`` for the K steps ``a`` (K, U) → (K, U)."""
    eta = linear_predictor(block, W, b)
    xi = block.X @ dW + db[None, :]
    return loss_sums_along(eta, xi, block.Y, block.rw, steps, block.obs)


def block_moments(block: Block):
    """What families other than Poisson need before fitting, besides :func:`block_stats`:
    ``sum rw y^2 (U,)``, ``sum rw offset (U,)``, smallest and largest ``y`` over the rows of
    positive weight (U,), and the smallest row weight () (the first two add over blocks, the
    others combine with ``minimum`` / ``maximum``)."""
    rw = block.rw
    used = rw > 0
    big = jnp.asarray(jnp.finfo(rw.dtype).max, rw.dtype)
    y_min = jnp.min(jnp.where(used[:, None], block.Y, big), axis=0)
    y_max = jnp.max(jnp.where(used[:, None], block.Y, -big), axis=0)
    U = block.Y.shape[1]
    off = jnp.broadcast_to(rw @ block.offset, (U,))
    return rw @ (block.Y * block.Y), off, y_min, y_max, jnp.min(rw)


def block_pearson(block: Block, W, b):
    """Sum over rows of the squared Pearson residuals (U,) (gamma and gaussian families)."""
    eta = linear_predictor(block, W, b)
    return block.rw @ fam.pearson_rows(block.obs, eta, block.Y)


def block_nb_score(block: Block, W, b, log_alpha):
    """First and second derivatives in ``log a`` of the negative binomial log-likelihood at
    fixed weights, the part of the block's rows: (U,), (U,) (add
    :func:`~glmformula.backend.families.nb_score_counts` of all rows once)."""
    eta = linear_predictor(block, W, b)
    return fam.nb_score_rows(eta, block.Y, block.rw, log_alpha)


def nb_dispersion(block: Block, W, b, log_alpha, active, survival):
    """The maximum-likelihood ``log a`` per unit at fixed weights, rows in memory (U,)
    (:func:`~glmformula.backend.families.nb_alpha_newton`)."""
    eta = linear_predictor(block, W, b)
    return fam.nb_alpha_newton(eta, block.Y, block.rw, log_alpha, active, survival)


class FitData(NamedTuple):
    """Everything an in-memory solver needs, as device arrays (a pytree).

    Attributes
    ----------
    block : Block
        All rows.
    mask : (P, U)
        1.0 where unit u may use column j (column_mask and non-empty columns).
    l2, l1 : (P, U)
        Penalty strengths per weight (:class:`~glmformula.backend.regularizers.PenaltyArrays`).
    group_matrix : (G, P), group_strength : (G, U)
        Group lasso groups and strengths (G may be 0).
    W0 : (P, U), b0 : (U,)
        Starting point.
    n : ()
        Total row weight (the objective is a mean over rows).
    scale : (U,)
        Spikes per row of each unit (row-weighted mean of y): the scale of the
        objective, which makes the tolerance unit-free.
    active : (U,) bool
        Units to fit (False: no spikes, their answer is fixed in advance).
    quad : (U, P, P) or None
        Quadratic penalty per unit (``0.5 w' quad[u] w``), e.g. smoothness penalties.
    tiles : RowTiles or None
        Where a sparse design is non-zero (:mod:`.row_tiles`), for the sampled float32
        Hessians of :func:`sampled_hessian` (None: dense products).
    preconditioner : (factor (U, P+1, P+1), scaling (U, P+1)) or None
        A warm L-BFGS start's first preconditioner, given (a fit's on more rows of the same
        design: :class:`~glmformula.backend.lbfgs.Curvature`) instead of formed at the start.
    """

    block: Block
    mask: jax.Array
    l2: jax.Array
    l1: jax.Array
    group_matrix: jax.Array
    group_strength: jax.Array
    W0: jax.Array
    b0: jax.Array
    n: jax.Array
    scale: jax.Array
    active: jax.Array
    quad: jax.Array | None = None
    tiles: rt.RowTiles | None = None
    preconditioner: tuple | None = None


def with_tiles(data: FitData, stride: int) -> FitData:
    """``data`` with its design's tiles for sampled float32 Hessians from every
    ``stride``-th row, where the Hessian pass is large (:data:`SAMPLED_CURVATURE_ABOVE`
    multiply-adds) and the design sparse enough (:func:`.row_tiles.design_tiles`)."""
    T, P = data.block.X.shape
    U = data.W0.shape[1]
    if float(T) * U * (P + 1) ** 2 <= SAMPLED_CURVATURE_ABOVE:
        return data
    return data._replace(tiles=rt.design_tiles(data.block.X, stride))


#: The transposed copy of an in-memory design (:attr:`Block.Xt`) is kept where it takes at most
#: this fraction of ``gf.config.memory_limit`` and the device is a CPU (on a GPU the
#: transposed product needs no copy).
TRANSPOSED_ROWS_MAX_FRACTION = 0.25


def with_transposed_rows(data):
    """``data`` (anything with a ``block``) with its design's transposed copy (:attr:`Block.Xt`)
    where that pays: on a CPU, for a design that takes at most
    :data:`TRANSPOSED_ROWS_MAX_FRACTION` of ``gf.config.memory_limit`` (a second copy of it is
    made). Unchanged otherwise, or if it has the copy already."""
    X = data.block.X
    if (data.block.Xt is not None or X.shape[0] == 0 or jax.default_backend() != "cpu"
            or X.nbytes > TRANSPOSED_ROWS_MAX_FRACTION * config.memory_limit):
        return data
    return data._replace(block=data.block._replace(Xt=_transposed(X)))


@jax.jit
def _transposed(X):
    return X.T


def sampled_hessian(data, D, strategy: str, stride: int, compute=None):
    """The units' Hessians (U, P+1, P+1) from curvature weights ``D`` (T, U) on every
    ``stride``-th row: from ``data.tiles`` (float32 products, tiles built for this stride)
    where the design has them, else :func:`sampled_hessian_sum`. ``data``: anything with a
    ``block`` and ``tiles`` (a :class:`FitData`, REML's ``RemlData``)."""
    if data.tiles is not None:
        return rt.tiled_hessian_sum(data.tiles, D[::stride], stride, data.block.X.dtype)
    return sampled_hessian_sum(data.block.X, D, strategy, stride, compute)


def penalty_value(data: FitData, W):
    """The smooth part of the penalty, ``0.5 sum l2 w^2 + 0.5 w' quad w`` per unit (U,)."""
    value = 0.5 * jnp.sum(data.l2 * W * W, axis=0)
    if data.quad is not None:
        value = value + 0.5 * jnp.sum(W * jnp.einsum("upq,qu->pu", data.quad, W), axis=0)
    return value


def penalty_gradient(data: FitData, W):
    """Gradient of :func:`penalty_value` (P, U)."""
    grad = data.l2 * W
    if data.quad is not None:
        grad = grad + jnp.einsum("upq,qu->pu", data.quad, W)
    return grad


def smooth_objective(data: FitData, eta, W, sums=None):
    """Mean loss + ridge part of the penalty, its masked gradient, and the loss magnitude.

    ``sums``: :func:`value_grad_sums` at ``eta`` if already computed (no pass over X then).
    Returns ``f (U,), grad (P+1, U) (intercept last), magnitude (U,)``.
    """
    inv_n = 1.0 / data.n
    if sums is None:
        blk = data.block
        sums = value_grad_sums(blk.X, blk.Y, blk.rw, eta, blk.obs, blk.Xt)
    loss, gw, gb, mag = sums
    ridge = penalty_value(data, W)
    f = loss * inv_n + ridge
    gw = (gw * inv_n + penalty_gradient(data, W)) * data.mask
    grad = jnp.concatenate([gw, (gb * inv_n)[None, :]], axis=0) * data.active[None, :]
    return f, grad, mag * inv_n + ridge


def full_mask(mask):
    """(P, U) column mask → (U, P+1) mask including the (always used) intercept."""
    return jnp.concatenate([mask, jnp.ones((1, mask.shape[1]), mask.dtype)], axis=0).T


def penalised_hessian(data: FitData, H_sum):
    """Mean Hessian + ridge + quadratic penalty, masked coordinates decoupled (identity):
    (U, P+1, P+1)."""
    H = H_sum / data.n
    m = full_mask(data.mask)
    l2 = jnp.concatenate([data.l2, jnp.zeros((1, data.l2.shape[1]), H.dtype)], axis=0).T
    idx = jnp.arange(H.shape[-1])
    H = H.at[:, idx, idx].add(l2)
    if data.quad is not None:
        P = data.quad.shape[-1]
        H = H.at[:, :P, :P].add(data.quad)
    H = H * m[:, :, None] * m[:, None, :]
    return H.at[:, idx, idx].add(1.0 - m)


# --------------------------------------------------------------------------- compiled calls

_COMPILED: dict = {}
_COMPILED_MAX = 64
_COMPILE_LOCK = threading.Lock()


def compiled_call(fn, static: dict, *args):
    """Run ``jit(fn)(*args, **static)`` with an explicit compile step, reusing executables.

    Compiling ahead of time lets a fit report its compile time apart from its run
    time; the executable is cached by (function, static config, argument shapes
    and dtypes), so refitting the same shapes with new data never recompiles.

    Returns
    -------
    out, compile_seconds, run_seconds
    """

    setup_compilation_cache()  # JAX's persistent cache, once per process (gf.config)
    setup_allocator(config.keep_freed_memory)  # malloc keeps freed memory (gf.config)
    leaves, treedef = jax.tree_util.tree_flatten(args)
    key = (
        fn,
        tuple(sorted(static.items())),
        treedef,
        tuple((tuple(x.shape), str(x.dtype)) for x in leaves),
        bool(jax.config.jax_enable_x64),
        jax.default_backend(),
    )
    compile_s = 0.0
    with _COMPILE_LOCK:  # groups of units fit on threads share the cache (one compile each)
        exe = _COMPILED.get(key)
        if exe is None:
            t0 = time.perf_counter()
            exe = jax.jit(lambda *a: fn(*a, **static)).lower(*args).compile()
            compile_s = time.perf_counter() - t0
            if len(_COMPILED) >= _COMPILED_MAX:
                _COMPILED.pop(next(iter(_COMPILED)))
            _COMPILED[key] = exe
    t0 = time.perf_counter()
    out = jax.block_until_ready(exe(*args))
    return out, compile_s, time.perf_counter() - t0
