"""Backend timing on random arrays (not a user's path): the U Hessians ``X' diag(d_u) X`` by
column pairs against one product per unit, for the crossover in
``glmformula.backend.problem.hessian_strategy`` (docs/performance_decisions.md, 'Hessian
strategy: pairs vs per unit').

    python benchmarks/hessian_strategy.py
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from glmformula.backend import problem as pb

jax.config.update("jax_enable_x64", True)

#: (rows, columns, row stride, compute dtype): the real coupled model's sampled float32
#: Hessian (226,358 rows, 268 columns, every 2nd row), and float64 Hessians of 1e5 rows.
CASES = ((226_358, 268, 2, jnp.float32), (100_000, 120, 1, None), (100_000, 51, 1, None),
         (100_000, 51, 1, jnp.float32), (100_000, 20, 1, None))
UNITS = (4, 8, 12, 16, 24, 32)


def seconds(fn, *args, repeats: int = 3) -> float:
    jax.block_until_ready(fn(*args))
    started = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(fn(*args))
    return (time.perf_counter() - started) / repeats


def main() -> None:
    rng = np.random.default_rng(0)
    print("rows, P, stride, compute, U: pairs s / per_unit s (chosen)")
    for T, P, stride, compute in CASES:
        X = jnp.asarray(np.abs(rng.standard_normal((T, P))) * (rng.random((T, P)) < 0.3))
        for U in UNITS:
            D = jnp.asarray(rng.random((T, U)))
            times = {}
            for strategy in ("pairs", "per_unit"):
                kernel = jax.jit(lambda X, D, s=strategy: pb.sampled_hessian_sum(
                    X, D, s, stride, compute))
                times[strategy] = seconds(kernel, X, D)
            name = "float32" if compute is not None else "float64"
            print(f"{T}, {P}, {stride}, {name}, {U}: {times['pairs']:.3f} / "
                  f"{times['per_unit']:.3f} ({pb.hessian_strategy(U, P)})", flush=True)


if __name__ == "__main__":
    main()
