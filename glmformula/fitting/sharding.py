"""Population fits across the JAX devices that are present (several GPUs, or CPU devices).

Units are independent problems that share the design, so a population is split into groups of
units, one group per device; each group is solved on its device (its own copy of the design)
and the solutions are joined. With one device this is a plain call. User code does not change:
``gf.fit`` uses every device JAX sees. Multi-host: start each process with
``jax.distributed.initialize()`` and the devices of all hosts are used the same way.

Memory. The solvers keep per-unit matrices of the size of the design's columns squared
(L-BFGS preconditioners, Newton Hessians, Fisher informations: ``(P+1)^2`` each, several copies
while solving) and per-unit arrays of the size of the rows (linear predictor, residuals). For a
large coupled population these dwarf the shared design: 200 units x 1,641 columns is 2.2 GB
per copy in float32, and an L-BFGS solve of all units at once holds several such copies
(docs/performance_decisions.md, 'Per-unit working memory of a solve'). So the units of each
device are solved in batches (one after another on that device, same answers) whose working
memory fits next to the design in ``gf.config.memory_limit`` (:func:`units_per_batch`).
"""

from __future__ import annotations

import contextvars
from concurrent.futures import ThreadPoolExecutor

import attrs
import jax
import numpy as np

from .. import backend
from ..config import config


def unit_groups(n_units: int, n_devices: int) -> list[np.ndarray]:
    """Contiguous groups of unit indices, one per device (fewer when there are few units)."""
    return [g for g in np.array_split(np.arange(n_units), min(n_devices, n_units)) if len(g)]


def _subproblem(problem, units: np.ndarray):
    offset = problem.offset
    if offset is not None and offset.ndim == 2 and offset.shape[1] > 1:
        offset = offset[:, units]
    return attrs.evolve(problem, y=problem.y[:, units],
                        column_mask=None if problem.column_mask is None
                        else problem.column_mask[units], offset=offset,
                        penalty_matrix=None if problem.penalty_matrix is None
                        else problem.penalty_matrix[units],
                        unit_names=None if problem.unit_names is None
                        else tuple(problem.unit_names[u] for u in units))


def on_devices(function, devices, groups):
    """``function(units)`` for each group of units, on its device (groups in parallel; each
    thread runs in a copy of the caller's context, so warnings keep their context)."""
    def run(device, units):
        with jax.default_device(device):
            return function(units)
    if len(groups) == 1:
        return [run(devices[0], groups[0])]
    contexts = [contextvars.copy_context() for _ in groups]
    with ThreadPoolExecutor(len(groups)) as pool:
        return list(pool.map(lambda c, d, g: c.run(run, d, g), contexts, devices[:len(groups)],
                             groups))


#: Working memory of one unit in a solve, in elements of the compute dtype: this many
#: (P+1) x (P+1) matrices and this many arrays of one value per row (linear predictor, step,
#: residuals, curvature, counts), rounded up from a measured L-BFGS solve
#: (docs/performance_decisions.md, 'Per-unit working memory of a solve').
MATRICES_PER_UNIT = 8
ROW_ARRAYS_PER_UNIT = 8


def units_per_batch(n_rows: int, n_cols: int, itemsize: int, design_bytes: int,
                    memory_limit: int | None = None) -> int:
    """How many units one solve may take at once so that its working memory fits next to
    the design in ``memory_limit`` (default ``gf.config.memory_limit``; at least a quarter
    of it is always granted to the solve)."""
    limit = config.memory_limit if memory_limit is None else memory_limit
    budget = max(limit - design_bytes, limit // 4)
    per_unit = (MATRICES_PER_UNIT * (n_cols + 1) ** 2 + ROW_ARRAYS_PER_UNIT * n_rows) * itemsize
    return max(1, int(budget // per_unit))


def _batch_size(problem, dtype) -> int:
    name = backend.default_dtype() if dtype is None else np.dtype(dtype).name
    return units_per_batch(problem.n_rows, problem.n_cols, np.dtype(name).itemsize,
                           problem.X.nbytes)


def _batches(units: np.ndarray, size: int) -> list[np.ndarray]:
    """``units`` in consecutive batches of (nearly) equal size, none larger than ``size``
    (equal shapes: the solver compiles once)."""
    n = -(-len(units) // max(size, 1))
    return [b for b in np.array_split(units, n) if len(b)]


def solve_on_devices(problem, *, init=None, devices=None, max_units: int | None = None,
                     **options):
    """:func:`glmformula.backend.solve`, with the units shared out over ``devices`` and
    solved in batches of at most ``max_units`` (default :func:`units_per_batch`)."""
    devices = list(devices or jax.devices())
    n_units = problem.y.shape[1]
    groups = unit_groups(n_units, len(devices))
    size = max_units or _batch_size(problem, options.get("dtype"))
    if len(groups) <= 1 and n_units <= size:
        return backend.solve(problem, init=init, **options)

    def solve_batch(units):
        sub = _subproblem(problem, units)
        start = backend.start_part(init, units=units)
        return backend.solve(sub, init=start, **options)

    def solve_group(units):
        parts = [solve_batch(batch) for batch in _batches(units, size)]
        return join_solutions(parts, sequential=True)

    return join_solutions(on_devices(solve_group, devices, groups))


def join_solutions(parts, sequential: bool = False) -> "backend.Solution":
    """One Solution from the solutions of groups of units (in unit order): solved in
    parallel (times and passes: the largest) or one after another (``sequential``: sums)."""
    first = parts[0]
    if len(parts) == 1:
        return first
    total = sum if sequential else max

    def cat(name, axis=0):
        values = [getattr(p, name) for p in parts]
        if values[0] is None:
            return None
        return np.concatenate([np.atleast_1d(np.asarray(v)) for v in values], axis=axis)

    return attrs.evolve(
        first, weights=cat("weights", axis=1), intercept=cat("intercept"),
        converged=cat("converged"), n_iter=cat("n_iter"), grad_norm=cat("grad_norm"),
        objective=cat("objective"), criterion=cat("criterion"),
        status=tuple(s for p in parts for s in p.status),
        rank_deficient=cat("rank_deficient"), dispersion=cat("dispersion"),
        information=None if any(p.information is None for p in parts)
        else tuple(m for p in parts for m in p.information),
        excluded_columns=tuple(sorted(set().union(*[p.excluded_columns for p in parts]))),
        compile_seconds=total(p.compile_seconds for p in parts),
        solve_seconds=total(p.solve_seconds for p in parts),
        n_hessian_passes=total(p.n_hessian_passes for p in parts),
        n_matmul_passes=total(p.n_matmul_passes for p in parts),
        preconditioner=None)  # per solve of all units only
