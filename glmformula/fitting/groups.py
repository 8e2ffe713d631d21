"""Units solved in groups on only the stored columns they read.

Units are independent problems that share the stored design; the solver's work per iteration
grows like ``(P + 1)**2 * U`` (the Hessians) for P stored columns. When each unit reads only a
few of them (``history`` without ``coupling``: the shared columns plus its own filtered
counts), fitting groups of ``G`` units on the union of their columns costs
``sum_g (P_g + 1)**2 * G`` plus a fixed overhead per call, and gives the same optimum for every
unit (its columns, rows, penalty and data are unchanged).
"""

from __future__ import annotations

import threading
import time

import attrs
import numpy as np

from .. import backend
from .._memory import aligned_zeros
from ..backend.problem import columns_first as columns_first_layout
from ..config import config
from ..graph.design import gather
from . import sharding
from .rows import RowSelection, select_rows, used_row_parts, used_row_slices
from .threads import available_threads, map_on_threads

#: Group units only when that cuts the estimated solver work by at least this factor.
GROUPING_GAIN = 4.0
#: Work of one solver call besides its Hessians (copying the group's columns, the statistics
#: pass, dispatch), in multiply-adds: charged as ``CALL_OVERHEAD / n_rows`` in the units of
#: ``(P + 1)**2 * U`` per row, since the Hessians' work grows with the rows and this does not
#: (docs/performance_decisions.md, 'Units in groups on their own columns').
CALL_OVERHEAD = 4e7


