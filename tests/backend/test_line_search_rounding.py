"""The Armijo test allows the rounding of an objective summed over many rows (newton.backtrack)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from glmformula.backend import newton

jax.config.update("jax_enable_x64", True)


def _noisy_objective(f0, noise):
    """An objective whose value along the step is only rounding noise above ``f0``."""
    return lambda a: jnp.full_like(a, f0 + noise)


def test_a_decrease_below_the_rounding_of_a_long_sum_takes_the_full_step():
    # the case of a strongly penalised unit of the real coupled model (0.007 spikes per bin,
    # 226,358 rows): the decrease left (4e-15) is the size of the objective's noise
    f0, slope, magnitude, rows = 0.0348, -8e-15, 0.04, 226_358
    args = (jnp.asarray([f0]), jnp.asarray([slope]), jnp.asarray([magnitude]),
            jnp.asarray([True]))
    f_at = _noisy_objective(f0, 3e-15)
    a_one_row, ok_one_row = newton.backtrack(f_at, *args, n_terms=1)
    a_rows, ok_rows = newton.backtrack(f_at, *args, n_terms=rows)
    # counted as one term the noise looks like an increase: no step at all
    assert not bool(ok_one_row[0]) and float(a_one_row[0]) == 0.0
    assert bool(ok_rows[0]) and float(a_rows[0]) == 1.0


def test_a_real_increase_is_still_refused():
    f0, slope, magnitude, rows = 0.0348, -1e-6, 0.04, 226_358
    args = (jnp.asarray([f0]), jnp.asarray([slope]), jnp.asarray([magnitude]),
            jnp.asarray([True]))
    # larger than any rounding of the sum (64 eps x 0.04 x sqrt(rows) ~ 3e-13)
    a, ok = newton.backtrack(_noisy_objective(f0, 1e-10), *args, n_terms=rows)
    assert not bool(ok[0]) and float(a[0]) == 0.0
    np.testing.assert_array_less(64 * np.finfo(float).eps * magnitude * rows ** 0.5, 1e-10)
