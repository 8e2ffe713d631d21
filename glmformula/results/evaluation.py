"""Evaluate a fitted term's features on a grid of covariate values, with the training statistics.

A curve (tuning curve, 2-D map, gain curve) is the term's columns evaluated at chosen covariate
values, times its weights. To be sure those columns are the very ones the design used, the
term's feature nodes are rebuilt by the same term functions (through the graph's
:class:`~glmformula.graph.compile.Compiler`) and evaluated by the nodes' own ``evaluate``
methods; only the leaves differ: a :class:`~glmformula.graph.nodes.Covariate` reads the grid
instead of the recording, and statistics (basis ranges, ``center``/``scale`` moments) come from
the training ``state`` and are never relearned from the grid.

The training range of every covariate a term reads is recorded at fit time
(:func:`record_covariate_ranges`), so curves of bare covariates and transforms span the data the
model was fitted on, also for a result loaded from a file.
"""

from __future__ import annotations

import attrs
import numpy as np

from ..errors import ResultError
from ..graph import nodes
from ..graph.compile import Compiler
from ..graph.layout import CovariateRange, leaves  # noqa: F401  (CovariateRange: re-exported)
from ..terms.values import FunctionCall


def contains(node, kind) -> bool:
    """Whether ``node`` or any node below it is an instance of ``kind``."""
    if isinstance(node, kind):
        return True
    children = getattr(node, "inputs", None)
    if children is None:
        child = getattr(node, "input", None)
        children = () if child is None else (child,)
    return any(contains(child, kind) for child in children)


# -- rebuilding a term's nodes without the data --------------------------------------------------
@attrs.frozen
class _KnownNames:
    """Stands in for the data source when nodes are rebuilt: knows names and IntervalSets only."""

    intervals: frozenset

    def get(self, name: str, *, role: str = "covariate"):
        return None

    def is_interval_set(self, name: str) -> bool:
        return name in self.intervals


@attrs.frozen
class _BinOnly:
    bin_size: float


@attrs.frozen
class _NodeBuilder:
    source: _KnownNames
    grid: _BinOnly


def term_factor_nodes(result, term: str) -> list:
    """The feature node of each factor of ``term``, built exactly as the design built them.

    Parameters
    ----------
    result : FitResult
    term : str
        Canonical term text.

    Returns
    -------
    list
        One node per factor, in the term's factor order (the order of its columns).
    """
    intervals = frozenset(n for n, r in result.covariate_ranges.items() if r.interval)
    builder = _NodeBuilder(_KnownNames(intervals), _BinOnly(result.bin_size))
    compiler = Compiler(result.formula, builder, tuple(result.unit_ids))
    return [compiler.node(f) for f in result.formula.term(term).factors]


def spike_filter_call(result, term: str) -> FunctionCall | None:
    """The ``history``/``coupling`` call of a term, or None for other terms."""
    factors = result.formula.term(term).factors
    if len(factors) == 1 and isinstance(factors[0], FunctionCall) and \
            factors[0].function in ("history", "coupling"):
        return factors[0]
    return None


# -- evaluating nodes on a grid ------------------------------------------------------------------
@attrs.frozen
class _Constant:
    """One column of ones: a scalar factor held at 1 (for gain curves of interactions)."""

    def evaluate(self, graph, rows) -> np.ndarray:
        return np.ones((graph.n_rows, 1))


class GridGraph:
    """Evaluates feature nodes on a grid of covariate values (one grid point per row).

    Parameters
    ----------
    values : dict
        Covariate name -> (n,) array of grid values (same n for all).
    state : dict
        Training statistics by node text (``FitResult.state``).
    """

    def __init__(self, values: dict[str, np.ndarray], state: dict):
        self._values = {k: np.asarray(v, float).reshape(-1, 1) for k, v in values.items()}
        self.n_rows = len(next(iter(self._values.values()))) if self._values else 1
        self.state = state
        self._cache: dict = {}

    def evaluate(self, node, rows=None) -> np.ndarray:
        if node not in self._cache:
            self._cache[node] = self._compute(node)
        return self._cache[node]

    def _compute(self, node) -> np.ndarray:
        if isinstance(node, nodes.Covariate):
            if node.name not in self._values:
                raise ResultError(f"no grid values for covariate '{node.name}'",
                                  hint="this is a bug in curve(); please report it")
            x = self._values[node.name]
            # The design wraps circular covariates into [0, period); so does the grid.
            return np.mod(x, node.period) if node.period is not None else x
        if isinstance(node, nodes.Lag):
            # A lagged covariate's curve is over the covariate's past value: no shift on a grid.
            return self.evaluate(node.input)
        if isinstance(node, (nodes.CausalFilter, nodes.SpikeCounts)):
            raise ResultError("a filtered signal inside an interaction has no curve over a "
                              "covariate", hint="read its weights with table(term)")
        return np.asarray(node.evaluate(self, slice(0, self.n_rows)), float)

    def statistic(self, node, compute):
        """The training statistic of ``node``; never relearned from grid values."""
        key = repr(node)
        if key not in self.state:
            raise ResultError(
                f"the training statistics of {key} are missing from this result",
                hint="refit the model (results saved by an older version may lack them)")
        return self.state[key]


def evaluate_columns(factor_nodes: list, gain_factors: set, graph: GridGraph) -> np.ndarray:
    """A term's columns on the grid: the row-wise product of its factors' columns, first factor
    slowest (as :class:`~glmformula.graph.nodes.Product`), with the factors in ``gain_factors``
    (positions) held at 1."""
    used = [_Constant() if i in gain_factors else node for i, node in enumerate(factor_nodes)]
    if len(used) == 1:
        return graph.evaluate(used[0])
    return np.asarray(nodes.Product(tuple(used)).evaluate(graph, slice(0, graph.n_rows)), float)
