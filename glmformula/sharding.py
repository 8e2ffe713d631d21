"""Population fits across the JAX devices that are present (several GPUs, or CPU devices).

Units are independent problems that share the design, so a population is split into groups of
units, one group per device; each group is solved on its device (its own copy of the design)
and the solutions are joined. With one device this is a plain call. User code does not change:
``gf.fit`` uses every device JAX sees. Multi-host: start each process with
``jax.distributed.initialize()`` and the devices of all hosts are used the same way.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import attrs
import jax
import numpy as np

from . import backend


def unit_groups(n_units: int, n_devices: int) -> list[np.ndarray]:
    """Contiguous groups of unit indices, one per device (fewer when there are few units)."""
    return [g for g in np.array_split(np.arange(n_units), min(n_devices, n_units)) if len(g)]


def _subproblem(problem, units: np.ndarray):
    offset = problem.offset
    if offset is not None and offset.ndim == 2 and offset.shape[1] > 1:
        offset = offset[:, units]
    return attrs.evolve(problem, y=problem.y[:, units],
                        column_mask=None if problem.column_mask is None
                        else problem.column_mask[units], offset=offset)


def _on_devices(function, problem, devices, groups):
    def run(device, units):
        with jax.default_device(device):
            return function(_subproblem(problem, units), units)
    with ThreadPoolExecutor(len(groups)) as pool:
        return list(pool.map(run, devices[:len(groups)], groups))


def solve_on_devices(problem, *, init=None, devices=None, **options):
    """:func:`glmformula.backend.solve`, with the units shared out over ``devices``."""
    devices = list(devices or jax.devices())
    n_units = problem.y.shape[1]
    groups = unit_groups(n_units, len(devices))
    if len(groups) <= 1:
        return backend.solve(problem, init=init, **options)

    def solve_group(sub, units):
        start = None if init is None else (np.asarray(init[0])[:, units],
                                           np.asarray(init[1])[units])
        return backend.solve(sub, init=start, **options)

    return join_solutions(_on_devices(solve_group, problem, devices, groups))


def covariance_on_devices(problem, solution, regularizer, devices=None) -> np.ndarray:
    """:func:`glmformula.backend.fisher_covariance`, unit groups on their devices."""
    devices = list(devices or jax.devices())
    groups = unit_groups(problem.y.shape[1], len(devices))
    if len(groups) <= 1:
        return backend.fisher_covariance(problem, solution, regularizer=regularizer)

    def covariance_group(sub, units):
        part = attrs.evolve(solution, weights=np.asarray(solution.weights)[:, units],
                            intercept=np.asarray(solution.intercept)[units])
        return backend.fisher_covariance(sub, part, regularizer=regularizer)

    return np.concatenate(_on_devices(covariance_group, problem, devices, groups), axis=0)


def join_solutions(parts) -> "backend.Solution":
    """One Solution from the solutions of groups of units (in unit order)."""
    first = parts[0]

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
        rank_deficient=cat("rank_deficient"),
        excluded_columns=tuple(sorted(set().union(*[p.excluded_columns for p in parts]))),
        compile_seconds=max(p.compile_seconds for p in parts),
        solve_seconds=max(p.solve_seconds for p in parts),
        n_hessian_passes=max(p.n_hessian_passes for p in parts),
        n_matmul_passes=max(p.n_matmul_passes for p in parts))
