"""What a fit reports besides its weights, from passes over the rows in blocks: each unit's
log-likelihood and the covariance of its parameters (inverse penalised Fisher information).

Both are sums over rows, so they are accumulated block by block, from slices of an in-memory
design (:func:`rows_in_memory`) or from blocks rebuilt by the feature graph
(:func:`rows_rebuilt`: no whole design, as in blocked fits), never with (rows x units) float64
temporaries. Each unit's information is formed on the columns it uses (``T (k+1)^2``
multiply-adds, :func:`glmformula.backend.covariance.unit_information`), not on every stored
column. When that costs more than :data:`EAGER_MULTIPLY_ADDS`, the fit returns at once and a
unit's covariance is computed the first time it is asked for
(:class:`~glmformula.results.covariance.CovarianceStack`), from rebuilt blocks, so the result
does not keep the design alive.
"""

from __future__ import annotations

import attrs
import jax
import jax.numpy as jnp
import numpy as np

from ..backend import problem as pb
from ..backend.covariance import (
    invert_information,
    unit_information,
    units_information,
    warn_singular,
)
from ..backend.families import Obs
from ..backend.regularizers import resolve_penalty
from ..config import config
from ..graph.design import Prepared, iter_blocks
from ..graph.rows import Rows, resident_rows
from . import poisson
from .covariance import CovarianceStack
from .families import get_family
from .identifiability import rotate_columns
from .sharding import on_devices, unit_groups

#: Covariances that cost at most this many multiply-adds (rows x sum over units of
#: (columns + 1)^2: seconds on a small CPU) are computed with the fit, larger ones on first
#: use. 200 coupled units x 1,641 columns x 1e6 bins is 5e14 (measured:
#: docs/performance_decisions.md, 'Covariances computed with the fit').
EAGER_MULTIPLY_ADDS = 1e11

#: Target size of one block of rows (bytes of design).
BLOCK_BYTES = 64 * 1024**2
#: Bytes of gathered columns one Fisher-information kernel call may hold (units with columns
#: of their own are computed together up to this).
GATHER_BYTES = 256 * 1024**2


