"""Shared simulated data for the backend tests (small, fixed shapes: kernels compile once)."""

import numpy as np
import pytest


def simulate(T, P, U, seed=0, rate=0.2, gain=0.6):
    """Correlated Gaussian design (moving average across columns) and Poisson counts."""
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((T, P + 2))
    X = (Z[:, :-2] + Z[:, 1:-1] + Z[:, 2:]) / np.sqrt(3)
    W = rng.standard_normal((P, U)) * gain / np.sqrt(P)
    b = np.log(rate) + 0.3 * rng.standard_normal(U)
    Y = rng.poisson(np.exp(X @ W + b)).astype(float)
    return X, Y, W, b


@pytest.fixture(scope="session")
def population():
    """T=4000 rows, P=6 columns, U=4 units."""
    return simulate(4000, 6, 4, seed=1)


@pytest.fixture(scope="session")
def simulator():
    """The :func:`simulate` function (test modules cannot import conftest)."""
    return simulate
