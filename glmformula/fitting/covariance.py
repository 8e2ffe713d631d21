"""The covariance of a fit's weights, one unit at a time, computed when first asked for.

The Fisher information of a unit costs ``T (k+1)^2`` multiply-adds over its ``k`` columns: for
200 coupled units with 1,641 columns each over 1e6 bins that is 5e14, hours on a laptop, and
4.3 GB to keep in float64, for standard errors that a user may only want for a few units. So
:class:`CovarianceStack` stores what has been computed (per unit, on the columns the unit
uses) and computes the rest on first use through a function it was given; small fits hand it
everything at once (see :mod:`glmformula.fitting.information`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from ..errors import FitError

#: ``compute(units)`` -> {unit: (support, matrix)}: for each unit, the stored column indices
#: its covariance involves (sorted) and the covariance of (intercept, those weights) (k+1, k+1),
#: intercept first.
Compute = Callable[[np.ndarray], dict]


class CovarianceStack:
    """Covariance of (intercept, weights) of every unit: behaves as an array (U, P+1, P+1).

    ``stack[u]`` is unit ``u``'s (P+1, P+1) matrix (intercept first; rows and columns of
    stored columns the unit does not use are 0); ``np.asarray(stack)`` is all of them. A
    unit's matrix is computed the first time it is needed, then kept.

    Parameters
    ----------
    n_units, n_columns : int
        U and P.
    parts : dict, optional
        Units already computed: unit -> (support, matrix) as returned by ``compute``.
    compute : callable, optional
        ``compute(units)`` for the missing units; None: nothing more can be computed
        (``unavailable`` says why).
    """

    ndim = 3
    dtype = np.dtype(np.float64)

    def __init__(self, n_units: int, n_columns: int, parts: dict | None = None,
                 compute: Compute | None = None, unavailable: str = ""):
        self.n_units, self.n_columns = int(n_units), int(n_columns)
        self._parts = dict(parts or {})
        self._compute = compute
        self._unavailable = unavailable

    @classmethod
    def from_dense(cls, covariance) -> "CovarianceStack":
        """A stack holding a dense (U, P+1, P+1) array (every unit computed)."""
        cov = np.asarray(covariance, dtype=float)
        support = np.arange(cov.shape[1] - 1)
        return cls(cov.shape[0], cov.shape[1] - 1, {u: (support, cov[u]) for u in range(len(cov))})

    @classmethod
    def not_computed(cls, n_units: int, n_columns: int, reason: str) -> "CovarianceStack":
        return cls(n_units, n_columns, unavailable=reason)

    # -- array behaviour ---------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.n_units, self.n_columns + 1, self.n_columns + 1)

    def __len__(self) -> int:
        return self.n_units

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            return self._dense(self._unit_index(key))
        return np.asarray(self)[key]

    def __array__(self, dtype=None, copy=None):
        self.compute(range(self.n_units))
        out = np.zeros(self.shape)
        for u in range(self.n_units):
            self._place(u, out[u])
        return out if dtype is None else out.astype(dtype)

    def __repr__(self) -> str:
        return (f"CovarianceStack({self.n_units} units x {self.n_columns + 1} parameters, "
                f"{len(self._parts)} computed)")

    # -- per unit ----------------------------------------------------------------------------
    @property
    def computed_units(self) -> np.ndarray:
        """Units whose covariance is held (sorted)."""
        return np.array(sorted(self._parts), dtype=int)

    def compute(self, units: Iterable[int]) -> None:
        """Compute (in one call) the units of ``units`` not held yet."""
        missing = np.array(sorted({self._unit_index(u) for u in units} - set(self._parts)),
                           dtype=int)
        if not len(missing):
            return
        if self._compute is None:
            raise FitError(
                f"the covariance of units {missing.tolist()[:10]} is not available: "
                f"{self._unavailable or 'it was not computed'}",
                hint="refit with gf.fit(...) to get standard errors")
        self._parts.update(self._compute(missing))

    def unit(self, u: int) -> tuple[np.ndarray, np.ndarray]:
        """(support, matrix) of unit ``u``: stored columns involved and the (k+1, k+1)
        covariance of (intercept, their weights)."""
        u = self._unit_index(u)
        self.compute([u])
        return self._parts[u]

    def diagonal(self, u: int) -> np.ndarray:
        """Variances of (intercept, every stored column's weight) of unit ``u`` (P+1,)."""
        support, matrix = self.unit(u)
        out = np.zeros(self.n_columns + 1)
        out[0] = matrix[0, 0]
        out[support + 1] = np.diagonal(matrix)[1:]
        return out

    def _dense(self, u: int) -> np.ndarray:
        self.compute([u])
        out = np.zeros(self.shape[1:])
        self._place(u, out)
        return out

    def _place(self, u: int, out: np.ndarray) -> None:
        support, matrix = self._parts[u]
        index = np.concatenate([[0], np.asarray(support) + 1])
        out[np.ix_(index, index)] = matrix

    def _unit_index(self, u) -> int:
        u = int(u)
        if not -self.n_units <= u < self.n_units:
            raise IndexError(f"unit {u} out of range for {self.n_units} units")
        return u % self.n_units


def as_covariance_stack(value) -> CovarianceStack:
    """attrs converter: a dense array becomes a stack; a stack is kept."""
    return value if isinstance(value, CovarianceStack) else CovarianceStack.from_dense(value)


__all__ = ["CovarianceStack", "as_covariance_stack"]