def block_rows(n_columns: int, itemsize: int) -> int:
    """Rows per block: about :data:`BLOCK_BYTES` of design, at least 1,024."""
    return max(1024, BLOCK_BYTES // max(n_columns * itemsize, 1))


def rows_in_memory(X, counts, offset, row_weight) -> Rows:
    """Blocks of about :data:`BLOCK_BYTES` of an in-memory design (views, no copies)."""
    return resident_rows(X, counts, offset, row_weight, block_rows(X.shape[1], X.dtype.itemsize))


def rows_rebuilt(prepared: Prepared, chunk_size: int, dtype, constraints: dict,
                 row_weight: np.ndarray | None = None) -> Rows:
    """Blocks of rows rebuilt by the feature graph (the whole design never exists), with the
    constrained terms' columns rotated as the solver saw them. ``row_weight`` (one per grid
    row) selects rows within the valid ones (default: all valid rows)."""
    term_storage = prepared.plan.term_storage

    def rows():
        for block in iter_blocks(prepared, chunk_size, dtype=dtype):
            rotate_columns(block.X, constraints, term_storage)
            if row_weight is None:
                yield block
            else:
                used = row_weight[block.start:block.stop] > 0
                yield attrs.evolve(block, row_weight=block.row_weight * used)
    return rows


def _linear_predictor(X, offset, W, b):
    return X @ W + b[None, :] + offset[:, None]


def log_likelihood(rows: Rows, weights, intercept, dtype, family: str = "poisson",
                   dispersion=None) -> np.ndarray:
    """Per-unit log-likelihood (nats, with every constant, e.g. ``log y!``) at the fitted
    parameters. The linear predictor of each block is formed in the fit's dtype; the
    likelihood is summed in float64.

    ``family`` (:mod:`.families`) and its fitted ``dispersion`` (U,): the training
    log-likelihood as statsmodels' ``llf`` gives it (the gaussian family's at the
    maximum-likelihood variance of these rows, whatever ``dispersion`` says).
    """
    if family != "poisson":
        fam = get_family(family)
        scale = None if family == "gaussian" else dispersion
        parts = None
        for block, eta in _linear_predictors(rows, weights, intercept, dtype):
            part = fam.log_likelihood_parts(block.counts, fam.mean(eta), block.row_weight, scale)
            parts = part if parts is None else tuple(a + c for a, c in zip(parts, part))
        return fam.log_likelihood_total(parts, scale)
    total = None
    for block, eta in _linear_predictors(rows, weights, intercept, dtype):
        part = poisson.log_likelihood(block.counts, poisson.expected_counts(eta), block.row_weight)
        total = part if total is None else total + part
    return total


def _linear_predictors(rows: Rows, weights, intercept, dtype):
    """Each block of ``rows`` with its linear predictor (rows, U) as float64 numpy, formed in
    ``dtype`` (blocks padded to the first one's size: one compiled kernel)."""
    size = None
    with jax.enable_x64(True):
        dt = jnp.dtype(dtype)
        W, b = jnp.asarray(weights, dt), jnp.asarray(intercept, dt)
        for block in rows():
            rows_here = block.X.shape[0]
            size = rows_here if size is None else size
            padded = block.padded(size)
            offset = np.zeros(size) if padded.offset is None else padded.offset
            eta, _, _ = pb.compiled_call(_linear_predictor, {}, pb.to_device(padded.X, dt),
                                         jnp.asarray(offset, dt), W, b)
            yield block, np.asarray(eta, float)[:rows_here]


@attrs.frozen(eq=False)
class CovarianceSource:
    """Everything needed to compute units' covariances, now or later.

    Attributes
    ----------
    rows : Rows
        The fit's rows (rebuilt blocks for a lazy source: they hold no design).
    weights : ndarray (P, U), intercept : ndarray (U,)
        The fitted parameters in the solver's basis (constrained terms rotated).
    supports : tuple of ndarray
        Per unit, the stored columns it was fitted on (solver's basis; masked ones left out).
    l2 : ndarray (P, U)
        The ridge part of the penalty of the mean objective (0 without one).
    dtype : str
        The fit's compute dtype.
    constraints : dict
        Term text -> rotation ``Q``; ``term_storage``: term text -> stored columns.
    """

    rows: Rows
    weights: np.ndarray
    intercept: np.ndarray
    supports: tuple
    l2: np.ndarray
    dtype: str
    constraints: dict
    term_storage: dict
    unit_names: tuple | None = None
    quad: np.ndarray | None = None  # (U, P, P) quadratic penalty of the mean objective
    family: str = "poisson"  # the observation family (Fisher weights: .families)
    dispersion: np.ndarray | None = None  # (U,) its fitted dispersion (NB a, gamma/gaussian scale)
    #: per unit, the solver's Fisher information sums at these parameters (support, then the
    #: intercept: ``backend.Solution.information``); None: computed here by passes over rows
    information: tuple | None = None

    @property
    def n_columns(self) -> int:
        return self.weights.shape[0]

    def cost(self, n_rows: int) -> float:
        """Multiply-adds to compute every unit's information."""
        return float(n_rows) * float(sum((len(s) + 1) ** 2 for s in self.supports))

    def __call__(self, units) -> dict:
        """Unit -> (support, covariance with intercept first) in the original basis."""
        units = np.asarray(units, dtype=int)
        size = _units_per_pass(max(len(self.supports[u]) for u in units))

        def on_device(group):  # each device makes its own passes over the rows
            parts = {}
            for start in range(0, len(group), size):
                parts.update(self._batch(group[start:start + size]))
            return parts

        devices = jax.devices()
        groups = [units[g] for g in unit_groups(len(units), len(devices))]
        return {u: part for parts in on_devices(on_device, devices, groups)
                for u, part in parts.items()}

    def _batch(self, units: np.ndarray) -> dict:
        matrices, n = self._given(units) if self.information is not None \
            else self._passes(units)
        parts, deficient = {}, []
        for u, H in matrices.items():
            idx = np.arange(len(self.supports[u]))
            H[idx, idx] += n * self.l2[self.supports[u], u]
            if self.quad is not None:  # the Bayesian posterior covariance of a smooth fit
                support = self.supports[u]
                H[np.ix_(idx, idx)] += n * self.quad[u][np.ix_(support, support)]
            inverse, singular = invert_information(H[None], self.dtype)
            if self.family in ("gamma", "gaussian"):  # information at unit scale
                inverse = inverse * self.dispersion[u]
            if singular[0]:
                deficient.append(u)
            parts[u] = self._original_basis(self.supports[u], inverse[0])
        names = self.unit_names
        warn_singular([u if names is None else names[u] for u in sorted(deficient)])
        return parts

    def _given(self, units: np.ndarray) -> tuple[dict, float]:
        """The solver's information sums at the answer (no pass over the design), and the
        rows' total weight."""
        n = sum(float(np.sum(block.row_weight)) for block in self.rows())
        return {int(u): np.array(self.information[u], dtype=float) for u in units}, n

    def _passes(self, units: np.ndarray) -> tuple[dict, float]:
        """Unit -> information sums (support, then the intercept) from passes over the rows,
        and the rows' total weight."""
        # Units that use the same columns share their products (populations on shared
        # covariates); units with columns of their own (history) are computed together in
        # one kernel per block, their supports padded to the longest.
        groups: dict[tuple, list[int]] = {}
        for u in units:
            groups.setdefault(tuple(self.supports[u].tolist()), []).append(int(u))
        shared = {key: group for key, group in groups.items() if len(group) > 1}
        alone = [group[0] for key, group in groups.items() if len(group) == 1]
        if len(alone) == 1:  # one unit of its own: the gather-free kernel is cheaper
            shared[tuple(self.supports[alone[0]].tolist())] = alone
            alone = []
        k_alone = max((len(self.supports[u]) for u in alone), default=0)
        padded_columns = np.full((len(alone), k_alone), self.n_columns, dtype=int)
        padded_weights = np.zeros((k_alone, len(alone)))
        for g, u in enumerate(alone):
            support = self.supports[u]
            padded_columns[g, :len(support)] = support
            padded_weights[:len(support), g] = self.weights[support, u]
        info = {key: None for key in shared}
        info_alone = None
        n, size = 0.0, None
        for block in self.rows():
            size = block.X.shape[0] if size is None else size
            padded = block.padded(size)
            n += float(np.sum(block.row_weight))
            for key, group in shared.items():
                columns = np.asarray(key, dtype=int)
                part = unit_information(padded.X, padded.offset, padded.row_weight, columns,
                                        self.weights[np.ix_(columns, group)],
                                        self.intercept[group], self.dtype, self._obs(group))
                info[key] = part if info[key] is None else info[key] + part
            if alone:
                # units per kernel call: their gathered columns within GATHER_BYTES
                step = max(1, int(GATHER_BYTES // (3 * size * (k_alone + 1) * 8)))
                part = np.concatenate([
                    units_information(padded.X, padded.offset, padded.row_weight,
                                      padded_columns[g:g + step], padded_weights[:, g:g + step],
                                      self.intercept[alone[g:g + step]], self.dtype,
                                      self._obs(alone[g:g + step]))
                    for g in range(0, len(alone), step)])
                info_alone = part if info_alone is None else info_alone + part
        matrices = {}
        for key, group in shared.items():
            for i, u in enumerate(group):
                matrices[u] = info[key][i]
        for g, u in enumerate(alone):
            k = len(self.supports[u])
            keep = np.r_[np.arange(k), k_alone]  # its columns and the intercept (last)
            matrices[u] = info_alone[g][np.ix_(keep, keep)]
        return matrices, n

    def _obs(self, units):
        """The observation family of ``units`` for the information kernels (None: Poisson)."""
        if self.family == "poisson":
            return None
        theta = None
        if self.family == "negative_binomial":
            theta = np.nan_to_num(np.asarray(self.dispersion, float)[list(units)], nan=1.0)
        return Obs(self.family, theta)

    def _original_basis(self, support: np.ndarray, cov: np.ndarray):
        """(support, matrix) with the intercept first and constrained terms rotated back
        (``Q C Q'`` on their rows and columns; a constrained term's masked column joins the
        support)."""
        k = len(support)
        order = np.r_[k, np.arange(k)]
        matrix = cov[np.ix_(order, order)]
        full = set(support.tolist())
        touched = []
        for text, Q in self.constraints.items():
            columns = np.arange(self.term_storage[text].start, self.term_storage[text].stop)
            if full.intersection(columns.tolist()):
                full.update(columns.tolist())
                touched.append((columns, Q))
        if not touched:
            return support, matrix
        wide = np.array(sorted(full), dtype=int)
        position = np.searchsorted(wide, support) + 1
        out = np.zeros((len(wide) + 1, len(wide) + 1))
        index = np.r_[0, position]
        out[np.ix_(index, index)] = matrix
        for columns, Q in touched:
            rows = np.searchsorted(wide, columns) + 1
            out[rows, :] = Q @ out[rows, :]
            out[:, rows] = out[:, rows] @ Q.T
        return wide, out


def _units_per_pass(k: int) -> int:
    """Units whose information is accumulated in one pass over the rows: their float64
    matrices (a few copies) within a quarter of ``gf.config.memory_limit``."""
    per_unit = 4 * (k + 1) ** 2 * 8
    return max(1, int(config.memory_limit // 4 // per_unit))


def covariance_source(rows: Rows, weights, intercept, mask: np.ndarray, regularizer,
                      groups: tuple, dtype: str, constraints: dict,
                      term_storage: dict, unit_names: tuple | None = None,
                      penalty_matrix: np.ndarray | None = None, family: str = "poisson",
                      dispersion=None, information: tuple | None = None) -> CovarianceSource:
    """A :class:`CovarianceSource` for a fit whose columns of unit ``u`` are ``mask[u]``
    (``family`` and its fitted ``dispersion``: the Fisher weights, and the scale that
    multiplies the covariance of the gamma and gaussian families, as statsmodels' GLM;
    ``information``: the solver's information sums at the answer, when it made them)."""
    penalty = resolve_penalty(regularizer, groups, mask)
    supports = tuple(np.flatnonzero(m) for m in mask)
    return CovarianceSource(rows, np.asarray(weights, float), np.asarray(intercept, float),
                            supports, np.asarray(penalty.l2, float), str(dtype),
                            dict(constraints), dict(term_storage), unit_names,
                            None if penalty_matrix is None
                            else np.asarray(penalty_matrix, float), family,
                            None if dispersion is None else np.asarray(dispersion, float),
                            information)


def computed_with_fit(column_mask: np.ndarray, n_rows: int) -> bool:
    """Whether :func:`covariance_stack` computes the covariances of a fit whose unit ``u``
    reads the columns ``column_mask[u]`` (U, P) at once (:data:`EAGER_MULTIPLY_ADDS`)."""
    sizes = np.asarray(column_mask, bool).sum(axis=1) + 1.0
    return float(n_rows) * float(np.sum(sizes ** 2)) <= EAGER_MULTIPLY_ADDS


def covariance_stack(now: CovarianceSource, later: CovarianceSource | None,
                     n_rows: int) -> CovarianceStack:
    """Every unit's covariance computed from ``now`` when that is cheap
    (:data:`EAGER_MULTIPLY_ADDS`), else a stack that computes units from ``later`` (whose rows
    hold no design) the first time they are asked for."""
    U, P = len(now.supports), now.n_columns
    if later is None or now.information is not None or now.cost(n_rows) <= EAGER_MULTIPLY_ADDS:
        return CovarianceStack(U, P, parts=now(np.arange(U)))
    return CovarianceStack(U, P, compute=later)


__all__ = ["rows_in_memory", "rows_rebuilt", "log_likelihood",
           "CovarianceSource", "covariance_source", "covariance_stack", "computed_with_fit",
           "EAGER_MULTIPLY_ADDS"]