def plan_groups(column_mask: np.ndarray, n_rows: int) -> list | None:
    """``[(units, columns)]`` of consecutive units and the columns they read, or None when one
    call on all columns is as cheap (within :data:`GROUPING_GAIN`); ``n_rows``: the rows fitted."""
    mask = np.asarray(column_mask, bool)
    U, P = mask.shape
    if U < 2:
        return None
    overhead = CALL_OVERHEAD / max(int(n_rows), 1)
    best, best_cost = None, (P + 1) ** 2 * U / GROUPING_GAIN
    for size in sorted({1, 2, 4, 8, 16, max(1, U // 4), max(1, U // 2)}):
        if size >= U:
            continue
        groups = []
        for start in range(0, U, size):
            units = np.arange(start, min(start + size, U))
            groups.append((units, np.flatnonzero(mask[units].any(axis=0))))
        cost = sum((len(c) + 1) ** 2 * len(u) + overhead for u, c in groups)
        if cost < best_cost:
            best, best_cost = groups, cost
    return best


def _part(values, index):
    return None if values is None else tuple(values[i] for i in index)


def _gather_columns(X: np.ndarray, columns: np.ndarray, reuse: threading.local,
                    rows: RowSelection | None = None, columns_first: bool = False
                    ) -> np.ndarray:
    """``X[:, columns]`` into an aligned array (the solver uses it in place), copied run by run
    of consecutive columns (a group's columns are a few runs: the shared terms, then each
    unit's bank; slice copies are much faster than a fancy-index gather); with ``rows``, only
    the rows it selects (:class:`.rows.RowSelection`: a fold's training rows, padded).

    The array is the calling thread's from its previous group where the shape is the same
    (``reuse.X``; its solve has returned): writing into fresh memory costs a page fault per
    4 kB, and on the real history model's 32 groups (226k rows x 20 columns) the copies took
    40 ms each into new arrays against 22 ms into a used one. Its columns that already hold
    the same column of the same rows (the shared terms, in the same place in every group) are
    not copied again: only the unit's own bank is.

    ``columns_first``: the array is laid out columns first (Fortran order; the transpose of
    an aligned (columns, rows) array), which Newton reads without a row-major copy
    (:func:`..backend.problem.columns_first`); the copy costs the same."""
    columns = np.asarray(columns)
    shape = (X.shape[0] if rows is None else rows.n, len(columns))
    out = getattr(reuse, "X", None)
    if (out is None or out.shape != shape or out.dtype != X.dtype
            or columns_first_layout(out) != columns_first):
        out = reuse.X = aligned_zeros(shape[::-1], X.dtype).T if columns_first \
            else aligned_zeros(shape, X.dtype)
        reuse.held = None
    held = getattr(reuse, "held", None)  # (source, rows, columns) that ``out`` holds now
    same = np.zeros(len(columns), bool)
    if held is not None and held[0] is X and held[1] is rows:
        same = held[2] == columns
    reuse.held = None  # while being refilled, ``out`` holds nothing reliable
    starts, stops = _runs(~same)
    for a, b in zip(starts, stops):
        if rows is not None:
            rows.copy_into(out[:, a:b], X, columns[a:b])
        else:
            gather(X, np.arange(X.shape[0]), columns[a:b], False, out=out[:, a:b])
    reuse.held = (X, rows, columns.copy())
    return out


def column_statistics(X: np.ndarray, used: np.ndarray | None, rows_per_block: int = 256,
                      copy_to: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Float64 sums and ``max |X[t, j]|`` (NaN where a column holds one, inf where it holds
    one) per column over the rows ``used`` (bool; None: all), in one pass over the design: the
    maxima are :attr:`..backend.Problem.column_max` of every group (one pass instead of one
    per group), the sums the fit's column means. A cache-sized part of the used rows at a
    time (:func:`.rows.used_row_parts`), its largest and smallest values (no temporary
    ``|X|``) and sum read while it is in the core's cache: on the real history design (226k x
    268) 86 ms for both against 114 ms for the maxima in parts of 4,096 rows and 57 ms for
    the sums in a pass of their own.

    ``copy_to``: a zero array of ``X``'s shape that receives ``X``'s used rows in the same
    pass, the others left zero (e.g. one laid out columns first, :func:`columns_first_copy`)."""
    slices = used_row_slices(used, X.shape[0], rows_per_block)
    if slices is None:  # scattered rows: the copy, then the statistics of the used ones
        if copy_to is not None:
            copy_to[:] = X
            copy_to[~np.asarray(used, bool)] = 0.0
        return _statistics(used_row_parts(X, used, rows_per_block, split_runs=True), X.shape[1])
    # the slices in as many shares as there are threads (numpy's copies and reductions let go
    # of the interpreter); each share's sums are added in order
    shares = np.array_split(np.arange(len(slices)), max(min(available_threads(), len(slices)), 1))
    parts = map_on_threads(lambda share: _statistics(_copied(X, [slices[i] for i in share],
                                                             copy_to), X.shape[1]), shares)
    return (np.sum([p[0] for p in parts], axis=0),
            np.max([p[1] for p in parts], axis=0))


def _statistics(parts, n_columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Sums and largest absolute values of the columns of the row ``parts``."""
    sums, maxima = np.zeros(n_columns), np.zeros(n_columns)
    for part in parts:
        sums += np.add.reduce(part, axis=0, dtype=np.float64)
        # NaN propagates through max and min (and np.maximum)
        maxima = np.maximum(maxima, np.maximum(part.max(axis=0), -part.min(axis=0)))
    return sums, maxima


def _copied(X: np.ndarray, slices: list, copy_to: np.ndarray | None):
    """``X``'s rows in ``slices``, each copied into ``copy_to`` (if any) as it is handed out."""
    for rows in slices:
        part = X[rows]
        if copy_to is not None:
            copy_to[rows] = part
        yield part


def columns_first_copy(X: np.ndarray, options: dict) -> np.ndarray | None:
    """A zero array of ``X``'s shape and dtype laid out columns first (aligned), for
    :func:`column_statistics` to copy ``X``'s used rows into, where the groups' solves read
    their columns first (:func:`reads_columns_first` of the solver ``options``) and the copy
    takes at most :data:`COLUMNS_FIRST_COPY_MAX_FRACTION` of ``gf.config.memory_limit``; else
    None. Each group's copy of its columns is then a copy of whole columns, not a gather of a
    few values from every row of ``X`` (on the real history design, 20 ms a group)."""
    if not reads_columns_first(options) \
            or X.nbytes > COLUMNS_FIRST_COPY_MAX_FRACTION * config.memory_limit:
        return None
    return aligned_zeros(X.shape[::-1], X.dtype).T


#: :func:`columns_first_copy` is made where it takes at most this fraction of
#: ``gf.config.memory_limit`` (as L-BFGS's transposed copy of a design).
COLUMNS_FIRST_COPY_MAX_FRACTION = 0.25


def column_maxima(X: np.ndarray, used: np.ndarray | None,
                  rows_per_block: int = 256) -> np.ndarray:
    """The maxima of :func:`column_statistics`."""
    return column_statistics(X, used, rows_per_block)[1]


def _runs(flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and stops of the runs of True in ``flags``."""
    edges = np.diff(np.r_[0, flags.astype(np.int8), 0])
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def reads_columns_first(options: dict) -> bool:
    """Whether the solves of :func:`solve_in_groups` with these options read their columns
    laid out columns first (:func:`..backend.newton.reads_columns_first`): Newton, chosen or
    (with ``"auto"``) chosen for a group's few columns, on the Poisson family, without a
    non-smooth regularizer or sampled curvature."""
    solver = options.get("solver", "auto")
    if options.get("family", "poisson") != "poisson" or solver not in ("auto", "newton"):
        return False
    if isinstance(options.get("regularizer"), (backend.Lasso, backend.ElasticNet,
                                               backend.GroupLasso)):
        return False  # the proximal solver
    return not (options.get("sampled_curvature", False) and not options.get("lazy", True))


def solve_in_groups(problem: backend.Problem, groups: list, init, **options) -> backend.Solution:
    """Solve each group of units on its own columns, several at once on threads
    (:func:`.threads.map_on_threads`: a unit's 20 columns keep about one core busy; on the
    2-core development machine two threads fitted the real history model's 32 per-unit
    problems 1.4-1.7x faster, docs/performance_decisions.md, 'Independent problems on threads');
    one Solution over all columns (weights exactly 0 on the columns a unit does not read;
    ``solve_seconds``: the wall time of the solves, not their sum)."""
    P = problem.n_cols
    offset = problem.offset
    reuse = threading.local()  # each thread's design of its last group, refilled for its next
    # a fold's training rows: each group copies its own columns of them, not the whole design
    rows = select_rows(problem.row_weight)
    take = (lambda a: a) if rows is None else rows.take
    # every group's column ranges from one pass over the design (not one per group)
    column_max = problem.column_max if problem.column_max is not None else column_maxima(
        problem.X, None if problem.row_weight is None else problem.row_weight > 0)

    # Newton reads a group's columns laid out columns first faster (problem.py,
    # poisson_model_sums_columns); any other solver would copy them back to rows first
    columns_first = reads_columns_first(options)

    def solve_group(group):
        units, columns = group
        X = _gather_columns(problem.X, columns, reuse, rows, columns_first)
        sub = backend.Problem(
            X=X, y=take(problem.y[:, units]),
            column_mask=problem.column_mask[np.ix_(units, columns)],
            offset=take(offset[:, units] if offset is not None and offset.ndim == 2
                        and offset.shape[1] > 1 else offset),
            row_weight=take(problem.row_weight),
            column_groups=_part(problem.column_groups, columns),
            unit_names=_part(problem.unit_names, units),
            column_names=_part(problem.column_names, columns),
            penalty_matrix=None if problem.penalty_matrix is None
            else problem.penalty_matrix[np.ix_(units, columns, columns)],
            column_max=column_max[columns])
        start = backend.start_part(init, columns, units)
        solution = sharding.solve_on_devices(sub, init=start, **options)
        W = np.zeros((P, len(units)), dtype=np.asarray(solution.weights).dtype)
        W[columns] = solution.weights
        # a column all zero in the fitted rows is so for every group that reads it
        excluded = tuple(int(columns[j]) for j in solution.excluded_columns)
        return attrs.evolve(solution, weights=W, excluded_columns=excluded)

    widest = max(len(columns) for _, columns in groups)
    start_time = time.perf_counter()
    n_rows = problem.n_rows if rows is None else rows.n
    parts = map_on_threads(solve_group, groups, n_rows * widest * problem.X.itemsize)
    wall = time.perf_counter() - start_time
    joined = sharding.join_solutions(parts, sequential=True)
    # groups side by side: the wall time (less compiling), not the sum of their solve times
    return attrs.evolve(joined, solve_seconds=min(
        joined.solve_seconds, max(wall - joined.compile_seconds, 0.0)))


__all__ = ["plan_groups", "solve_in_groups", "column_maxima", "column_statistics", "GROUPING_GAIN",
           "CALL_OVERHEAD"]
